"""kannon: run a gokart pipeline distributed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kannon.api import BuildError, RemoteError, build
from kannon.backends.base import Executor
from kannon.hints import Hints
from kannon.hookspecs import hookimpl
from kannon.result import BuildResult, KannonBuildError, Status

if TYPE_CHECKING:
    from kannon.backends.local import LocalExecutor
    from kannon.scheduler import Kannon
    from kannon.task import TaskOnBullet

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

# Lazy, so `kannon --help` does not wait ~2 s for gokart, and a Ctrl-C while gokart imports reaches the CLI's
# handler (exit 130, one line) instead of a traceback from the package's own import.
_LAZY = {
    "TaskOnBullet": "kannon.task",
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
