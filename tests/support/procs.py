"""Helpers for tests that run real processes: wait on conditions (never fixed sleeps) and find leftovers."""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def node_pid() -> int:
    """This process's pid as the machine sees it, which a test can signal. A child running as PID 1 of an emulator
    pod's own PID namespace gets 1 from os.getpid(); /proc is the node's (not remounted in the pod), so /proc/self
    still names it by the node's pid."""
    try:
        return int(os.readlink("/proc/self"))
    except (OSError, ValueError):
        return os.getpid()


def die_by_sigkill() -> None:
    """End this process as SIGKILL does. As PID 1 of a PID namespace the kernel drops a SIGKILL it sends itself
    (pid_namespaces(7)), so there it exits with what a SIGKILLed container reports: 137."""
    if os.getpid() == 1:
        os._exit(128 + 9)
    os.kill(os.getpid(), 9)


def wait_until(predicate: Callable[[], T], timeout: float = 60.0, what: str = "condition", *,
               max_delay: float = 0.2) -> T:  # fmt: skip
    """predicate()'s first truthy value, re-checked with a back-off up to ``max_delay`` seconds (a higher bound when
    each check is a request to a real API server); TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    delay = 0.01
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(delay)  # back-off between checks of a condition, not a wait for a guessed duration
        delay = min(delay * 2, max_delay)

def gone(pid: int) -> bool:
    """The process runs no more: it does not exist, or it is a zombie waiting for its parent to reap it."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] == "Z"
    except OSError:
        return True


def processes_in(directory: Path) -> list[int]:
    """Pids (other than ours) whose working directory is ``directory`` or below: a run's master and children."""
    found = []
    target = str(directory.resolve())
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/stat") as f:
                state = f.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state != "Z" and (cwd == target or cwd.startswith(target + os.sep)):
            found.append(int(entry))
    return found


def children_of(pid: int) -> list[int]:
    """The live (not zombie) processes whose parent is ``pid``."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as f:
                    fields = f.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if fields[0] != "Z" and int(fields[1]) == pid:
                found.append(int(entry))
    return found


def events(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # a line being written right now
            out.append(json.loads(line))
    return out


def kannon(
    *args: str, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "kannon", *args], cwd=cwd, env={**os.environ, **(env or {})},
                          capture_output=True, text=True, timeout=timeout)  # fmt: skip


def start_kannon(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "kannon", *args], cwd=cwd, env={**os.environ, **(env or {})},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)  # fmt: skip
