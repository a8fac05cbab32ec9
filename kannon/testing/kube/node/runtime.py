"""What the kubelet asks of a container runtime (a CRI of our own): start a container, wait for it, signal it."""

from __future__ import annotations

from typing import Protocol

from kannon.testing.kube.node.logs import ContainerLog
from kannon.testing.kube.store import Obj


class StartError(Exception):
    """The container could not be started (terminated with exit code 128, reason StartError)."""


class ImageError(Exception):
    """The image cannot be had (ErrImagePull / ImagePullBackOff)."""


class ContainerHandle(Protocol):
    container_id: str
    image_id: str

    def wait(self) -> tuple[int, bool]: ...  # (exit code, OOM killed)

    def signal(self, sig: int) -> None: ...

    def cleanup(self) -> None: ...


class Runtime(Protocol):
    name: str

    def base_env(self) -> dict[str, str]: ...

    def check_image(self, image: str) -> str: ...  # returns an image id or raises ImageError

    def start(
        self, pod: Obj, container: Obj, argv: list[str], env: dict[str, str], out: ContainerLog
    ) -> ContainerHandle: ...

    def close(self) -> None: ...


def _exit_code(returncode: int) -> int:
    # Container runtimes report death by signal n as 128+n.
    return 128 - returncode if returncode < 0 else returncode
