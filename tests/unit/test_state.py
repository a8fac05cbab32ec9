"""The run's state machine alone: events in, actions out. No threads, no executor, no clock — time is an argument."""

from __future__ import annotations

import signal
from typing import Any, TypeVar

import pytest

from kannon.backends.base import Finished, Started
from kannon.hints import Hints
from kannon.plan import Node, Plan
from kannon.result import Placement, Status
from kannon.scheduler import state as st

A = TypeVar("A")


def node(name: str, *deps: str, master: bool = False, **hints: Any) -> Node:
    placement = Placement.MASTER if master else Placement.BULLET
    return Node(name, None, name.rstrip("0123456789"), f"name={name}", placement, tuple(deps),  # type: ignore[arg-type]
                None if master else Hints(**hints))  # fmt: skip


def slot_counts(state: st.RunState) -> tuple[int, int]:
    return state._slots_used(), state._submitted()


def recounted(state: st.RunState) -> tuple[int, int]:
    """The slot counts as the machine kept them before they were counters: summed over the live attempts."""
    busy = [live for live in state.live.values() if live.phase in ("preparing", "launched")]
    return sum(1 for live in busy if not live.queued), len(busy)


class Sim:
    """Drives a RunState and keeps every action it returned, with the time it was returned at."""

    def __init__(self, *nodes: Node, **policy: Any) -> None:
        plan = Plan(root_id=nodes[-1].task_id, nodes={n.task_id: n for n in nodes})
        self.state = st.RunState(plan, st.Policy(**policy), "run1", "fake", "20261203T120102Z-3fa9c1")
        self.now = 0.0
        self.log: list[tuple[float, st.Action]] = []
        self.last: list[st.Action] = self._keep(self.state.start(self.now))

    def _keep(self, actions: list[st.Action]) -> list[st.Action]:
        self.log.extend((self.now, a) for a in actions)
        assert slot_counts(self.state) == recounted(self.state)  # after every step of every scenario
        return actions

    def step(self, event: Any, at: float | None = None) -> list[st.Action]:
        if at is not None:
            self.now = at
        self.last = self._keep(self.state.step(event, self.now))
        return self.last

    def tick(self, at: float) -> list[st.Action]:
        return self.step(st.Tick(), at)

    def all(self, kind: type[A]) -> list[A]:
        return [a for _, a in self.log if isinstance(a, kind)]

    def new(self, kind: type[A]) -> list[A]:
        return [a for a in self.last if isinstance(a, kind)]

    def events(self, kind: str, task: str | None = None) -> list[Any]:
        found = [a.event for a in self.all(st.Emit) if a.event.kind == kind]
        return [e for e in found if task is None or e.task_id == task]

    def launch(self, task: str) -> str:
        """Answer the pending Prepare of ``task``; returns the launched key."""
        (prep,) = [p for p in self.all(st.Prepare) if p.task_id == task and p.key not in self._answered]
        self._answered.add(prep.key)
        launched = self.step(st.Prepared(prep.key))
        assert [a.key for a in launched if isinstance(a, st.Launch)] == [prep.key]
        return prep.key

    _answered: set[str]

    def fail(self, key: str, failure_class: str = "TaskFailed", infra: bool = False, at: float | None = None,
             code: int | None = 6) -> list[st.Action]:  # fmt: skip
        return self.step(Finished(key, code, f"{failure_class} happened", failure_class, infra=infra,
                                  at=self.now if at is None else at), at)  # fmt: skip

    def succeed(self, key: str, at: float | None = None) -> list[st.Action]:
        self.step(Finished(key, 0, at=self.now if at is None else at), at)
        assert [c.key for c in self.new(st.Confirm)] == [key]
        return self.step(st.Confirmed(key, True))

    def done(self) -> st.Done:
        (d,) = self.all(st.Done)
        return d


@pytest.fixture(autouse=True)
def _answered() -> None:
    Sim._answered = set()


def test_a_chain_runs_in_order_and_ends_with_done() -> None:
    sim = Sim(node("a"), node("b", "a"))
    assert [p.task_id for p in sim.all(st.Prepare)] == ["a"]
    sim.succeed(sim.launch("a"))
    assert [p.task_id for p in sim.all(st.Prepare)] == ["a", "b"]
    sim.succeed(sim.launch("b"))
    done = sim.done()
    assert done.result.ok and done.signum is None
    assert [e.kind for e in (a.event for a in sim.all(st.Emit))][:3] == ["run_started", "planned", "planned"]
    assert sim.events("run_started")[0].invocation_id == "20261203T120102Z-3fa9c1"


def test_retry_schedule_doubles_and_is_capped_by_retry_delay_max() -> None:
    sim = Sim(node("t"), retries=4, retry_delay=1.0, retry_delay_max=3.0)
    key = sim.launch("t")
    due_at = []
    for n in range(4):
        sim.fail(key, at=100.0 * (n + 1))
        due = sim.state.next_due()
        assert due is not None
        due_at.append(due - sim.now)
        assert sim.tick(due - 0.001) == [] or not sim.new(st.Prepare)  # not a moment early
        sim.tick(due)
        assert len(sim.new(st.Prepare)) == 1
        key = sim.launch("t")
    assert due_at == [1.0, 2.0, 3.0, 3.0]  # 1, 2, 4 -> capped at 3, 8 -> 3
    sim.fail(key)  # the fifth failure: retries spent
    assert sim.done().result.tasks["t"].status is Status.FAILED
    assert len(sim.events("retried", "t")) == 4 and len(sim.events("failed", "t")) == 1


@pytest.mark.parametrize("klass", sorted(st.NOT_RETRYABLE))
def test_not_retryable_classes_fail_at_once_even_with_retries_left(klass: str) -> None:
    sim = Sim(node("t"), retries=5, retry_delay=0.0)
    sim.fail(sim.launch("t"), klass)
    rec = sim.done().result.tasks["t"]
    assert rec.status is Status.FAILED and len(rec.attempts) == 1
    assert sim.events("retried") == []


def test_a_retryable_class_with_the_same_policy_is_retried() -> None:
    # the control for the test above: the same policy does retry an ordinary failure
    sim = Sim(node("t"), retries=5, retry_delay=0.0)
    sim.fail(sim.launch("t"), "TaskFailed")
    assert sim.all(st.Done) == [] and len(sim.events("retried")) == 1


def test_per_task_retries_override_the_policy() -> None:
    sim = Sim(node("t", retries=1), retries=0, retry_delay=0.0)
    sim.fail(sim.launch("t"))
    sim.fail(sim.launch("t"))
    assert len(sim.done().result.tasks["t"].attempts) == 2


def test_infrastructure_failures_have_their_own_budget_then_count_as_ordinary_ones() -> None:
    sim = Sim(node("t"), retries=1, retry_delay=7.0, infra_retries=2)
    for _ in range(2):  # free: retried at once (in the same step), no retry spent
        sim.fail(sim.launch("t"), "Evicted", infra=True)
        assert len(sim.new(st.Prepare)) == 1
    sim.fail(sim.launch("t"), "Evicted", infra=True)  # budget spent: counts, and waits the normal backoff
    assert sim.state.next_due() == sim.now + 7.0
    sim.tick(sim.now + 7.0)
    sim.fail(sim.launch("t"), "Evicted", infra=True)  # and the task's own retry is now spent too
    rec = sim.done().result.tasks["t"]
    assert rec.status is Status.FAILED
    assert [a.infra for a in rec.attempts] == [True, True, False, False]


def test_a_deadline_cancels_the_attempt_and_it_fails_with_deadline_exceeded() -> None:
    sim = Sim(node("t", timeout=10.0), retries=0)
    key = sim.launch("t")
    assert sim.tick(9.99) == [] or sim.new(st.Cancel) == []
    sim.tick(10.0)
    assert [c.key for c in sim.new(st.Cancel)] == [key]
    sim.step(Finished(key, 143, "cancelled", "Cancelled"), 10.5)
    rec = sim.done().result.tasks["t"]
    assert rec.status is Status.FAILED and rec.attempts[0].failure_class == "DeadlineExceeded"
    assert rec.reason is not None and "timeout of 10.0 s" in rec.reason


def test_a_refused_deadline_cancel_is_tried_again_later() -> None:
    sim = Sim(node("t", timeout=1.0))
    key = sim.launch("t")
    sim.tick(1.0)
    sim.step(st.CancelFailed(key, "ApiException: 500"))
    assert sim.new(st.Cancel) == [] and sim.state.next_due() == 1.0 + st.RECANCEL_DELAY
    sim.tick(1.0 + st.RECANCEL_DELAY)
    assert [c.key for c in sim.new(st.Cancel)] == [key]


def test_a_finished_attempt_has_no_deadline_left() -> None:
    sim = Sim(node("t", timeout=5.0), node("u", "t"))
    sim.succeed(sim.launch("t"), at=1.0)
    sim.launch("u")
    sim.tick(6.0)
    assert sim.all(st.Cancel) == []


def test_fail_fast_cancels_running_attempts_and_drops_waiting_ones() -> None:
    sim = Sim(node("a"), node("b"), node("c"), node("top", "a", "b", "c"), keep_going=False, max_parallel=2)
    ka, kb = sim.launch("a"), sim.launch("b")
    sim.fail(ka)
    assert [c.key for c in sim.new(st.Cancel)] == [kb]
    assert sim.all(st.Done) == []  # b is still running: the run waits for it
    sim.step(Finished(kb, 143, "cancelled", "Cancelled"))
    result = sim.done().result
    assert {t: r.status for t, r in result.tasks.items()} == {
        "a": Status.FAILED, "b": Status.CANCELLED, "c": Status.CANCELLED, "top": Status.CANCELLED}
    assert not result.cancelled and sim.done().signum is None  # a failure, not an interruption
    assert len(sim.all(st.Prepare)) == 2  # c was never started


def test_keep_going_finishes_independent_branches_and_names_the_failed_upstream() -> None:
    sim = Sim(node("a"), node("b"), node("after", "a"), node("top", "after", "b"), keep_going=True)
    sim.fail(sim.launch("a"))
    sim.succeed(sim.launch("b"))
    result = sim.done().result
    assert result.tasks["b"].status is Status.SUCCEEDED
    assert result.tasks["after"].status is Status.UPSTREAM_FAILED
    assert result.tasks["top"].reason == "upstream failed: a a"


def test_a_signal_cancel_while_attempts_run_waits_for_each_and_reports_the_signal() -> None:
    sim = Sim(node("a"), node("b"), node("c"), node("top", "a", "b", "c"))
    ka, kb = sim.launch("a"), sim.launch("b")  # c: still preparing its spec
    sim.step(st.CancelRun("received SIGINT", signal.SIGINT))
    assert sorted(c.key for c in sim.new(st.Cancel)) == sorted([ka, kb])
    (prep_c,) = [p for p in sim.all(st.Prepare) if p.task_id == "c"]
    assert sim.step(st.Prepared(prep_c.key)) == []  # its spec arrived late: nothing is launched
    sim.step(Finished(ka, 130, "cancelled", "Cancelled"))
    assert sim.all(st.Done) == []
    sim.step(Finished(kb, 130, "cancelled", "Cancelled"))
    done = sim.done()
    assert done.signum == signal.SIGINT and done.result.cancelled
    assert {r.status for r in done.result.tasks.values()} == {Status.CANCELLED}


def test_a_second_signal_after_a_fail_fast_cancel_still_interrupts() -> None:
    sim = Sim(node("a"), node("b"), keep_going=False)
    ka, kb = sim.launch("a"), sim.launch("b")
    sim.fail(ka)
    sim.step(st.CancelRun("received SIGTERM", signal.SIGTERM))
    sim.step(Finished(kb, 143, "cancelled", "Cancelled"))
    assert sim.done().signum == signal.SIGTERM


def test_a_bullet_finishes_while_a_master_task_runs() -> None:
    sim = Sim(node("m", master=True), node("b"), node("after_b", "b"), node("top", "m", "after_b", master=True))
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["m"]
    sim.step(st.MasterStarted("m"))
    sim.succeed(sim.launch("b"))  # the master task is still running: the loop goes on
    assert sim.state.records["b"].status is Status.SUCCEEDED
    sim.succeed(sim.launch("after_b"))
    assert sim.state.master_running == "m" and sim.all(st.Done) == []
    sim.step(st.MasterDone("m", True))
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["m", "top"]
    sim.step(st.MasterStarted("top"))
    sim.step(st.MasterDone("top", True))
    assert sim.done().result.ok


def test_master_tasks_run_one_at_a_time_and_the_waiting_one_is_queued() -> None:
    sim = Sim(node("m1", master=True), node("m2", master=True), node("top", "m1", "m2"))
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["m1"]
    assert [e.task_id for e in sim.events("queued")] == ["m2"]
    sim.step(st.MasterStarted("m1"))
    sim.step(st.MasterDone("m1", False, "boom", "TaskFailed", ("Traceback", "ZeroDivisionError")))
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["m1", "m2"]
    sim.step(st.MasterDone("m2", True))  # its end is reported even if its start never was
    result = sim.done().result
    assert result.tasks["m1"].status is Status.FAILED and result.tasks["m2"].status is Status.SUCCEEDED
    assert result.tasks["m1"].attempts[0].log_tail[-1] == "ZeroDivisionError"


def test_a_master_task_interrupted_by_the_signal_is_cancelled() -> None:
    sim = Sim(node("m", master=True), node("b"), node("top", "m", "b"))
    kb = sim.launch("b")
    sim.step(st.MasterStarted("m"))
    sim.step(st.CancelRun("received SIGINT", signal.SIGINT))
    assert [c.key for c in sim.new(st.Cancel)] == [kb]
    sim.step(Finished(kb, 130, "cancelled", "Cancelled"))
    assert sim.all(st.Done) == []  # the master task's end is awaited
    sim.step(st.MasterDone("m", False, "interrupted", "Cancelled"))
    done = sim.done()
    assert done.signum == signal.SIGINT and done.result.tasks["m"].status is Status.CANCELLED


def test_stale_and_duplicate_finished_events_change_nothing() -> None:
    sim = Sim(node("t"), retries=1, retry_delay=0.0)
    k1 = sim.launch("t")
    assert sim.step(Finished("no-such-key", 0)) == []
    sim.fail(k1)
    assert sim.fail(k1) == []  # the same attempt reported twice
    sim.tick(sim.now)
    k2 = sim.launch("t")
    assert k2 != k1
    assert sim.step(Finished(k1, 0)) == []  # the first attempt, late: not the current one
    assert sim.step(Started(k1, "pid 1")) == []
    assert sim.step(st.Confirmed(k2, True)) == []  # a confirmation of an attempt still running
    sim.succeed(k2)
    assert sim.done().result.tasks["t"].status is Status.SUCCEEDED
    assert sim.step(Finished(k2, 0)) == []  # after Done: nothing at all


def test_tasks_without_a_slot_are_announced_queued_with_the_attempt_that_will_launch() -> None:
    sim = Sim(node("a"), node("b"), node("c"), node("top", "a", "b", "c"), max_parallel=1)
    queued = sim.events("queued")
    assert sorted(e.task_id for e in queued) == ["b", "c"] and {e.attempt for e in queued} == {1}
    sim.succeed(sim.launch("a"), at=5.0)
    assert len(sim.all(st.Prepare)) == 2  # one slot: the next one only now
    key = sim.all(st.Prepare)[-1].key
    sim.step(st.Prepared(key))
    Sim._answered.add(key)
    task = sim.state.task_of(key)
    assert task is not None
    att = sim.state.records[task].attempts[0]
    assert att.queued_at == 0.0 and att.launched_at == 5.0
    assert sim.state.records["a"].attempts[0].queued_at is None


def test_confirming_frees_the_slot_but_keeps_the_run_going() -> None:
    sim = Sim(node("a"), node("b"), node("top", "a", "b"), max_parallel=1)
    ka = sim.launch("a")
    sim.step(Finished(ka, 0))  # the child is gone; complete() not yet answered
    assert [p.task_id for p in sim.new(st.Prepare)] == ["b"]
    sim.step(st.Confirmed(ka, False, "NoSuchKey"))
    assert sim.state.records["a"].attempts[0].failure_class == "OutputMissing"
    assert "NoSuchKey" in (sim.state.records["a"].reason or "")


def test_a_spec_that_cannot_be_written_fails_the_task_without_an_attempt() -> None:
    sim = Sim(node("t"), retries=3)
    (prep,) = sim.all(st.Prepare)
    sim.step(st.Prepared(prep.key, "PermissionError: s3://bucket"))
    rec = sim.done().result.tasks["t"]
    assert rec.status is Status.FAILED and rec.attempts == [] and "PermissionError" in (rec.reason or "")


def test_a_backend_error_on_launch_stops_launching() -> None:
    sim = Sim(node("a"), node("b"), node("c"), node("top", "a", "b", "c"), max_parallel=2)
    ka = sim.launch("a")
    sim.launch("b")
    sim.step(st.LaunchFailed(ka, "engine unreachable", backend_error=True))
    assert len(sim.new(st.Cancel)) == 1 and sim.new(st.Prepare) == []


def test_abort_after_a_loop_failure_cancels_everything_with_the_reason() -> None:
    sim = Sim(node("a"), node("top", "a"))
    sim.launch("a")
    result = sim.state.abort("kannon's scheduling loop failed: boom", 3.0)
    assert result.cancelled and {r.reason for r in result.tasks.values()} == {"kannon's scheduling loop failed: boom"}


def test_oom_growth_retries_with_more_memory_without_spending_retries_at_most_three_times() -> None:
    sim = Sim(node("t", memory="100Mi", oom_growth=1.5), retries=0, retry_delay=9.0)
    for memory in ("150Mi", "225Mi", "338Mi"):  # x 1.5 each time, rounded up to a whole Mi
        sim.fail(sim.launch("t"), "OOMKilled", code=137)
        assert len(sim.new(st.Prepare)) == 1, "retried at once, though retries=0"
        assert sim.state.plan.nodes["t"].hints.memory == memory  # type: ignore[union-attr]
    retried = sim.events("retried")
    assert "retrying with memory 150Mi = 100Mi x 1.5 (OOM growth step 1 of 3" in retried[0].reason
    assert retried[2].requested_resources == {"memory": "225Mi"}  # the failed attempt's own request
    sim.fail(sim.launch("t"), "OOMKilled", code=137)  # a fourth OOM: no growth left, and no retries
    rec = sim.done().result.tasks["t"]
    assert rec.status is Status.FAILED and len(rec.attempts) == 4


def test_oom_growth_stops_at_the_cap_and_then_spends_ordinary_retries() -> None:
    sim = Sim(node("t", memory="100Mi", oom_growth=2.0, oom_growth_cap="150Mi"), retries=1, retry_delay=0.0)
    sim.fail(sim.launch("t"), "OOMKilled", code=137)
    assert sim.state.plan.nodes["t"].hints.memory == "150Mi"  # type: ignore[union-attr]
    assert "(the cap)" in sim.events("retried")[0].reason
    sim.fail(sim.launch("t"), "OOMKilled", code=137)  # at the cap: an ordinary failure, the one retry is spent
    assert sim.state.plan.nodes["t"].hints.memory == "150Mi"  # type: ignore[union-attr]
    sim.fail(sim.launch("t"), "OOMKilled", code=137)
    assert len(sim.done().result.tasks["t"].attempts) == 3


def test_without_oom_growth_an_oom_is_an_ordinary_failure() -> None:
    sim = Sim(node("t", memory="100Mi"), retries=0)
    sim.fail(sim.launch("t"), "OOMKilled", code=137)
    assert sim.done().result.tasks["t"].status is Status.FAILED
    assert sim.state.plan.nodes["t"].hints.memory == "100Mi"  # type: ignore[union-attr]


def test_a_task_that_grew_on_oom_says_so_in_its_record_and_the_summary() -> None:
    from kannon.progress import summary_text

    sim = Sim(node("t", memory="200Mi", oom_growth=2.0), retries=0, retry_delay=0.0)
    sim.fail(sim.launch("t"), "OOMKilled", code=137)
    sim.succeed(sim.launch("t"))
    result = sim.done().result
    rec = result.tasks["t"]
    assert rec.status is Status.SUCCEEDED and rec.memory_grown == ("200Mi", "400Mi")
    assert "memory grown 200Mi -> 400Mi (OOM growth)" in summary_text(result)


def test_an_attempt_queued_by_admission_records_each_wait_and_why_in_events_result_and_summary() -> None:
    """Kueue holds a Job suspended (Queued True), admits it (Queued False), may preempt it back into the queue: the
    run says how long each task waited for admission and why (issue 11 §1)."""
    from kannon.backends.base import Queued
    from kannon.progress import summary_text

    sim = Sim(node("t"), max_parallel=1)
    key = sim.launch("t")
    sim.step(Queued(key, True), at=10.0)
    sim.step(Queued(key, True, "couldn't assign flavors to pod set main: insufficient quota for cpu"), at=11.0)
    sim.step(Queued(key, False), at=70.0)
    sim.step(Started(key, "pod p-1"), at=71.0)
    sim.step(Queued(key, True, "Preempted to accommodate a higher priority Workload"), at=80.0)  # preempted
    sim.step(Queued(key, False), at=100.0)
    sim.succeed(key, at=120.0)
    waits = sim.events("admission_wait")
    assert [e.reason for e in waits] == [None, "couldn't assign flavors to pod set main: insufficient quota for cpu",
                                         "Preempted to accommodate a higher priority Workload"]
    assert [e.waited for e in sim.events("admitted")] == [60.0, 20.0]
    att = sim.done().result.tasks["t"].attempts[0]
    assert att.admission_wait == 80.0
    assert att.admission_reason == "Preempted to accommodate a higher priority Workload"
    assert "waited 1m20s for admission (Preempted to accommodate a higher priority Workload)" in summary_text(
        sim.done().result)


def test_the_slot_counters_match_the_live_attempts_through_queue_retry_cancel_and_confirm() -> None:
    """The max_parallel / max_submitted counts are counters kept at every phase and admission change: they must
    equal the sums over the live attempts after each step (Sim checks that), and take effect as slots."""
    from kannon.backends.base import Queued

    sim = Sim(*(node(f"t{i}", retries=1) for i in range(5)), node("root", *(f"t{i}" for i in range(5))),
              max_parallel=2, max_submitted=3, retry_delay=1.0, keep_going=True)  # fmt: skip
    assert slot_counts(sim.state) == (2, 2)  # two preparing
    a, b = sim.launch("t0"), sim.launch("t1")
    assert slot_counts(sim.state) == (2, 2)
    sim.step(Queued(a, True), at=1.0)  # a's slot frees; the submission cap lets one more in
    assert slot_counts(sim.state) == (2, 3) and len(sim.new(st.Prepare)) == 1
    sim.step(Queued(a, True, "no quota"), at=1.5)  # the reason only: nothing changes
    assert slot_counts(sim.state) == (2, 3)
    c = sim.launch("t2")
    sim.step(Started(a, "pod a"), at=2.0)  # started while queued: admitted, holds a slot again
    assert slot_counts(sim.state) == (3, 3)
    sim.step(Queued(a, True), at=2.5)
    sim.step(Queued(a, False), at=3.0)
    assert slot_counts(sim.state) == (3, 3)
    sim.step(Queued(b, True), at=3.5)
    sim.fail(b, at=4.0)  # failed while queued: its retry waits for the timer
    assert slot_counts(sim.state) == (2, 2)
    sim.step(Finished(c, 0, at=4.5), at=4.5)  # confirming frees its slot: t3 takes it
    assert slot_counts(sim.state) == (2, 2) and [p.task_id for p in sim.new(st.Prepare)] == ["t3"]
    sim.step(st.Confirmed(c, True))
    t3 = sim.launch("t3")
    sim.tick(6.0)  # b's retry is due, but both slots are taken
    assert slot_counts(sim.state) == (2, 2) and not sim.new(st.Prepare)
    sim.step(Queued(t3, True), at=6.5)  # t3 waits for admission: the retry takes its slot, within max_submitted
    assert slot_counts(sim.state) == (2, 3) and [p.task_id for p in sim.new(st.Prepare)] == ["t1"]
    d = sim.new(st.Prepare)[0].key
    sim.step(st.Prepared(d, "cannot write"))  # a spec that cannot be written drops its attempt; t4 comes in
    assert slot_counts(sim.state) == (2, 3) and [p.task_id for p in sim.new(st.Prepare)] == ["t4"]
    sim.step(st.CancelRun("stop"), at=7.0)  # t4, still preparing, is dropped; a and t3 are cancelled
    assert slot_counts(sim.state) == (1, 2)
    sim.step(Finished(t3, None, "cancelled", "Cancelled", at=8.0), at=8.0)  # ended while queued
    assert slot_counts(sim.state) == (1, 1)
    sim.step(Finished(a, None, "cancelled", "Cancelled", at=9.0), at=9.0)
    assert slot_counts(sim.state) == (0, 0) and not sim.state.live and sim.done()
