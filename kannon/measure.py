"""What one attempt of a bullet really used, measured by the child itself (issue 17), for its child-result record.

* **Peak memory** of the task's process tree. From the memory cgroup the child is in — ``memory.peak`` on cgroup
  v2, ``memory.max_usage_in_bytes`` on v1 — only when that cgroup is the attempt's own; else from
  ``getrusage``: the larger of the child's peak resident set (VmHWM, see :func:`_own_peak`) and its reaped
  children's (``peak_source`` says which).
  A cgroup's peak counts what the kernel charges it, page cache included, which is what its limit is held to.
* **CPU seconds**: user + system time of the child and of its reaped children (``getrusage``).
* **Wall seconds**: from the child process's start (a fork-server spare: from when it was handed the task) to the
  measurement.
* **Output bytes**: the size of the task's outputs that are local files (a directory counts its files). An output
  in an object store is not counted: asking for its size is a network round trip per output.

**Whose cgroup.** A cgroup's peak is the attempt's only when the cgroup was made for it: a Docker container or a
Kubernetes container (one per attempt), the per-attempt cgroup the local backend makes for a memory hint, the
emulator's per-pod cgroup. The master's cgroup, a login session's, a whole machine's or a CI container's also hold
other processes whose memory would be reported as the task's. So the child trusts its cgroup only when every
process in it (``cgroup.procs``) is itself or one of its descendants — or, when the backend says the attempt runs
in a container of its own (``KANNON_OWN_CONTAINER=1``, set by the Docker and Kubernetes backends), one of its
ancestors (an init such as ``tini`` or ``docker-init`` in front of the child). A process the child cannot see (a
pid of 0, another pid namespace) or cannot place makes it fall back to ``getrusage``. The check runs when the
measurement is taken, at the end of the attempt; a foreign process that came and went earlier would be missed, but
a cgroup that held one at any time is not made per attempt.
"""

from __future__ import annotations

import contextlib
import os
import resource
import time
from collections.abc import Iterable
from pathlib import Path

from kannon.childresult import Usage

OWN_CONTAINER_ENV = "KANNON_OWN_CONTAINER"  # "1": the backend runs this attempt in a container of its own
# time.monotonic() when a process forked ahead of time (the local fork server's spare) was handed its task
STARTED_ENV = "KANNON_ATTEMPT_STARTED"
# the CPU seconds the process had used when it was handed its task (a reused process: its earlier bullets' share)
STARTED_CPU_ENV = "KANNON_ATTEMPT_CPU0"


def _float(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        return time.monotonic()


def _process_start() -> float:
    """When this process started, on the time.monotonic() clock: the interpreter's start and the imports before
    the child's code runs (a second or more in a container) are part of the attempt's wall time, as their CPU time
    is part of its CPU time. Linux's /proc/self/stat has it in clock ticks since boot (10 ms resolution)."""
    now = time.monotonic()
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, counted after the ")" ending comm
        elapsed = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - max(0.0, elapsed)
_CGROUP_ROOT = Path("/sys/fs/cgroup")


class Meter:
    """Started when the child starts; :meth:`usage` measures the attempt so far."""

    def __init__(self) -> None:
        # Read, not removed: a child that re-executes itself (shipped code, kannon.ship_child) must find them again.
        started = os.environ.get(STARTED_ENV)
        self.own_container = os.environ.get(OWN_CONTAINER_ENV, "") == "1"
        self.t0 = _float(started) if started else _process_start()
        try:
            self.cpu0 = float(os.environ.get(STARTED_CPU_ENV, "0"))
        except ValueError:
            self.cpu0 = 0.0

    def usage(self, output_paths: Iterable[str] = (), oom_limit_bytes: int | None = None) -> Usage:
        wall = time.monotonic() - self.t0
        me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = max(0.0, me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime - self.cpu0)
        peak, source = cgroup_peak(self.own_container)
        if peak is None:
            peak, source = max(_own_peak(me.ru_maxrss), kids.ru_maxrss) * 1024, "rusage"  # Linux reports KiB
        return Usage(peak_rss_bytes=peak, peak_source=source, cpu_seconds=cpu, wall_seconds=wall,
                     output_bytes=local_bytes(output_paths), oom_limit_bytes=oom_limit_bytes)  # fmt: skip


def _own_peak(rusage_kib: int) -> int:
    """This process's peak resident set in KiB. getrusage's own figure also counts the process this one was
    exec'd from (Linux keeps the larger of the old and the new image's peaks): a child started by a large master
    would report the master's size. VmHWM in /proc/self/status is the peak of this image alone."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return rusage_kib


def cgroup_peak(own_container: bool) -> tuple[int | None, str]:
    """(peak bytes, "cgroup-v2" | "cgroup-v1") of this process's memory cgroup if it is the attempt's own, else
    (None, "")."""
    found = memory_cgroup()
    if found is None:
        return None, ""
    directory, source = found
    if not _only_ours(directory / "cgroup.procs", own_container):
        return None, ""
    name = "memory.peak" if source == "cgroup-v2" else "memory.max_usage_in_bytes"
    try:
        return int((directory / name).read_text()), source
    except (OSError, ValueError):  # v2 before Linux 5.19 has no memory.peak
        return None, ""


def memory_cgroup() -> tuple[Path, str] | None:
    """The directory of this process's memory cgroup as mounted here, and its version; None when not found."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    v1 = v2 = None
    for line in lines:
        hierarchy, controllers, rel = line.split(":", 2)
        if hierarchy == "0" and controllers == "":
            v2 = rel
        elif "memory" in controllers.split(","):
            v1 = rel
    if v1 is not None:
        mount = _v1_memory_mount()
        if mount is None:
            return None
        point, root = mount
        # Inside a container without a cgroup namespace /proc/self/cgroup names the host's path (/docker/<id>)
        # while the mount's root is that same directory: the part below the root is what lies under the mount.
        rel = os.path.relpath(v1, root) if v1.startswith(root) else v1.lstrip("/")
        path = Path(point) if rel == "." else Path(point) / rel
        return (path, "cgroup-v1") if path.is_dir() else None
    if v2 is not None and (_CGROUP_ROOT / "cgroup.controllers").exists():
        path = _CGROUP_ROOT / v2.lstrip("/")
        return (path, "cgroup-v2") if path.is_dir() else None
    return None


def _v1_memory_mount() -> tuple[str, str] | None:
    """(mount point, root) of the cgroup-v1 memory hierarchy, from /proc/self/mountinfo."""
    try:
        text = Path("/proc/self/mountinfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        fields = line.split()
        try:
            sep = fields.index("-")
        except ValueError:
            continue
        if fields[sep + 1] == "cgroup" and "memory" in fields[-1].split(","):
            return fields[4], fields[3]
    return None


def _only_ours(procs: Path, allow_ancestors: bool) -> bool:
    """Every process in the cgroup is this one, a descendant, or (``allow_ancestors``) an ancestor."""
    me = os.getpid()
    ancestors: set[int] = set()
    if allow_ancestors:
        pid = os.getppid()
        while pid > 0 and pid not in ancestors:
            ancestors.add(pid)
            pid = _ppid(pid) or 0
    try:
        pids = [int(p) for p in procs.read_text().split()]
    except (OSError, ValueError):
        return False
    for pid in pids:
        if pid == me or pid in ancestors:
            continue
        if pid <= 0 or not _descends_from(pid, me):
            return False
    return True


def _descends_from(pid: int, ancestor: int) -> bool:
    seen = 0
    while pid > 1 and seen < 64:
        parent = _ppid(pid)
        if parent is None:
            return False
        if parent == ancestor:
            return True
        pid, seen = parent, seen + 1
    return False


def _ppid(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:  # "pid (comm) state ppid ...": comm may hold spaces and parentheses, so split after the last ")"
        return int(stat.rsplit(")", 1)[1].split()[1])
    except (IndexError, ValueError):
        return None


def local_bytes(paths: Iterable[str]) -> int:
    """Total size of the paths that are local files or directories; anything else (s3://, gs://, missing) is 0."""
    total = 0
    for path in paths:
        if "://" in path and not path.startswith("file://"):
            continue
        path = path.removeprefix("file://")
        try:
            st = os.stat(path)
        except (OSError, ValueError):
            continue
        if os.path.isdir(path):
            for base, _, files in os.walk(path):
                for name in files:
                    with contextlib.suppress(OSError):
                        total += os.stat(os.path.join(base, name)).st_size
        else:
            total += st.st_size
    return total
