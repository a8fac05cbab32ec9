"""Network I/O off the loop thread: a small pool for calls that may block (``complete()`` on an object store, spec
uploads) and one ordered lane for observer hooks (a slow observer delays other observers, never the run).

Threads are daemons and start lazily (after ``Executor.start()``, which may fork): a hung call must not keep the
process alive after the build, nor the build waiting on it.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable

log = logging.getLogger("kannon")

Job = Callable[[], None]


class Pool:
    def __init__(self, workers: int, name: str) -> None:
        self._max, self._name = workers, name
        self._q: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._pending = 0  # submitted, not finished
        self._lock = threading.Lock()
        self._drained = threading.Condition(self._lock)
        self._closed = False

    def submit(self, job: Job) -> None:
        with self._lock:
            if self._closed:
                raise RuntimeError(f"{self._name} pool is closed")
            self._pending += 1
            grow = self._pending > len(self._threads) and len(self._threads) < self._max
            if grow:
                t = threading.Thread(target=self._work, name=f"{self._name}-{len(self._threads)}", daemon=True)
                self._threads.append(t)
        if grow:
            t.start()
        self._q.put(job)

    def _work(self) -> None:
        while True:
            job = self._q.get()
            if job is None:
                return
            try:
                job()
            except BaseException:  # a job reports its own errors; this is a bug in one, never fatal to the pool
                log.exception("kannon %s job failed", self._name)
            with self._lock:
                self._pending -= 1
                self._drained.notify_all()

    def drain(self, timeout: float) -> bool:
        """Wait until every submitted job ran; False if some still run after ``timeout`` seconds."""
        with self._drained:
            return self._drained.wait_for(lambda: self._pending == 0, timeout)

    def close(self) -> None:
        """Stop the workers once their queue is empty; a worker stuck in a call is left behind (a daemon)."""
        with self._lock:
            self._closed = True
            n = len(self._threads)
        for _ in range(n):
            self._q.put(None)
