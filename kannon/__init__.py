"""kannon: run a gokart pipeline distributed."""

from __future__ import annotations

import os as _os
import signal as _signal
import sys as _sys
from typing import TYPE_CHECKING, Any

# The child entrypoint as PID 1 of a container: the kernel drops a signal PID 1 has no handler for, and
# kannon.child installs its own only after luigi and gokart are imported. Until then a SIGTERM (a cancel, a pod
# deletion) would be lost and the pod would run to its grace period's SIGKILL; end at once instead.
if _os.getpid() == 1 and _sys.argv[1:2] == ["run-task"]:
    _signal.signal(_signal.SIGTERM, lambda *_: _os._exit(143))

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
