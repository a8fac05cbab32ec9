"""The run id (stable across reruns: re-attach), the invocation id (one per ``build()``), and the paths they name."""

from __future__ import annotations

import hashlib
import os
import secrets
import time
from pathlib import Path

from kannon import storage


def workspace_of(task: object) -> str:
    return str(getattr(task, "workspace_directory", "./resources/"))


def run_id(root_id: str, workspace: str) -> str:
    """Deterministic per pipeline *and* workspace: a rerun after a crash finds (and re-attaches to) the same run's
    children, and the same pipeline over another workspace is another run (its own lease, its own children)."""
    where = workspace if storage.is_remote(workspace) else os.path.abspath(workspace)
    return hashlib.sha256(f"{root_id}\0{where}".encode()).hexdigest()[:12]


def invocation_id(now: float | None = None) -> str:
    """Sortable by start time, unique per build() call: ``20261203T120102Z-3fa9c1``."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    return f"{stamp}-{secrets.token_hex(3)}"


def run_dir(run_id: str, workspace: str, base: Path | None = None) -> Path:
    if base is not None:
        return (base / run_id).absolute()
    root = Path(".kannon") if storage.is_remote(workspace) else Path(workspace) / "kannon"
    return (root / "runs" / run_id).absolute()


def log_path(run_dir: Path, invocation: str, family: str, task_id: str, attempt: int) -> Path:
    # per invocation: a rerun never overwrites an earlier run's logs
    return run_dir / "logs" / invocation / f"{family}-{task_id[:12]}-{attempt}.log"
