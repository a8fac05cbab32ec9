"""``python -m kannon.testing.node --kubeconfig K --name N``: run kannon's node agent until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading

from kannon.testing.kube.runtime import DockerRuntime, ProcessRuntime, Runtime, default_workdir


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kannon.testing.node", description=__doc__)
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of a user allowed to manage Nodes, Leases, pods")
    p.add_argument("--name", required=True, help="the Node's name")
    p.add_argument("--runtime", choices=("process", "docker"), default="process")
    p.add_argument("--workdir", help="process runtime: the containers' working directory when the pod sets none")
    p.add_argument("--warm-import", action="append", dest="warm_imports", metavar="MODULE",
                   help="process runtime: modules a zygote pre-imports; python -m pods fork from it (repeatable)")
    p.add_argument("--docker-image", help="docker runtime: run every pod with this image instead of its own")
    p.add_argument("--cpu", default=str(os.cpu_count() or 1), help="allocatable cpu (default: this machine's)")
    p.add_argument("--memory", default="16Gi", help="allocatable memory (default: 16Gi)")
    p.add_argument("--label", action="append", default=[], metavar="KEY=VALUE", help="a node label (repeatable)")
    p.add_argument("--tls-cert-file", help="the log endpoint's certificate, for 127.0.0.1, signed by the CA the API "
                   "server verifies kubelets with (--kubelet-certificate-authority); default: self-signed")
    p.add_argument("--tls-private-key-file")
    p.add_argument("--port", type=int, default=0, help="the log endpoint's port (default: a free one)")
    args = p.parse_args(argv)
    if bool(args.tls_cert_file) != bool(args.tls_private_key_file):
        print("kannon node: give both --tls-cert-file and --tls-private-key-file, or neither", file=sys.stderr)
        return 2
    labels = {}
    for item in args.label:
        key, eq, value = item.partition("=")
        if not eq or not key:
            print(f"kannon node: --label {item!r} is not KEY=VALUE", file=sys.stderr)
            return 2
        labels[key] = value
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from kubernetes import config

    from kannon.testing.node.agent import NodeAgent

    runtime: Runtime
    if args.runtime == "docker":
        runtime = DockerRuntime(args.docker_image)
    else:
        runtime = ProcessRuntime(args.workdir or default_workdir(), warm_imports=args.warm_imports)
    api = config.new_client_from_config(config_file=args.kubeconfig)
    tls = (args.tls_cert_file, args.tls_private_key_file) if args.tls_cert_file else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent = NodeAgent(api, args.name, runtime, allocatable={"cpu": args.cpu, "memory": args.memory},
                      labels=labels, tls=tls, port=args.port)  # fmt: skip
    agent.start()
    if isinstance(runtime, ProcessRuntime) and args.warm_imports:
        runtime.prewarm([sys.executable])
    print(f"node {args.name} registered; logs served at https://127.0.0.1:{agent.logs.port}", flush=True)
    stop.wait()
    agent.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
