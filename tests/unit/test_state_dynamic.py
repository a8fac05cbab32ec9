"""Dynamic dependencies in the state machine alone (issue 13): ``MasterRequested`` in, actions out — no threads.

luigi's contract (worker.TaskProcess._run_get_new_deps): a task whose run() yields incomplete tasks goes back to
pending, the yielded tasks are scheduled, and the task runs again once they are all complete."""

from __future__ import annotations

import signal

import pytest

from kannon import exitcodes
from kannon.backends.base import Finished
from kannon.childresult import ChildResult, Requested
from kannon.plan import Node, Plan
from kannon.result import Placement, Status
from kannon.scheduler import state as st
from tests.unit.test_state import Sim, node


@pytest.fixture(autouse=True)
def _answered() -> None:
    Sim._answered = set()


def fragment(*nodes: Node) -> Plan:
    return Plan(root_id=nodes[0].task_id, nodes={n.task_id: n for n in nodes})


def complete(name: str) -> Node:
    return Node(name, None, name.rstrip("0123456789"), f"name={name}", Placement.COMPLETE)  # type: ignore[arg-type]


def request(sim: Sim, task: str, requested: tuple[str, ...], *nodes: Node) -> list[st.Action]:
    return sim.step(st.MasterRequested(task, requested, fragment(*nodes)))


def test_yielded_bullets_are_launched_and_the_yielder_runs_again_once_all_are_complete() -> None:
    sim = Sim(node("y", master=True))
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("b1", "b2"), node("b1"), node("b2"))
    assert [p.task_id for p in sim.new(st.Prepare)] == ["b1", "b2"]  # to the executor, not the master
    assert sim.state.records["y"].status is Status.PENDING and sim.state.master_running is None
    assert [(e.task_id, e.requested_by) for e in sim.events("planned") if e.requested_by] == [("b1", "y"), ("b2", "y")]
    assert [(e.task_id, e.requested_by) for e in sim.events("requested")] == [("b1", "y"), ("b2", "y")]
    sim.succeed(sim.launch("b1"))
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["y"]  # still waits for b2
    sim.succeed(sim.launch("b2"))
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["y", "y"]  # again, from the start
    sim.step(st.MasterStarted("y"))
    sim.step(st.MasterDone("y", True))
    result = sim.done().result
    assert result.ok
    y = result.tasks["y"]
    assert [a.number for a in y.attempts] == [1, 2] and y.attempts[0].requested == ("b1", "b2")
    assert y.requested == ("b1", "b2") and result.tasks["b1"].requested_by == "y"
    assert [e.attempt for e in sim.events("launched", "y")] == [1, 2]


def test_a_yielded_task_already_complete_is_not_launched_and_the_yielder_is_ready_at_once() -> None:
    sim = Sim(node("y", master=True))
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("done1", "b1"), complete("done1"), node("b1"))
    assert [p.task_id for p in sim.new(st.Prepare)] == ["b1"]
    assert [e.requested_by for e in sim.events("skipped_complete", "done1")] == ["y"]
    sim.succeed(sim.launch("b1"))
    sim.step(st.MasterStarted("y"))
    sim.step(st.MasterDone("y", True))
    assert sim.done().result.ok and [p.task_id for p in sim.all(st.Prepare)] == ["b1"]


def test_a_yielded_task_the_run_already_knows_is_not_planned_twice() -> None:
    sim = Sim(node("b0"), node("y", master=True))
    k0 = sim.launch("b0")
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("b0",), node("b0"))  # running already: y waits for that attempt
    assert sim.new(st.Prepare) == [] and sim.events("planned", "b0")[-1].requested_by is None
    sim.succeed(k0)
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["y", "y"]


def test_the_yielded_tasks_own_requirements_are_scheduled_first() -> None:
    sim = Sim(node("y", master=True))
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("top",), node("top", "leaf"), node("leaf"))
    assert [p.task_id for p in sim.new(st.Prepare)] == ["leaf"]
    sim.succeed(sim.launch("leaf"))
    sim.succeed(sim.launch("top"))
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["y", "y"]


def test_a_yielded_task_that_fails_marks_the_yielder_upstream_failed() -> None:
    sim = Sim(node("y", master=True), node("top", "y"))
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("b1",), node("b1"))
    sim.fail(sim.launch("b1"))
    result = sim.done().result
    assert result.tasks["b1"].status is Status.FAILED
    assert result.tasks["y"].status is Status.UPSTREAM_FAILED and "b1" in (result.tasks["y"].reason or "")
    assert result.tasks["top"].status is Status.UPSTREAM_FAILED
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["y"]  # never run again


def test_a_yielded_bullet_is_retried_and_the_yielder_runs_again_after_the_retry() -> None:
    sim = Sim(node("y", master=True), retries=1, retry_delay=0.0)
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("b1",), node("b1"))
    sim.fail(sim.launch("b1"))
    assert len(sim.events("retried", "b1")) == 1 and [r.task_id for r in sim.all(st.RunMaster)] == ["y"]
    sim.succeed(sim.launch("b1"))
    sim.step(st.MasterStarted("y"))
    sim.step(st.MasterDone("y", True))
    assert sim.done().result.ok


def test_other_branches_go_on_while_yielded_bullets_run() -> None:
    sim = Sim(node("y", master=True), node("m", master=True), node("top", "y", "m", master=True))
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("b1",), node("b1"))
    key = sim.launch("b1")
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["y", "m"]  # the master is free for the next task
    sim.step(st.MasterStarted("m"))
    sim.step(st.MasterDone("m", True))
    sim.succeed(key)
    assert [r.task_id for r in sim.all(st.RunMaster)] == ["y", "m", "y"]


def test_more_yield_stops_than_max_dynamic_runs_fail_the_task() -> None:
    sim = Sim(node("y", master=True), max_dynamic_runs=1)
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("b1",), node("b1"))
    sim.succeed(sim.launch("b1"))
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("b2",), node("b2"))  # the second stop: over the bound
    result = sim.done().result
    assert result.tasks["y"].status is Status.FAILED and "max_dynamic_runs=1" in (result.tasks["y"].reason or "")
    assert sim.events("failed", "y")[0].failure_class == "DynamicLimit"
    assert [p.task_id for p in sim.all(st.Prepare)] == ["b1"]


def test_a_signal_while_yielded_bullets_run_cancels_them_and_the_yielder() -> None:
    sim = Sim(node("y", master=True))
    sim.step(st.MasterStarted("y"))
    request(sim, "y", ("b1", "b2"), node("b1"), node("b2"))
    k1, k2 = sim.launch("b1"), sim.launch("b2")
    sim.step(st.CancelRun("received SIGTERM", signal.SIGTERM))
    assert sorted(c.key for c in sim.new(st.Cancel)) == sorted([k1, k2])
    sim.step(Finished(k1, 143, "cancelled", "Cancelled"))
    sim.step(Finished(k2, 143, "cancelled", "Cancelled"))
    done = sim.done()
    assert done.signum == signal.SIGTERM
    assert {t: r.status for t, r in done.result.tasks.items()} == {
        "y": Status.CANCELLED, "b1": Status.CANCELLED, "b2": Status.CANCELLED}  # fmt: skip


def test_a_request_from_a_task_that_is_not_running_is_dropped() -> None:
    sim = Sim(node("y", master=True), node("b0"))
    assert request(sim, "b0", ("x",), node("x")) == [] or sim.new(st.Prepare) == []
    assert "x" not in sim.state.records


def yielded(key: str, *requested: str, truncated: bool = False) -> Finished:
    record = ChildResult(task=key.rsplit("-", 1)[0], spec_sha256="0" * 64, attempt=int(key.rsplit("-", 1)[1]),
                         outcome="Requested", exit_code=exitcodes.REQUESTED,
                         requested=tuple(Requested(r, "1" * 64) for r in requested), truncated=truncated)  # fmt: skip
    return Finished(key, exitcodes.REQUESTED, "yielded", "Requested", result=record)


def test_a_bullet_that_yields_is_planned_then_launched_again_without_spending_a_retry() -> None:
    sim = Sim(node("by"), node("other"), retries=0, max_parallel=1)
    k1 = sim.launch("by")
    sim.step(yielded(k1, "b1"))
    (plan_req,) = sim.new(st.PlanRequested)
    assert (plan_req.key, plan_req.task_id, plan_req.attempt, plan_req.requested) == (k1, "by", 1, (("b1", "1" * 64),))
    assert [p.task_id for p in sim.new(st.Prepare)] == ["other"]  # its slot is free while the master plans
    sim.step(st.BulletRequested(k1, ("b1",), fragment(node("b1"))))
    assert sim.events("requested", "b1")[0].requested_by == "by"
    sim.succeed(sim.launch("other"))
    sim.succeed(sim.launch("b1"))
    k2 = sim.launch("by")
    assert k2 == "by-2"  # a new attempt; with retries=0 a failure would have ended the task
    sim.succeed(k2)
    result = sim.done().result
    assert result.ok and result.tasks["by"].attempts[0].requested == ("b1",)
    assert sim.events("retried") == [] and sim.events("failed") == []


def test_a_bullet_yield_the_master_cannot_plan_fails_the_bullet() -> None:
    sim = Sim(node("by"))
    k1 = sim.launch("by")
    sim.step(yielded(k1, "b1"))
    sim.step(st.BulletRequested(k1, ("b1",), None, "its run() yielded tasks that cannot run: InMemoryTarget"))
    rec = sim.done().result.tasks["by"]
    assert rec.status is Status.FAILED and "InMemoryTarget" in (rec.reason or "")


def test_a_record_cut_short_is_a_failure_not_a_partial_plan() -> None:
    sim = Sim(node("by"))
    sim.step(yielded(sim.launch("by"), "b1", truncated=True))
    assert sim.all(st.PlanRequested) == []
    assert sim.done().result.tasks["by"].status is Status.FAILED


def test_a_cancel_while_the_master_plans_a_bullet_yield_cancels_it() -> None:
    sim = Sim(node("by"))
    k1 = sim.launch("by")
    sim.step(yielded(k1, "b1"))
    sim.step(st.CancelRun("received SIGTERM", signal.SIGTERM))
    sim.step(st.BulletRequested(k1, ("b1",), fragment(node("b1"))))  # arrives late: dropped
    done = sim.done()
    assert done.result.tasks["by"].status is Status.CANCELLED and "b1" not in done.result.tasks
