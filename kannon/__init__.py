"""kannon: run a gokart pipeline distributed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kannon.api import BuildError, RemoteError, build
from kannon.backends.base import Executor
from kannon.hints import Hints
from kannon.hookspecs import hookimpl
from kannon.result import BuildResult, KannonBuildError, Status
from kannon.task import TaskOnBullet

if TYPE_CHECKING:
    from kannon.backends.local import LocalExecutor
    from kannon.scheduler import Kannon

__all__ = [
    "BuildError",
    "BuildResult",
    "Executor",
    "Hints",
    "Kannon",
    "KannonBuildError",
    "LocalExecutor",
    "RemoteError",
    "Status",
    "TaskOnBullet",
    "build",
    "hookimpl",
]

_LAZY = {
    "Kannon": "kannon.scheduler",
    "LocalExecutor": "kannon.backends.local",
    "DockerExecutor": "kannon.backends.docker",
    "K8sJobExecutor": "kannon.backends.kubernetes",
}


def __getattr__(name: str) -> Any:
    # Backends (and their client libraries) are imported only when asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'kannon' has no attribute {name!r}")
