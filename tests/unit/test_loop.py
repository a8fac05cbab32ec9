"""The loop around the state machine, with small real Executor subclasses: failures of the backend's own calls,
network I/O kept off the loop thread, and the observer hooks each called with the right event."""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

import pytest

import kannon
from kannon.backends.base import BackendError, Executor, Finished, Launch, Report, RunInfo
from kannon.events import Event
from kannon.result import KannonBuildError, Status
from kannon.scheduler import Interrupted, Kannon
from kannon.scheduler import state as st
from tests.support.procs import wait_until
from tests.support.tasks import Bullet, Join
from tests.unit.test_scheduler import FakeExecutor, Recorder, ids


class RefusingCancel(FakeExecutor):
    """Its first cancel() raises, as a Kubernetes DELETE may with a 500; later ones work."""

    def cancel(self, key: str) -> None:
        self.cancelled.append(key)
        if len(self.cancelled) == 1:
            raise RuntimeError("ApiException: (500) the API server is busy")
        super().cancel(key)
        self.cancelled.pop()


def test_a_failing_deadline_cancel_does_not_crash_the_loop_and_is_tried_again(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(st, "RECANCEL_DELAY", 0.05)
    b = Bullet(name="stuck").with_hints(timeout=0.05)
    fake = RefusingCancel(ids(b), lambda launch, ex: None)
    with pytest.raises(KannonBuildError) as e:
        Kannon(executor=fake).build(b)
    rec = e.value.result.tasks[b.make_unique_id()]
    assert fake.cancelled == [f"{b.make_unique_id()}-1"] * 2
    assert rec.status is Status.FAILED and rec.attempts[0].failure_class == "DeadlineExceeded"
    assert not e.value.result.cancelled and "scheduling loop failed" not in str(e.value)


class HalfStarted(Executor):
    """start() opens a resource (a thread, like a watch), then fails: close() must still release it."""

    name = "half"

    def __init__(self) -> None:
        super().__init__()
        self.stop = threading.Event()
        self.watch: threading.Thread | None = None
        self.closed = 0

    def start(self, run: RunInfo, report: Report) -> None:
        super().start(run, report)
        self.watch = threading.Thread(target=self.stop.wait, name="half-watch", daemon=True)
        self.watch.start()
        raise BackendError("the API server refused the watch: forbidden")

    def launch(self, launch: Launch) -> None:
        raise AssertionError("nothing may launch on an executor that did not start")

    def cancel(self, key: str) -> None:
        raise AssertionError("nothing to cancel")

    def close(self) -> None:
        self.closed += 1
        self.stop.set()


def test_an_executor_whose_start_fails_half_way_is_still_closed_and_the_lease_released() -> None:
    b = Bullet(name="never")
    half = HalfStarted()
    with pytest.raises(BackendError, match="forbidden"):
        Kannon(executor=half).build(b)
    assert half.closed == 1 and half.watch is not None
    half.watch.join(10)
    assert not half.watch.is_alive()
    # the lease went with it: the next build of the same pipeline is not refused
    fake = FakeExecutor(ids(b))
    assert Kannon(executor=fake).build(b).ok


_gate = threading.Event()
_in_complete = threading.Event()


class SlowStore(Bullet):
    """complete() blocks, as a check on a slow object store would, once its child has finished."""

    def complete(self) -> bool:
        if _armed.is_set():
            _in_complete.set()
            assert _gate.wait(120), "the test never released complete()"
        return bool(super().complete())


_armed = threading.Event()


def test_a_blocked_complete_does_not_delay_a_cancel() -> None:
    _gate.clear(), _in_complete.clear(), _armed.clear()
    slow = SlowStore(name="slow-store")
    other = Bullet(name="running")
    root = Join(parents=[slow, other])

    def behaviour(launch: Launch, ex: FakeExecutor) -> Finished | None:
        if launch.task_id == slow.make_unique_id():
            _armed.set()
            return ex.ok(launch)  # finishes: the master now checks complete(), which blocks
        return None  # runs until cancelled

    fake = FakeExecutor(ids(slow, other, root), behaviour)
    seen: dict[str, Any] = {}

    def operator() -> None:
        try:
            assert _in_complete.wait(60), "complete() was never called"
            os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while complete() hangs
            other_key = f"{other.make_unique_id()}-1"
            seen["cancelled"] = wait_until(lambda: other_key in fake.cancelled and other_key not in fake.live_keys(),
                                           30, "the cancel to be carried out")  # fmt: skip
        except BaseException as e:  # reported below, in the test's thread
            seen["error"] = e
        finally:
            seen["released_while_blocked"] = not _gate.is_set()
            _gate.set()

    helper = threading.Thread(target=operator)
    helper.start()
    try:
        with pytest.raises(Interrupted):
            Kannon(executor=fake, max_parallel=2).build(root)
    finally:
        _gate.set()
        _armed.clear()
        helper.join(60)
    assert "error" not in seen, seen.get("error")
    assert seen["cancelled"] and seen["released_while_blocked"]


class HookRecorder(Recorder):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Event]] = []

    @kannon.hookimpl
    def kannon_task_start(self, event: Event) -> None:
        self.calls.append(("start", event))

    @kannon.hookimpl
    def kannon_task_success(self, event: Event) -> None:
        self.calls.append(("success", event))

    @kannon.hookimpl
    def kannon_task_failure(self, event: Event) -> None:
        self.calls.append(("failure", event))

    @kannon.hookimpl
    def kannon_task_retry(self, event: Event) -> None:
        self.calls.append(("retry", event))


def test_task_hooks_are_called_with_their_events() -> None:
    flaky = Bullet(name="flaky")
    bad = Bullet(name="bad")
    root = Join(parents=[flaky, bad])

    def behaviour(launch: Launch, ex: FakeExecutor) -> Finished:
        if launch.task_id == flaky.make_unique_id() and launch.attempt == 2:
            return ex.ok(launch)
        return Finished(launch.key, 6, "boom", "TaskFailed")

    rec = HookRecorder()
    with pytest.raises(KannonBuildError):
        Kannon(executor=FakeExecutor(ids(flaky, bad, root), behaviour), retries=1, retry_delay=0,
               observers=[rec]).build(root)  # fmt: skip
    calls = {(hook, e.kind, e.task_id, e.attempt) for hook, e in rec.calls}
    f, b = flaky.make_unique_id(), bad.make_unique_id()
    assert calls == {
        ("start", "launched", f, 1), ("retry", "retried", f, 1), ("start", "launched", f, 2),
        ("success", "succeeded", f, 2),
        ("start", "launched", b, 1), ("retry", "retried", b, 1), ("start", "launched", b, 2),
        ("failure", "failed", b, 2),
    }  # fmt: skip
    # the same Event objects the event stream carries, in the same order
    stream = [e for e in rec.events if e.kind in ("launched", "retried", "succeeded", "failed")]
    assert [e for _, e in rec.calls] == stream
    assert {e.failure_class for h, e in rec.calls if h in ("retry", "failure")} == {"TaskFailed"}
    assert all(e.family == "Bullet" for _, e in rec.calls)


_bullet_done = threading.Event()
_master_running = threading.Event()


class WaitsForTheBullet(Join):
    """A master task that only finishes once the loop has confirmed a bullet that runs beside it."""

    def run(self) -> None:
        _master_running.set()
        assert _bullet_done.wait(60), "the bullet was not confirmed while this master task ran"
        self.dump(["waited"])


class SucceededWatcher:
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id

    @kannon.hookimpl
    def kannon_event(self, event: Event) -> None:
        if event.kind == "succeeded" and event.task_id == self.task_id:
            _bullet_done.set()


def test_a_bullet_finishes_and_is_confirmed_while_a_master_task_runs() -> None:
    _bullet_done.clear(), _master_running.clear()
    b = Bullet(name="beside")
    m = WaitsForTheBullet(parents=[])
    root = Join(parents=[b, m])

    def behaviour(launch: Launch, ex: FakeExecutor) -> None:
        def finish_once_the_master_task_runs() -> None:
            assert _master_running.wait(60)
            ex._finish(launch.key, ex.ok(launch))

        threading.Thread(target=finish_once_the_master_task_runs).start()

    rec = Recorder()
    fake = FakeExecutor(ids(b, m, root), behaviour)
    result = Kannon(executor=fake, observers=[SucceededWatcher(b.make_unique_id()), rec]).build(root)
    assert result.ok
    order = [(e.kind, e.family) for e in rec.events if e.kind == "succeeded"]
    assert order.index(("succeeded", "Bullet")) < order.index(("succeeded", "WaitsForTheBullet"))
