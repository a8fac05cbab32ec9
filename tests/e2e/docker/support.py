"""Helpers for the Docker e2e tests: a test-only executor running plain Python, and an event recorder."""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from kannon.backends.base import ExecutorEvent, Finished, Launch, LogLine, Started
from kannon.backends.docker import DockerExecutor
from kannon.hints import Hints

REPO = Path(__file__).resolve().parents[3]


def python_volumes() -> list[str]:
    """The venv, its base interpreter and this checkout (the editable install points there), read-only."""
    paths = dict.fromkeys([sys.prefix, sys.base_prefix, str(REPO)])
    return [f"{p}:{p}:ro" for p in paths]


class ScriptExecutor(DockerExecutor):
    """Test-only: runs ``python -c <child_args[0]>`` instead of the kannon child, to test the container plumbing."""

    def command(self, launch: Launch) -> list[str]:
        return [self.python, "-c", launch.child_args[0]]


class Recorder:
    """Collects executor events; tests wait on conditions over them (no sleeps)."""

    def __init__(self) -> None:
        self.events: list[ExecutorEvent] = []
        self._cond = threading.Condition()

    def __call__(self, event: ExecutorEvent) -> None:
        with self._cond:
            self.events.append(event)
            self._cond.notify_all()

    def wait_for(self, predicate: Callable[[list[ExecutorEvent]], bool], timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.events):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"condition not met within {timeout}s; events so far: {self.events}")
                self._cond.wait(remaining)

    def finished(self, key: str | None = None) -> list[Finished]:
        with self._cond:
            return [e for e in self.events if isinstance(e, Finished) and key in (None, e.key)]

    def started(self, key: str | None = None) -> list[Started]:
        with self._cond:
            return [e for e in self.events if isinstance(e, Started) and key in (None, e.key)]

    def lines(self, key: str) -> list[str]:
        with self._cond:
            return [e.line for e in self.events if isinstance(e, LogLine) and e.key == key]

    def wait_finished(self, key: str, timeout: float = 120.0) -> Finished:
        self.wait_for(lambda _: bool(self.finished(key)), timeout)
        (fin,) = self.finished(key)
        return fin

    def wait_started(self, key: str, timeout: float = 120.0) -> Started:
        self.wait_for(lambda _: bool(self.started(key)) or bool(self.finished(key)), timeout)
        started = self.started(key)
        assert started, f"{key} finished without starting: {self.finished(key)}"
        return started[0]


def script_launch(run_id: str, tmp_path: Path, n: int, code: str, hints: Hints = Hints(),
                  env: dict[str, str] | None = None, attempt: int = 1) -> Launch:  # fmt: skip
    task_id = f"{n:032x}"
    return Launch(
        key=f"{task_id}-{attempt}", run_id=run_id, task_id=task_id, family=f"Script{n}", attempt=attempt,
        child_args=(code,), env=env or {}, hints=hints,
        log_path=tmp_path / "run" / "logs" / f"Script{n}-{attempt}.log",
    )  # fmt: skip
