"""The run lease for backends without a control plane of their own: an ``flock`` on ``<run_dir>.lease``.

The kernel drops the lock when the holder's last descriptor closes — also when the holder is SIGKILLed — so a
rerun after a crash takes it over at once, with no timeout to wait out and no database. Forked processes (the local
backend's zygote and its children) close their inherited copy, so a surviving child never keeps a dead master's
lease. The file holds the holder as JSON (host, pid, invocation, since), for the message a second master prints.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
import weakref
from pathlib import Path

_held: weakref.WeakSet[FileLease] = weakref.WeakSet()


def _close_in_fork_child() -> None:
    for lease in list(_held):
        lease._forget()


os.register_at_fork(after_in_child=_close_in_fork_child)


class LeaseBusy(Exception):
    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


def describe(info: dict[str, object]) -> str:
    since = info.get("since")
    when = time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(float(since))) if isinstance(since, (int, float)) else "?"
    return f"host {info.get('host', '?')} pid {info.get('pid', '?')} (invocation {info.get('invocation', '?')}) " \
           f"since {when}"  # fmt: skip


class FileLease:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self, invocation: str, wait: float | None) -> None:
        """Take the lock, or raise LeaseBusy naming the holder (after up to ``wait`` seconds of retrying)."""
        if self._fd is not None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        deadline = None if wait is None else time.monotonic() + wait
        delay = 0.05
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline is None or time.monotonic() >= deadline:
                        raise LeaseBusy(self._holder()) from None
                    # polled, not a blocking flock: a blocked flock cannot be given a timeout or a Ctrl-C
                    time.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                    delay = min(delay * 2, 1.0)
            info = {"host": socket.gethostname(), "pid": os.getpid(), "invocation": invocation, "since": time.time()}
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        _held.add(self)

    def _holder(self) -> str:
        # The holder writes its record right after locking: a reader racing it may see an empty file for a moment.
        for _ in range(20):
            with contextlib.suppress(OSError, ValueError):
                info = json.loads(self.path.read_text() or "null")
                if isinstance(info, dict):
                    return describe(info)
            time.sleep(0.01)
        return f"another process (no holder record in {self.path})"

    def release(self) -> None:
        fd, self._fd = self._fd, None
        _held.discard(self)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)  # closing the last descriptor drops the lock

    def _forget(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)  # this process's copy only: the parent still holds the lock
