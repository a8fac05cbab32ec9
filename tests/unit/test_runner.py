"""kannon.runner.run_one: one task whose upstream is complete, run as ``gokart.build`` runs it — compared with
``gokart.build`` itself on the same tasks, not with kannon's own expectations."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import gokart
import luigi
import pytest

from kannon import runner

COMPLETE_CALLS: dict[str, int] = {}
EVENTS: list[tuple[str, ...]] = []


class RunnerLeaf(gokart.TaskOnKart[int]):
    i = luigi.IntParameter()

    def complete(self) -> bool:
        COMPLETE_CALLS[self.task_id] = COMPLETE_CALLS.get(self.task_id, 0) + 1
        return bool(super().complete())

    def run(self) -> None:
        self.dump(self.i)


class RunnerRoot(gokart.TaskOnKart[int]):
    n = luigi.IntParameter()

    def requires(self) -> list[RunnerLeaf]:
        return [RunnerLeaf(i=i, workspace_directory=self.workspace_directory) for i in range(self.n)]

    def run(self) -> None:
        self.dump(sum(self.load()))


class RunnerFails(gokart.TaskOnKart[int]):
    def run(self) -> None:
        raise ValueError("boom")


@pytest.fixture
def recorded_events() -> Iterator[list[tuple[str, ...]]]:
    """luigi's dependency events, as handlers registered the documented way see them."""
    handlers: list[tuple[str, Callable[..., None]]] = []

    def on(event: str) -> Callable[[Callable[..., None]], None]:
        def register(fn: Callable[..., None]) -> None:
            luigi.Task.event_handler(event)(fn)
            handlers.append((event, fn))
        return register

    @on(luigi.Event.DEPENDENCY_DISCOVERED)
    def discovered(task: luigi.Task, dep: luigi.Task) -> None:
        EVENTS.append(("discovered", _label(task), _label(dep)))

    @on(luigi.Event.DEPENDENCY_PRESENT)
    def present(task: luigi.Task) -> None:
        EVENTS.append(("present", _label(task)))

    @on(luigi.Event.DEPENDENCY_MISSING)
    def missing(task: luigi.Task) -> None:
        EVENTS.append(("missing", _label(task)))

    EVENTS.clear()
    yield EVENTS
    for event, fn in handlers:
        luigi.Task._event_callbacks[luigi.Task][event].discard(fn)


def _ready_root(tmp_path: Path, n: int) -> RunnerRoot:
    root = RunnerRoot(n=n, workspace_directory=str(tmp_path))
    for leaf in root.requires():
        leaf.run()
    COMPLETE_CALLS.clear()
    return root


def test_each_complete_requirement_is_checked_once_not_once_per_luigi_pass(tmp_path: Path) -> None:
    """gokart.build's worker checks every requirement's complete() when scheduling and again before running (each
    a stat, or a HEAD request on an object store, and a luigi scheduler record kept until the next build); kannon
    has just confirmed them, so a task with 1,000 requirements in the master paid 3,000 checks."""
    root = _ready_root(tmp_path, 3)
    runner.run_one(root)
    assert root.output().load() == 0 + 1 + 2
    assert {leaf.task_id: 1 for leaf in root.requires()} == COMPLETE_CALLS


def test_dependency_events_are_those_gokart_build_fires(tmp_path: Path, recorded_events: list[tuple[str, ...]]) -> None:
    """luigi's worker fires DEPENDENCY_DISCOVERED (task, requirement) and DEPENDENCY_PRESENT (requirement) for each
    complete requirement; handlers registered for them see the same calls under kannon."""
    root = _ready_root(tmp_path / "gokart", 3)
    gokart.build(root, return_value=False, reset_register=False, log_level=logging.NOTSET)
    expected = sorted(recorded_events)
    assert len(expected) == 6  # the reference is what gokart.build fired, whatever that is
    recorded_events.clear()
    root = _ready_root(tmp_path / "kannon", 3)
    runner.run_one(root)
    assert sorted(recorded_events) == expected


def _label(task: luigi.Task) -> str:
    """The two roots differ by their workspace only (so by their ids): name tasks by class and index."""
    return f"{type(task).__name__}{getattr(task, 'i', '')}"


def test_builds_leave_luigis_event_handlers_as_they_were(tmp_path: Path) -> None:
    """gokart.build registers a FAILURE handler on TaskOnKart per call and never removes it: a master running many
    tasks kept one handler (with the exceptions it collected) per task, each called on every later failure."""

    def handlers() -> dict[Any, dict[str, set[Any]]]:
        return {c: {e: set(cbs) for e, cbs in ev.items()} for c, ev in luigi.Task._event_callbacks.items()}

    before = handlers()
    root = _ready_root(tmp_path, 2)
    runner.run_one(root)
    with pytest.raises(runner.TaskRaisedError):
        runner.run_one(RunnerFails(workspace_directory=str(tmp_path)))
    assert handlers() == before


class RunnerNested(gokart.TaskOnKart[int]):
    """Runs its own gokart.build(workers=2) of a root with two leaves: luigi forks a process per task then, and
    their results come back through a multiprocessing queue."""

    def run(self) -> None:
        inner = RunnerRoot(n=3, workspace_directory=self.workspace_directory)
        self.dump(gokart.build(inner, reset_register=False, workers=2, log_level=logging.NOTSET))


def _thread_starts(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    import threading

    started: list[str] = []
    original = threading.Thread.start

    def start(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", start)
    return started


def test_a_task_run_in_this_process_starts_no_thread(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """gokart.build started two threads per task (luigi's keep-alive pinger, the result queue's feeder), each start
    waiting until the new thread had run; a task run in this process needs neither. Outcomes stay gokart's: a
    value, a failure with its exception."""
    import sys

    module = sys.modules["gokart.build"]
    stock = module.WorkerSchedulerFactory
    started = _thread_starts(monkeypatch)
    root = _ready_root(tmp_path, 2)
    runner.run_one(root)
    assert root.output().load() == 1
    with pytest.raises(runner.TaskRaisedError, match="ValueError: boom"):
        runner.run_one(RunnerFails(workspace_directory=str(tmp_path)))
    assert started == []
    assert module.WorkerSchedulerFactory is stock  # put back after each build, raised or not


def test_a_tasks_own_multiprocess_build_still_gets_gokarts_worker(tmp_path: Path) -> None:
    task = RunnerNested(workspace_directory=str(tmp_path))
    runner.run_one(task)
    assert task.output().load() == 0 + 1 + 2
