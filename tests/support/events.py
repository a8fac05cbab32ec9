"""Recorder: the ``emit`` callback a test starts an executor with; tests wait on conditions over its events.

Shared by the Docker and Kubernetes executor tests. (tests/unit/test_scheduler.py's ``Recorder`` is another thing:
a ``kannon_event`` observer of the scheduler's event stream, not of an executor's.)
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from kannon.backends.base import ExecutorEvent, Finished, LogLine, Started

E = TypeVar("E", bound=ExecutorEvent)


class Recorder:
    """Collects executor events; tests wait on conditions over them (no sleeps).

    ``timeout`` is the default of every wait; each wait can override it.
    """

    def __init__(self, timeout: float = 120.0) -> None:
        self.events: list[ExecutorEvent] = []
        self.timeout = timeout
        self._cond = threading.Condition()

    def __call__(self, event: ExecutorEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[], object], timeout: float | None = None) -> None:
        """Until ``predicate()`` is true (re-checked on every new event), or AssertionError after ``timeout``."""
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"condition not met within {timeout}s; events so far: {self.events}")
                self._cond.wait(remaining)

    # -- what arrived so far (no waiting) ------------------------------------------------------------------------
    def of(self, kind: type[E], key: str | None = None) -> list[E]:
        with self._cond:
            return [e for e in self.events if isinstance(e, kind) and key in (None, e.key)]

    def finished(self, key: str | None = None) -> list[Finished]:
        return self.of(Finished, key)

    def started(self, key: str | None = None) -> list[Started]:
        return self.of(Started, key)

    def lines(self, key: str) -> list[str]:
        return [e.line for e in self.of(LogLine, key)]

    # -- waits -----------------------------------------------------------------------------------------------------
    def wait_finished(self, key: str, timeout: float | None = None) -> Finished:
        """The one Finished of ``key`` (AssertionError if there are more)."""
        self.wait_for(lambda: bool(self.finished(key)), timeout)
        (fin,) = self.finished(key)
        return fin

    def wait_started(self, key: str, timeout: float | None = None) -> Started:
        """The first Started of ``key``; AssertionError if it finished without one."""
        self.wait_for(lambda: bool(self.started(key)) or bool(self.finished(key)), timeout)
        started = self.started(key)
        assert started, f"{key} finished without starting: {self.finished(key)}"
        return started[0]
