"""Memory cgroups for process pods: a limit of their own and an OOM kill that is theirs."""

from __future__ import annotations

import contextlib
import os
import re
import time
from pathlib import Path


class _MemoryCgroup:
    """A process pod's own cgroup-v1/v2 memory cgroup, with its limit if it has one, when the host lets us make one
    (best effort). Every pod gets one, as every container on a real node does: what the pod's processes use is
    then the pod's alone (its peak is what a child measures, kannon.measure), not the emulator's whole group's."""

    def __init__(self, limit: int | None, tag: str, make: bool = True) -> None:
        """``make=False``: only planned (:meth:`spec`), for a warm process that makes it itself (kannon.forkserver's
        ``cgroup``: a spare's own cgroup renamed, without the wait of moving a process); :meth:`made` after it."""
        self.path: Path | None = None
        self.planned: Path | None = None
        self.v2 = False
        self.limit = limit
        base = _cgroup_base()
        if base is None:
            return
        self.planned, self.v2 = base[0] / f"kannon-emu-{tag}", base[1]
        if make:
            self.make()

    def files(self) -> list[tuple[str, str]]:
        """The limit files to write, in order (memsw may not go below the memory limit)."""
        if self.limit is None:
            return []
        if self.v2:
            return [("memory.max", str(self.limit)), ("memory.swap.max", "0")]
        return [("memory.limit_in_bytes", str(self.limit)), ("memory.memsw.limit_in_bytes", str(self.limit))]

    def make(self) -> None:
        path = self.planned
        if path is None or self.path is not None:
            return
        try:
            path.mkdir()
            for name, value in self.files():
                if name == "memory.memsw.limit_in_bytes":  # absent without swap accounting
                    with contextlib.suppress(OSError):
                        (path / name).write_text(value)
                else:
                    (path / name).write_text(value)
            self.path = path
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()

    def spec(self) -> dict[str, object] | None:
        """The forkserver's ``cgroup`` request for this (planned) cgroup."""
        return None if self.planned is None else {"path": str(self.planned), "files": [list(f) for f in self.files()]}

    def made(self) -> None:
        """A process made it from :meth:`spec` (or did not, best effort)."""
        if self.planned is not None and self.planned.is_dir():
            self.path = self.planned

    def add(self, pid: int) -> None:
        if self.path is not None:
            with contextlib.suppress(OSError):
                (self.path / "cgroup.procs").write_text(str(pid))

    def oom_killed(self) -> bool:
        if self.path is None:
            return False
        try:
            if self.v2:
                text = (self.path / "memory.events").read_text()
            else:
                text = (self.path / "memory.oom_control").read_text()
        except OSError:
            return False
        m = re.search(r"oom_kill (\d+)", text)
        return bool(m and int(m.group(1)) > 0)

    def remove(self) -> None:
        if self.path is not None:
            for _ in range(50):
                try:
                    self.path.rmdir()
                    return
                except OSError:
                    time.sleep(0.02)  # the kernel frees the cgroup only after its last task has gone


_CGROUP_BASE: tuple[Path, bool] | bool | None = False


def _cgroup_base() -> tuple[Path, bool] | None:
    """Our own memory cgroup directory, if writable. Looked up once."""
    global _CGROUP_BASE
    if _CGROUP_BASE is not False:
        return _CGROUP_BASE  # type: ignore[return-value]
    found: tuple[Path, bool] | None = None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, rel = line.split(":", 2)
            if "memory" in controllers.split(","):
                cand = Path("/sys/fs/cgroup/memory") / rel.lstrip("/")
                if os.access(cand, os.W_OK) and (cand / "memory.limit_in_bytes").exists():
                    found = (cand, False)
            elif controllers == "" and found is None:
                cand = Path("/sys/fs/cgroup") / rel.lstrip("/")
                if os.access(cand, os.W_OK) and (cand / "memory.max").exists():
                    found = (cand, True)
    except OSError:
        found = None
    _CGROUP_BASE = found
    return found
