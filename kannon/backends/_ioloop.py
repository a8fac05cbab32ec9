"""The local backend's I/O thread: one thread multiplexes every child's output pipe (:class:`Pump`), the fork
server's socket and the backend's timers (exit grace periods, cancel's SIGKILL, the memory watchdog) — no thread
per child."""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import selectors
import threading
import time
from collections.abc import Callable
from typing import BinaryIO

from kannon import logtail

log = logging.getLogger("kannon.local")


class IOLoop:
    """One thread multiplexing readable fds and timers; callbacks run on it and must not block."""

    def __init__(self) -> None:
        self._sel = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._sel.register(self._wake_r, selectors.EVENT_READ)
        self._lock = threading.Lock()
        self._adds: list[tuple[int, Callable[[], None]]] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._seq = itertools.count()
        self._stopping = False
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="kannon-local-io", daemon=True)
        self._thread.start()

    def add_reader(self, fd: int, callback: Callable[[], None]) -> None:
        with self._lock:
            self._adds.append((fd, callback))
        self._wake()

    def remove_reader(self, fd: int) -> None:
        """Only from a callback (the loop's own thread)."""
        with contextlib.suppress(KeyError, ValueError):
            self._sel.unregister(fd)

    def call_later(self, delay: float, callback: Callable[[], None]) -> None:
        with self._lock:
            heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), callback))
        self._wake()

    def stop(self) -> None:
        self._stopping = True
        self._wake()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout=10)

    def _wake(self) -> None:
        with self._lock, contextlib.suppress(BlockingIOError, OSError):
            if not self._closed:  # never write to a closed (maybe reused) fd number
                os.write(self._wake_w, b"x")

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # one bad callback must not stop every other child's output and events
            log.exception("kannon local backend: an I/O callback failed")

    def _run(self) -> None:
        try:
            while not self._stopping:
                with self._lock:
                    adds, self._adds = self._adds, []
                    timeout = max(0.0, self._timers[0][0] - time.monotonic()) if self._timers else None
                for fd, cb in adds:
                    self._sel.register(fd, selectors.EVENT_READ, cb)
                for key, _ in self._sel.select(timeout):
                    if key.fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            while os.read(self._wake_r, 4096):
                                pass
                    else:
                        self._call(key.data)
                due: list[Callable[[], None]] = []
                with self._lock:
                    now = time.monotonic()
                    while self._timers and self._timers[0][0] <= now:
                        due.append(heapq.heappop(self._timers)[2])
                for cb in due:
                    self._call(cb)
        finally:
            with self._lock:
                self._closed = True
                for key in list(self._sel.get_map().values()):  # pipes of children killed at close()
                    with contextlib.suppress(OSError):
                        os.close(key.fd)
                self._sel.close()
                os.close(self._wake_w)


class Pump:
    """Copies one child's output pipe to its log file (capped, kannon.logtail) and, given ``on_line``, hands on
    each line as it comes; ``on_eof`` once the pipe is closed by every writer. I/O thread only."""

    def __init__(self, io: IOLoop, fd: int, log_file: BinaryIO, on_line: Callable[[str], None] | None,
                 on_eof: Callable[[], None]) -> None:  # fmt: skip
        self.io, self.fd, self.on_line, self.on_eof = io, fd, on_line, on_eof
        self.pending = b""
        self.capped = logtail.CappedLog(log_file)

    def start(self) -> None:
        os.set_blocking(self.fd, False)
        self.io.add_reader(self.fd, self.on_readable)

    def on_readable(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if chunk:
            self.capped.write(chunk)
            if self.on_line is not None:
                self.pending += chunk
                *lines, self.pending = self.pending.split(b"\n")
                for line in lines:
                    self.on_line(line.decode("utf-8", "replace"))
            return
        if self.on_line is not None and self.pending:
            self.on_line(self.pending.decode("utf-8", "replace"))
        self.io.remove_reader(self.fd)
        os.close(self.fd)
        self.capped.close()
        self.on_eof()
