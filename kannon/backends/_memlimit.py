"""Memory hints on the local backend, enforced on resident memory as Kubernetes and Docker do.

``RLIMIT_AS`` (the obvious tool) limits *virtual* memory: a bare child already maps ~400 MiB, so any
Kubernetes-sized hint killed it while it read its spec. Instead, in order of preference:

* a memory cgroup per child (cgroup v2, or v1's memory controller): the kernel charges the child's resident pages
  and OOM-kills it at the limit, exactly what a container gets. The master creates the cgroup and sets the limit;
  the child moves itself in first thing (``KANNON_MEMORY_CGROUP``), before it reads its spec. Swap is limited to the
  same figure where the kernel allows it, as Kubernetes runs without swap.
* otherwise a watchdog in the master: every ``WATCHDOG_INTERVAL`` seconds it sums the private resident memory of
  each child's process group and SIGKILLs a group above its limit. A polling approximation: a spike shorter than
  the interval can pass unnoticed.

``KANNON_LOCAL_MEMORY=cgroup|watchdog`` forces one (tests; ``cgroup`` fails if no cgroup is usable).
"""

from __future__ import annotations

import contextlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["cgroup2", "cgroup1", "watchdog"]
WATCHDOG_INTERVAL = 0.25
ENV_CGROUP = "KANNON_MEMORY_CGROUP"  # read by kannon.child._apply_local_limits
_PREFIX = "kannon-"


@dataclass(frozen=True)
class Mechanism:
    kind: Kind
    base: Path | None = None  # the cgroup directory per-child cgroups are created in
    why_not_cgroup: str = ""

    def describe(self) -> str:
        if self.kind != "watchdog":
            version = "v2" if self.kind == "cgroup2" else "v1"
            return f"memory hints: enforced on resident memory by a cgroup {version} per child (under {self.base})"
        why = f" ({self.why_not_cgroup})" if self.why_not_cgroup else ""
        return (f"memory hints: enforced by polling each child's private resident memory every "
                f"{WATCHDOG_INTERVAL:g} s, no memory cgroup usable{why}")  # fmt: skip


def _mounts() -> list[tuple[str, str, set[str]]]:
    """(mount point, fs type, super options) of cgroup mounts."""
    found = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            left, _, right = line.partition(" - ")
            fields, rfields = left.split(), right.split()
            if len(fields) > 4 and len(rfields) >= 3 and rfields[0] in ("cgroup", "cgroup2"):
                found.append((fields[4], rfields[0], set(rfields[2].split(","))))
    return found


def _own_paths() -> dict[str, str]:
    """controller (or "" for v2) -> this process's cgroup path."""
    paths: dict[str, str] = {}
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            for c in controllers.split(",") if controllers else [""]:
                paths[c] = path
    return paths


def _writable_dir(path: Path) -> bool:
    return path.is_dir() and os.access(path, os.W_OK)


def _detect() -> Mechanism:
    if not os.path.isdir("/proc/self"):
        return Mechanism("watchdog", why_not_cgroup="not Linux")
    return choose(_mounts(), _own_paths())


def choose(mounts: list[tuple[str, str, set[str]]], own: dict[str, str]) -> Mechanism:
    """The mechanism for these cgroup mounts and this process's cgroup paths (see _mounts and _own_paths)."""
    reasons: list[str] = []
    for point, fstype, opts in mounts:
        if fstype == "cgroup" and "memory" in opts and "memory" in own:
            base = Path(point + own["memory"])
            if _writable_dir(base):
                return Mechanism("cgroup1", base)
            reasons.append(f"{base} is not writable")
    for point, fstype, _ in mounts:
        if fstype == "cgroup2" and "" in own:
            base = Path(point + own[""])
            try:
                if "memory" not in (Path(point) / "cgroup.controllers").read_text().split():
                    reasons.append("the cgroup v2 hierarchy has no memory controller")
                    continue
                if not _writable_dir(base):
                    reasons.append(f"{base} is not writable")
                    continue
                if "memory" not in (base / "cgroup.subtree_control").read_text().split():
                    # Fails (EBUSY) when our own cgroup holds processes: v2 forbids enabling it then.
                    (base / "cgroup.subtree_control").write_text("+memory")
                return Mechanism("cgroup2", base)
            except OSError as e:
                reasons.append(f"cannot delegate the memory controller in {base}: {e.strerror or e}")
    return Mechanism("watchdog", why_not_cgroup="; ".join(reasons) or "no cgroup hierarchy mounted")


_detected: Mechanism | None = None


def mechanism() -> Mechanism:
    global _detected
    if _detected is None:
        forced = os.environ.get("KANNON_LOCAL_MEMORY", "")
        found = _detect()
        if forced == "watchdog":
            found = Mechanism("watchdog", why_not_cgroup="forced by KANNON_LOCAL_MEMORY=watchdog")
        elif forced == "cgroup" and found.kind == "watchdog":
            raise RuntimeError(f"KANNON_LOCAL_MEMORY=cgroup but no memory cgroup is usable: {found.why_not_cgroup}")
        _detected = found
    return _detected


def cleanup_stale(mech: Mechanism) -> None:
    """Remove the cgroups of earlier masters that were killed before they could (empty ones only)."""
    if mech.base is None:
        return
    with contextlib.suppress(OSError):
        for d in mech.base.iterdir():
            m = re.match(rf"{_PREFIX}(\d+)-", d.name)
            if m and d.is_dir() and not Path(f"/proc/{m.group(1)}").exists():
                with contextlib.suppress(OSError):
                    d.rmdir()


class ChildLimit:
    """The memory limit of one child: create, give the child its environment, classify its end, remove."""

    def __init__(self, mech: Mechanism, key: str, limit: int) -> None:
        self.mech, self.limit = mech, limit
        self.path: Path | None = None
        self.watchdog_killed_at: int | None = None  # bytes seen when the watchdog killed the group
        if mech.base is not None:
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", key)
            self.path = mech.base / f"{_PREFIX}{os.getpid()}-{safe}"
            self.path.mkdir(exist_ok=True)
            if mech.kind == "cgroup1":
                (self.path / "memory.limit_in_bytes").write_text(str(limit))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    (self.path / "memory.memsw.limit_in_bytes").write_text(str(limit))
                with contextlib.suppress(OSError):  # a spawned child's start-up pages move in with it
                    (self.path / "memory.move_charge_at_immigrate").write_text("3")
            else:
                (self.path / "memory.max").write_text(str(limit))
                with contextlib.suppress(OSError):
                    (self.path / "memory.swap.max").write_text("0")

    def env(self) -> dict[str, str]:
        return {ENV_CGROUP: str(self.path)} if self.path is not None else {}

    def oom_killed(self) -> bool:
        if self.watchdog_killed_at is not None:
            return True
        if self.path is None:
            return False
        name = "memory.oom_control" if self.mech.kind == "cgroup1" else "memory.events"
        try:
            for line in (self.path / name).read_text().splitlines():
                k, _, v = line.partition(" ")
                if k == "oom_kill" and int(v) > 0:
                    return True
        except (OSError, ValueError):
            pass
        return False

    def remove(self) -> bool:
        """True once the cgroup is gone (it cannot be removed while a process of the task is still in it)."""
        if self.path is None:
            return True
        try:
            self.path.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            return False
        return True


def private_rss(pids: list[int]) -> int:
    """Bytes of private resident memory of ``pids`` (pages shared with the fork server are not the task's)."""
    total = 0
    for pid in pids:
        try:
            text = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
            continue
        for line in text.splitlines():
            if line.startswith(("Private_Clean:", "Private_Dirty:")):
                total += int(line.split()[1]) * 1024
    return total


def group_members(pgids: set[int]) -> dict[int, list[int]]:
    """pgid -> pids of the processes in that process group (one walk over /proc for every watched child)."""
    out: dict[int, list[int]] = {g: [] for g in pgids}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            try:
                stat = Path(f"/proc/{entry.name}/stat").read_text()
            except OSError:
                continue
            fields = stat.rpartition(")")[2].split()
            if len(fields) > 2 and int(fields[2]) in out:  # state ppid pgrp ...
                out[int(fields[2])].append(int(entry.name))
    return out
