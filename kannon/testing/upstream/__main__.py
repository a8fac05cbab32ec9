"""``python -m kannon.testing.upstream build|up|env|down|status``: a real upstream Kubernetes control plane on
127.0.0.1 for tests (docs/upstream.md).

build   build (or find in the cache) etcd, kube-apiserver, kube-controller-manager and kube-scheduler
up      build if needed, start all four, print KUBECONFIG=<path>
env     print KUBECONFIG=<path> of the running control plane (``export $(python -m kannon.testing.upstream env)``)
down    stop everything ``up`` started, newest first, and nothing else
status  say what runs, with pids and the API server's URL
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from kannon.testing.upstream.build import BadRelease, BuildError, ensure_built, etcd, kubernetes
from kannon.testing.upstream.cluster import ControlPlane, StartError, default_state_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kannon.testing.upstream", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("command", choices=("build", "up", "env", "down", "status"))
    parser.add_argument(
        "--state-dir", type=Path, default=None,
        help=f"where credentials, data, logs and pids live (default {default_state_dir()})",
    )  # fmt: skip
    args = parser.parse_args(argv)
    plane = ControlPlane(args.state_dir)
    try:
        if args.command == "build":
            for name, path in ensure_built().items():
                print(f"{name}: {path}")
            for programs in (etcd(), kubernetes()):
                print(f"{programs.module} {programs.release}: {(programs.directory / 'build.json').read_text()}",
                      end="")  # fmt: skip
        elif args.command == "up":
            if plane.running():
                print(f"already up at {plane.server}", file=sys.stderr)
            else:
                started = time.monotonic()
                plane.start()
                print(f"up at {plane.server} in {time.monotonic() - started:.1f} s; logs in {plane.state_dir / 'logs'}",
                      file=sys.stderr)  # fmt: skip
            print(f"KUBECONFIG={plane.kubeconfig}")
        elif args.command == "env":
            if not plane.running():
                print(f"no control plane runs from {plane.state_dir}: run `python -m kannon.testing.upstream up`",
                      file=sys.stderr)  # fmt: skip
                return 2
            print(f"KUBECONFIG={plane.kubeconfig}")
        elif args.command == "down":
            plane.stop()
        else:
            state = plane.state
            print(json.dumps({"running": plane.running(), "server": state.get("server"),
                              "processes": state.get("processes", [])}, indent=2))  # fmt: skip
    except BadRelease as e:
        print(f"kannon.testing.upstream {args.command}: {e}", file=sys.stderr)
        return 2
    except (BuildError, StartError) as e:
        print(f"kannon.testing.upstream {args.command}: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
