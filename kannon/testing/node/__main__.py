"""``python -m kannon.testing.node --kubeconfig K --name N``: run kannon's node agent until SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading

from kannon.testing.kube.node.docker_runtime import DockerRuntime
from kannon.testing.kube.node.process_runtime import ProcessRuntime, default_workdir
from kannon.testing.kube.node.runtime import Runtime


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m kannon.testing.node", description=__doc__)
    p.add_argument("--kubeconfig", required=True, help="kubeconfig of a user allowed to manage Nodes, Leases, pods")
    p.add_argument("--name", required=True, help="the Node's name")
    p.add_argument("--runtime", choices=("process", "docker"), default="process")
    p.add_argument("--workdir", help="process runtime: the containers' working directory when the pod sets none")
    p.add_argument("--warm-import", action="append", dest="warm_imports", metavar="MODULE",
                   help="process runtime: modules a zygote pre-imports (MOD:FUNC also calls FUNC once); python -m "
                        "pods fork from it (repeatable)")
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
    for option, path in (("--kubeconfig", args.kubeconfig), ("--tls-cert-file", args.tls_cert_file),
                         ("--tls-private-key-file", args.tls_private_key_file)):  # fmt: skip
        if path and not os.path.isfile(path):
            print(f"kannon node: {option} {path}: no such file", file=sys.stderr)
            return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")

    from kubernetes import config
    from kubernetes.client.rest import ApiException

    from kannon.testing.node.agent import NodeAgent

    try:
        api = config.new_client_from_config(config_file=args.kubeconfig)
    except Exception as e:  # the loader's own errors name the problem; one line, not its traceback
        print(f"kannon node: --kubeconfig {args.kubeconfig}: {' '.join(str(e).split())}", file=sys.stderr)
        return 2
    runtime: Runtime
    try:
        if args.runtime == "docker":
            runtime = DockerRuntime(args.docker_image)
        else:
            runtime = ProcessRuntime(args.workdir or default_workdir(), warm_imports=args.warm_imports)
    except Exception as e:  # no Docker engine, no SDK
        print(f"kannon node: the {args.runtime} runtime cannot start: {e}", file=sys.stderr)
        return 2
    tls = (args.tls_cert_file, args.tls_private_key_file) if args.tls_cert_file else None
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent = NodeAgent(api, args.name, runtime, allocatable={"cpu": args.cpu, "memory": args.memory},
                      labels=labels, tls=tls, port=args.port)  # fmt: skip
    try:
        agent.start()
    except (ApiException, OSError) as e:  # refused (a bad name: 422; no permission: 403) or unreachable
        detail = f"{e.status} {_message(e.body) or e.reason}" if isinstance(e, ApiException) else str(e)
        print(f"kannon node: registering Node {args.name!r} failed: {detail}", file=sys.stderr)
        agent.stop()
        return 1
    if isinstance(runtime, ProcessRuntime) and args.warm_imports:
        runtime.prewarm([sys.executable])
    print(f"node {args.name} registered; logs served at https://127.0.0.1:{agent.logs.port}", flush=True)
    stop.wait()
    agent.stop()
    return 0


def _message(body: object) -> str:
    """The API server's Status message (e.g. why a Node name is invalid), if the body is one."""
    try:
        return str(json.loads(body).get("message") or "") if isinstance(body, (str, bytes)) else ""
    except (ValueError, AttributeError):
        return ""


if __name__ == "__main__":
    sys.exit(main())
