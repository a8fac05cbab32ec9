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

    def __init__(self, limit: int | None, tag: str) -> None:
        self.path: Path | None = None
        self.v2 = False
        base = _cgroup_base()
        if base is None:
            return
        path, self.v2 = base[0] / f"kannon-emu-{tag}", base[1]
        try:
            path.mkdir()
            if limit is None:
                pass
            elif self.v2:
                (path / "memory.max").write_text(str(limit))
                (path / "memory.swap.max").write_text("0")
            else:
                (path / "memory.limit_in_bytes").write_text(str(limit))
                with contextlib.suppress(OSError):
                    (path / "memory.memsw.limit_in_bytes").write_text(str(limit))
            self.path = path
        except OSError:
            with contextlib.suppress(OSError):
                path.rmdir()

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
