"""The Docker backend's command-line options and the executor they make."""

from __future__ import annotations

import argparse

from kannon.backends.base import BackendError
from kannon.backends.docker.config import parse_env
from kannon.backends.docker.executor import DockerExecutor


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--image", dest="docker_image", metavar="IMG", help="docker: image for the bullets")
    group.add_argument(
        "--volume", dest="docker_volumes", metavar="HOST:CTR[:ro]", action="append", default=[],
        help="docker: extra bind mount (repeatable); the working directory is mounted by default",
    )  # fmt: skip
    group.add_argument(
        "--env", dest="docker_env", metavar="K=V", action="append", default=[],
        help="docker: environment variable for the bullets (repeatable; a bare K copies it from here)",
    )  # fmt: skip
    group.add_argument("--docker-network", dest="docker_network", metavar="NET", help="docker: network (mode)")
    group.add_argument("--docker-python", dest="docker_python", metavar="PATH", default="python",
                       help="docker: the interpreter in the image (default: python)")  # fmt: skip


def from_options(ns: argparse.Namespace) -> DockerExecutor:
    image = getattr(ns, "docker_image", None)
    if not image:
        raise BackendError("the docker backend needs an image: pass --image IMG")
    try:
        return DockerExecutor(
            image,
            volumes=getattr(ns, "docker_volumes", None) or [],
            environment=parse_env(getattr(ns, "docker_env", None) or []),
            network=getattr(ns, "docker_network", None),
            python=getattr(ns, "docker_python", None) or "python",
        )
    except ValueError as e:
        raise BackendError(str(e)) from e
