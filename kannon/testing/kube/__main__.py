"""Standalone emulator: ``python -m kannon.testing.kube --port 0 --kubeconfig PATH [--runtime process|docker]``.

Prints the URL on stdout and serves until SIGTERM/SIGINT (e.g. to benchmark a kannon in another virtualenv).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from types import FrameType

from kannon.testing.kube.emulator import KubeEmulator


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kannon.testing.kube", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for the emulator here")
    parser.add_argument("--runtime", choices=("process", "docker"), default="process")
    parser.add_argument("--namespace", default="default")
    parser.add_argument("--docker-image", help="docker runtime: run every pod with this local image")
    parser.add_argument("--backoff-base", type=float, default=0.0, help="pod re-creation back-off base seconds")
    parser.add_argument(
        "--warm-imports",
        metavar="MODULES",
        help="process runtime: comma-separated modules (e.g. gokart,kannon.childwarm:warm_up; MOD:FUNC also calls "
        "FUNC once) a zygote per interpreter imports once; python pods are forked from it instead of starting cold",
    )
    args = parser.parse_args(argv)

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    with KubeEmulator(
        runtime=args.runtime,
        namespace=args.namespace,
        docker_image=args.docker_image,
        host=args.host,
        port=args.port,
        backoff_base=args.backoff_base,
        warm_imports=[m for m in args.warm_imports.split(",") if m] if args.warm_imports else None,
    ) as kube:
        if args.kubeconfig:
            kube.write_kubeconfig(args.kubeconfig)
        print(kube.url, flush=True)
        while not stop.wait(1.0):
            pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
