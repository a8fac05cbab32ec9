"""The scheduling core against a fake executor: no processes, no sleeps; the fake decides every outcome."""

from __future__ import annotations

import logging
import os
import re
import signal
import threading
from collections.abc import Callable
from typing import Any

import luigi
import pytest

import kannon
from kannon.backends.base import Executor, Finished, Launch, Started
from kannon.result import KannonBuildError, Status
from kannon.scheduler import Interrupted, Kannon, PlanError
from tests.support.tasks import Bullet, Join, Leaf

Behaviour = Callable[[Launch, "FakeExecutor"], "Finished | None"]


class FakeExecutor(Executor):
    """Runs nothing. ``behaviour(launch)`` returns the Finished to report (None: stay running until cancelled).
    A successful fake child writes the task's output, as a real child would."""

    name = "fake"
    delivers_secrets = True

    def __init__(self, tasks: dict[str, luigi.Task], behaviour: Behaviour | None = None, hold: int = 0,
                 expected_launches: int = 0) -> None:
        super().__init__()
        self.tasks = tasks
        self.behaviour = behaviour or (lambda launch, ex: ex.ok(launch))
        self.launches: list[Launch] = []
        self.live: list[str] = []
        self.max_live = 0
        self.cancelled: list[str] = []
        self.hold = hold  # keep up to `hold` launches live before finishing the oldest (0: finish at once)
        self.held: list[tuple[str, Finished]] = []
        self.expected_launches = expected_launches

    def ok(self, launch: Launch, write_output: bool = True) -> Finished:
        if write_output:
            self.tasks[launch.task_id].dump(f"out-{launch.task_id[:6]}")
        return Finished(launch.key, 0, log_tail=("child says hi",), where="fake")

    def launch(self, launch: Launch) -> None:
        self.track(launch.key)
        self.launches.append(launch)
        self.live.append(launch.key)
        self.max_live = max(self.max_live, len(self.live))
        self.emit(Started(launch.key, "fake"))
        outcome = self.behaviour(launch, self)
        if outcome is None:
            return
        if self.hold:
            self.held.append((launch.key, outcome))
            if len(self.held) >= self.hold:
                self._finish(*self.held.pop(0))
            if len(self.launches) == self.expected_launches:  # nothing else will come: let the rest finish
                while self.held:
                    self._finish(*self.held.pop(0))
        else:
            self._finish(launch.key, outcome)

    def _finish(self, key: str, fin: Finished) -> None:
        self.live.remove(key)
        threading.Thread(target=self.emit, args=(fin,)).start()

    def cancel(self, key: str) -> None:
        self.cancelled.append(key)
        if key in self.live:
            self.held = [(k, f) for k, f in self.held if k != key]
            self._finish(key, Finished(key, 143, "cancelled", "Cancelled"))

    def close(self) -> None:
        for key, fin in list(self.held):  # release whatever is still held
            self.held.remove((key, fin))
            self._finish(key, fin)


def ids(*tasks: luigi.Task) -> dict[str, luigi.Task]:
    out: dict[str, luigi.Task] = {}
    for t in tasks:
        out[t.make_unique_id()] = t
    return out


class Recorder:
    def __init__(self) -> None:
        self.events: list[kannon.events.Event] = []  # type: ignore[name-defined]

    @kannon.hookimpl
    def kannon_event(self, event: Any) -> None:
        self.events.append(event)

    def kinds(self, family: str | None = None) -> list[str]:
        return [e.kind for e in self.events if family is None or e.family == family]


def diamond() -> tuple[Join, list[luigi.Task]]:
    leaf = Leaf(name="root-input")
    bullets = [Bullet(name=f"b{i}", parents=[leaf]) for i in range(3)]
    top = Join(parents=bullets)
    return top, [leaf, *bullets, top]


def test_runs_everything_in_dependency_order() -> None:
    top, tasks = diamond()
    fake = FakeExecutor(ids(*tasks))
    rec = Recorder()
    result = Kannon(executor=fake, observers=[rec]).build(top)
    assert result.ok
    statuses = {r.family + r.params[-4:]: r.status for r in result.tasks.values()}
    assert set(statuses.values()) == {Status.SUCCEEDED}
    assert sorted(launch.family for launch in fake.launches) == ["Bullet"] * 3
    # the leaf ran in the master before any bullet; the join after all of them
    order = [(e.kind, e.family) for e in rec.events if e.kind == "succeeded"]
    assert order[0] == ("succeeded", "Leaf") and order[-1] == ("succeeded", "Join")
    assert rec.kinds()[0] == "run_started" and rec.kinds()[-1] == "run_finished"
    for launch in fake.launches:
        assert launch.child_args[:2] == ("run-task", "--spec")
        assert launch.env["KANNON_TASK_ID"] == launch.task_id


def test_rerun_is_a_no_op() -> None:
    top, tasks = diamond()
    Kannon(executor=FakeExecutor(ids(*tasks))).build(top)
    fake = FakeExecutor(ids(*tasks))
    result = Kannon(executor=fake).build(top)
    assert fake.launches == []
    assert [r.status for r in result.tasks.values()] == [Status.COMPLETE]


def test_max_parallel_caps_running_bullets() -> None:
    bullets = [Bullet(name=f"p{i}") for i in range(6)]
    top = Join(parents=bullets)
    fake = FakeExecutor(ids(*bullets, top), hold=2, expected_launches=6)
    Kannon(executor=fake, max_parallel=2).build(top)
    assert fake.max_live == 2
    assert len(fake.launches) == 6


def test_retries_then_success_records_every_attempt() -> None:
    b = Bullet(name="flaky")
    tries: list[int] = []

    def flaky(launch: Launch, ex: FakeExecutor) -> Finished:
        tries.append(launch.attempt)
        if launch.attempt == 1:
            return Finished(launch.key, 6, "TaskC raised RuntimeError: boom", "TaskFailed", log_tail=("boom",))
        return ex.ok(launch)

    rec = Recorder()
    result = Kannon(executor=FakeExecutor(ids(b), flaky), retries=1, retry_delay=0, observers=[rec]).build(b)
    record = result.tasks[b.make_unique_id()]
    assert record.status is Status.SUCCEEDED
    assert [a.number for a in record.attempts] == [1, 2]
    assert record.attempts[0].reason and "boom" in record.attempts[0].reason
    assert rec.kinds("Bullet").count("retried") == 1


def test_per_class_retries_override_the_default() -> None:
    b = Bullet(name="stubborn").with_hints(retries=2)
    fake = FakeExecutor(ids(b), lambda launch, ex: Finished(launch.key, 6, "nope", "TaskFailed"))
    with pytest.raises(KannonBuildError):
        Kannon(executor=fake, retries=0, retry_delay=0).build(b)
    assert len(fake.launches) == 3


def test_final_failure_keeps_going_and_reports_everything() -> None:
    leaf = Leaf(name="in")
    bad = Bullet(name="bad", parents=[leaf])
    after_bad = Bullet(name="after-bad", parents=[bad])
    good = Bullet(name="good", parents=[leaf])
    top = Join(parents=[after_bad, good])

    def behaviour(launch: Launch, ex: FakeExecutor) -> Finished:
        if launch.task_id == bad.make_unique_id():
            tail = tuple(f"line {i}" for i in range(30)) + ("Traceback: ValueError: the-real-cause",)
            return Finished(launch.key, 6, "Bullet raised ValueError: the-real-cause", "TaskFailed", log_tail=tail)
        return ex.ok(launch)

    fake = FakeExecutor(ids(leaf, bad, after_bad, good, top), behaviour)
    with pytest.raises(KannonBuildError) as e:
        Kannon(executor=fake).build(top)
    result = e.value.result
    st = {r.params.split(",")[0]: r.status for r in result.tasks.values() if r.family == "Bullet"}
    assert st == {"name=bad": Status.FAILED, "name=after-bad": Status.UPSTREAM_FAILED, "name=good": Status.SUCCEEDED}
    assert result.tasks[top.make_unique_id()].status is Status.UPSTREAM_FAILED
    message = str(e.value)
    assert "Bullet" in message and bad.make_unique_id() in message and "name=bad" in message
    assert "the-real-cause" in message and "exit code 6" in message
    assert "line 11" in message and "line 10\n" not in message  # the last 20 lines only
    assert "not run because something they need failed" in message


def test_fail_fast_cancels_running_children() -> None:
    slow = Bullet(name="slow")
    bad = Bullet(name="bad")
    top = Join(parents=[slow, bad])

    def behaviour(launch: Launch, ex: FakeExecutor) -> Finished | None:
        if launch.task_id == bad.make_unique_id():
            return Finished(launch.key, 6, "boom", "TaskFailed")
        return None  # runs until cancelled

    fake = FakeExecutor(ids(slow, bad, top), behaviour)
    with pytest.raises(KannonBuildError) as e:
        Kannon(executor=fake, keep_going=False, max_parallel=5).build(top)
    assert fake.cancelled == [slow.make_unique_id() + "-1"]
    statuses = {r.params: r.status for r in e.value.result.tasks.values()}
    assert Status.CANCELLED in statuses.values() and Status.FAILED in statuses.values()


def test_infrastructure_failures_do_not_spend_retries() -> None:
    b = Bullet(name="evicted")

    def behaviour(launch: Launch, ex: FakeExecutor) -> Finished:
        if launch.attempt <= 2:
            return Finished(launch.key, None, "pod evicted", "Evicted", infra=True)
        return ex.ok(launch)

    result = Kannon(executor=FakeExecutor(ids(b), behaviour), retries=0, infra_retries=3).build(b)
    assert [a.failure_class for a in result.tasks[b.make_unique_id()].attempts] == ["Evicted", "Evicted", None]


def test_infrastructure_retries_are_bounded() -> None:
    b = Bullet(name="always-evicted")
    fake = FakeExecutor(ids(b), lambda launch, ex: Finished(launch.key, None, "pod evicted", "Evicted", infra=True))
    with pytest.raises(KannonBuildError, match="pod evicted"):
        Kannon(executor=fake, retries=0, infra_retries=2).build(b)
    assert len(fake.launches) == 3


def test_exit_zero_without_output_is_a_failure() -> None:
    b = Bullet(name="liar")
    fake = FakeExecutor(ids(b), lambda launch, ex: ex.ok(launch, write_output=False))
    with pytest.raises(KannonBuildError, match="exited 0 but the output is missing"):
        Kannon(executor=fake).build(b)


def test_timeout_cancels_and_fails_with_deadline_exceeded() -> None:
    b = Bullet(name="sleepy").with_hints(timeout=0.05)
    fake = FakeExecutor(ids(b), lambda launch, ex: None)
    with pytest.raises(KannonBuildError, match="DeadlineExceeded") as e:
        Kannon(executor=fake).build(b)
    assert fake.cancelled == [b.make_unique_id() + "-1"]
    assert e.value.result.tasks[b.make_unique_id()].attempts[0].failure_class == "DeadlineExceeded"


class Exploding(kannon.TaskOnBullet[str]):
    pass


class MasterBoom(Leaf):
    def run(self) -> None:
        raise ZeroDivisionError("master-side-boom")


def test_master_task_failure_carries_its_traceback() -> None:
    m = MasterBoom(name="m")
    with pytest.raises(KannonBuildError) as e:
        Kannon(executor=FakeExecutor({})).build(m)
    rec = e.value.result.tasks[m.make_unique_id()]
    assert rec.status is Status.FAILED and rec.placement.value == "master"
    assert "ZeroDivisionError: master-side-boom" in str(e.value)
    assert any("ZeroDivisionError" in line for line in rec.attempts[0].log_tail)


def test_a_real_sigint_cancels_every_child_and_raises_interrupted() -> None:
    bullets = [Bullet(name=f"s{i}") for i in range(3)]
    top = Join(parents=bullets)
    launched = threading.Event()

    def behaviour(launch: Launch, ex: FakeExecutor) -> None:
        if len(ex.launches) == 3:
            launched.set()
            os.kill(os.getpid(), signal.SIGINT)  # process-directed, like a real Ctrl-C: the main thread gets it
        return None

    fake = FakeExecutor(ids(*bullets, top), behaviour)
    with pytest.raises(Interrupted) as e:
        Kannon(executor=fake, max_parallel=3).build(top)
    assert e.value.signum == signal.SIGINT
    assert sorted(fake.cancelled) == sorted(launch.key for launch in fake.launches)
    assert e.value.result is not None
    assert {r.status for r in e.value.result.tasks.values()} == {Status.CANCELLED}


def test_child_env_precedence_inherited_then_hints_then_kannon(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KANNON_TEST_TOKEN", "s3cr3t")
    monkeypatch.setenv("SHARED", "from-master")
    b = Bullet(name="env").with_hints(env={"EXTRA": "1", "SHARED": "from-hints"})
    fake = FakeExecutor(ids(b))
    Kannon(executor=fake, env_to_inherit=["KANNON_TEST_TOKEN", "SHARED", "NOT_SET_ANYWHERE"]).build(b)
    env = fake.launches[0].env
    # inherited values are secrets: they travel once per run in RunInfo.secrets, never in a Launch
    assert fake.run is not None and "KANNON_SPEC_KEY" in fake.run.secrets  # the run's spec key travels alike
    assert {k: v for k, v in fake.run.secrets.items() if k != "KANNON_SPEC_KEY"} == {"KANNON_TEST_TOKEN": "s3cr3t",
                                                                                     "SHARED": "from-master"}
    assert "s3cr3t" not in repr(fake.run) and "KANNON_TEST_TOKEN" not in env and "NOT_SET_ANYWHERE" not in env
    assert env["EXTRA"] == "1" and env["SHARED"] == "from-hints"  # the backend lays Launch.env over the secrets
    assert env["KANNON_TASK_ID"] == b.make_unique_id() and env["KANNON_ATTEMPT"] == "1"
    assert env["KANNON_RUN_ID"] == fake.launches[0].run_id and env["KANNON_INVOCATION_ID"]


def test_a_backend_that_does_not_declare_secret_delivery_gets_them_in_each_launch(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # A third-party backend written before RunInfo.secrets existed lays only Launch.env over its environment: its
    # children must still get the inherited values and the spec key (else they exit 9), and the user is told.
    class OldBackend(FakeExecutor):
        delivers_secrets = False

    monkeypatch.setenv("KANNON_TEST_TOKEN", "s3cr3t-value")
    b = Bullet(name="old").with_hints(env={"KANNON_TEST_TOKEN": "from-hints"})
    fake = OldBackend(ids(b))
    with caplog.at_level(logging.WARNING, logger="kannon"):
        Kannon(executor=fake, env_to_inherit=["KANNON_TEST_TOKEN"]).build(b)
    env = fake.launches[0].env
    assert env["KANNON_SPEC_KEY"] == fake.run.secrets["KANNON_SPEC_KEY"]  # type: ignore[union-attr]
    assert env["KANNON_TEST_TOKEN"] == "from-hints"  # hints still win over an inherited name
    assert any("does not declare that it delivers secrets" in r.getMessage() for r in caplog.records)


def test_env_to_inherit_is_read_once_when_the_run_starts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SNAPSHOT", "at-start")
    bullets = [Bullet(name=f"once{i}") for i in range(2)]
    top = Join(parents=bullets)

    def behaviour(launch: Launch, ex: FakeExecutor) -> Finished:
        os.environ["SNAPSHOT"] = "changed-later"  # the master's environment changes mid-run
        return ex.ok(launch)

    fake = FakeExecutor(ids(*bullets, top), behaviour)
    Kannon(executor=fake, env_to_inherit=["SNAPSHOT"], max_parallel=1).build(top)
    assert len(fake.launches) == 2 and fake.run is not None
    assert {k: v for k, v in fake.run.secrets.items() if k != "KANNON_SPEC_KEY"} == {"SNAPSHOT": "at-start"}


@pytest.mark.parametrize("name", ["KANNON_TASK_ID", "KANNON_RUN_ID", "KANNON_SPEC", "KANNON_ATTEMPT",
                                  "KANNON_SPEC_KEY"])  # fmt: skip
def test_hints_env_naming_a_reserved_variable_is_a_plan_error(name: str) -> None:
    b = Bullet(name="forger").with_hints(env={name: "forged"})
    fake = FakeExecutor(ids(b))
    with pytest.raises(PlanError, match=f"env '{name}' is reserved"):
        Kannon(executor=fake).build(b)
    assert fake.launches == []


def _build_in_thread(kannon_: Kannon, root: luigi.Task) -> Any:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(kannon_.build(root))
        except Exception as exc:
            out.append(exc)

    thread = threading.Thread(target=run, name="not-main")
    thread.start()
    thread.join(60)
    assert not thread.is_alive()
    return out[0]


def test_master_tasks_outside_the_main_thread_are_refused_before_any_launch() -> None:
    top, tasks = diamond()
    fake = FakeExecutor(ids(*tasks))
    err = _build_in_thread(Kannon(executor=fake), top)
    assert isinstance(err, PlanError)
    assert "thread 'not-main'" in str(err) and "Join, Leaf" in str(err) and "main thread" in str(err)
    assert fake.launches == []


def test_bullets_only_build_works_outside_the_main_thread() -> None:
    lone = Bullet(name="thread-lone")
    fake = FakeExecutor(ids(lone))
    result = _build_in_thread(Kannon(executor=fake), lone)
    assert not isinstance(result, Exception), result
    assert result.ok and [launch.family for launch in fake.launches] == ["Bullet"]


def test_tasks_waiting_for_a_slot_are_announced_queued_and_timed() -> None:
    bullets = [Bullet(name=f"q{i}") for i in range(4)]
    leaves = [Leaf(name="queued-a"), Leaf(name="queued-b")]  # two master tasks ready at once: one waits
    top = Join(parents=[*bullets, *leaves])
    fake = FakeExecutor(ids(*bullets, *leaves, top), hold=2, expected_launches=4)
    rec = Recorder()
    result = Kannon(executor=fake, max_parallel=2, observers=[rec]).build(top)
    assert result.ok
    queued = [e for e in rec.events if e.kind == "queued"]
    # 4 bullets ready together with 2 slots: the 2 that could not launch at once; 1 of the 2 master leaves
    assert sorted(e.family for e in queued) == ["Bullet", "Bullet", "Leaf"]
    assert all(e.attempt == 1 for e in queued)
    for e in queued:
        assert e.task_id is not None
        att = result.tasks[e.task_id].attempts[0]
        assert att.queued_at == e.time and att.queued_at <= att.launched_at
        launched = next(x for x in rec.events if x.kind == "launched" and x.task_id == e.task_id)
        assert rec.events.index(e) < rec.events.index(launched)
    never_queued = {t for t in result.tasks if t not in {e.task_id for e in queued}}
    assert all(a.queued_at is None for t in never_queued for a in result.tasks[t].attempts)


def test_run_id_covers_the_workspace_and_every_build_has_its_own_invocation(tmp_path: Any) -> None:
    here = Bullet(name="rid")
    there = Bullet(name="rid", workspace_directory=str(tmp_path / "elsewhere"))
    assert here.make_unique_id() == there.make_unique_id()  # the workspace is not part of a task's id
    first = Kannon(executor=FakeExecutor(ids(here))).build(here)
    again = Kannon(executor=FakeExecutor(ids(here))).build(here)  # a rerun: same run (re-attach), new invocation
    other = Kannon(executor=FakeExecutor(ids(there))).build(there)
    assert first.run_id == again.run_id != other.run_id
    assert first.invocation_id != again.invocation_id
    for inv in (first.invocation_id, again.invocation_id):  # sortable by start time: UTC stamp first
        assert re.fullmatch(r"\d{8}T\d{6}Z-[0-9a-f]{6}", inv), inv


def test_the_planned_heap_is_out_of_the_collectors_full_passes_during_the_run_only() -> None:
    import gc

    top, tasks = diamond()
    seen: list[int] = []
    fake = FakeExecutor(ids(*tasks), lambda launch, ex: (seen.append(gc.get_freeze_count()), ex.ok(launch))[1])
    before = gc.get_freeze_count()  # 0, or the few hundred Python 3.12.1 starts with
    Kannon(executor=fake).build(top)
    # while bullets launch, every object that existed when the run started (the plan's tasks among them) is frozen
    assert len(seen) == 3 and min(seen) >= before + len(tasks)
    assert gc.get_freeze_count() <= before  # and given back to the collector when build() returns


def test_a_heap_frozen_by_the_caller_stays_as_the_caller_froze_it() -> None:
    import gc

    top, tasks = diamond()
    seen: list[int] = []
    fake = FakeExecutor(ids(*tasks), lambda launch, ex: (seen.append(gc.get_freeze_count()), ex.ok(launch))[1])
    gc.freeze()  # a pre-fork server's, or an outer build's
    try:
        frozen = gc.get_freeze_count()
        Kannon(executor=fake).build(top)
        # not frozen again (that would add every object since) nor unfrozen (0); frozen objects may be freed
        assert len(seen) == 3 and all(0 < n <= frozen for n in [*seen, gc.get_freeze_count()])
    finally:
        gc.unfreeze()
