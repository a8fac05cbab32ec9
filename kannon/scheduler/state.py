"""The run as a pure state machine: events in, actions out.

No I/O, no threads, no clock of its own: time comes in with every :meth:`RunState.step` call, and every effect
on the world (launch a child, cancel one, run a master task, call observers, confirm an output) is an action the
caller carries out and answers with another event. So every scheduling decision — ready set, parallelism,
retries and their backoff, the infrastructure budget, deadlines, fail-fast, cancellation, the final result — can
be tested by feeding events, without threads or an executor.

An attempt of a bullet goes through three phases, each ended by one event:
``preparing`` (the spec is being written: ``Prepared``) -> ``launched`` (the child runs: ``Finished``) ->
``confirming`` (the master checks ``complete()``: ``Confirmed``). A master task is ``RunMaster`` ->
``MasterStarted`` -> ``MasterDone``, or ``MasterRequested`` when its run() yielded incomplete tasks: they join the
plan, and the task is pending again until they are complete (dynamic dependencies, see kannon.dynamic). A bullet
whose child stopped at such a yield (exit 10) goes ``planning`` (``PlanRequested`` -> ``BulletRequested``) instead of
``confirming``.

The machine is two classes: ``RunCore`` (kannon.scheduler.core: ready set, bullets, retries, timers, cancellation,
result) and ``RunState`` here, which adds master tasks and dynamic dependencies.
"""

from __future__ import annotations

from kannon.backends.base import Finished
from kannon.events import EventKind
from kannon.plan import Plan
from kannon.result import Attempt, Placement, Status
from kannon.scheduler.core import RunCore, _Live
from kannon.scheduler.messages import (
    NOT_RETRYABLE,
    RECANCEL_DELAY,
    Action,
    BulletRequested,
    Cancel,
    CancelFailed,
    CancelRun,
    Confirm,
    Confirmed,
    Done,
    Emit,
    Launch,
    LaunchFailed,
    MasterDone,
    MasterRequested,
    MasterStarted,
    PlanRequested,
    Policy,
    Prepare,
    Prepared,
    RunMaster,
    StateEvent,
    Tick,
)


class RunState(RunCore):
    """One build's scheduling state. Call :meth:`start` once, then :meth:`step` per event."""

    # -- master tasks ------------------------------------------------------------------------------------------
    def _on_MasterStarted(self, ev: MasterStarted, now: float) -> None:
        rec = self.records[ev.task_id]
        if ev.task_id != self.master_running or (rec.attempts and rec.attempts[-1].finished_at is None):
            return
        rec.status = Status.RUNNING
        number = len(rec.attempts) + 1  # a run again after a yield is a new attempt (it spends no retries)
        rec.attempts.append(Attempt(number, now, started_at=now, where="master",
                                    queued_at=self._queued_at.pop(ev.task_id, None)))  # fmt: skip
        node = self.plan.nodes[ev.task_id]
        self._emit("launched", now, node, attempt=number, where="master")
        self._emit("started", now, node, attempt=number, where="master")

    def _master_attempt(self, uid: str, now: float) -> Attempt:
        rec = self.records[uid]
        if not rec.attempts or rec.attempts[-1].finished_at is not None:  # stopped before it started
            rec.attempts.append(Attempt(len(rec.attempts) + 1, now, where="master",
                                        queued_at=self._queued_at.pop(uid, None)))  # fmt: skip
        att = rec.attempts[-1]
        att.finished_at = now
        return att

    def _on_MasterDone(self, ev: MasterDone, now: float) -> None:
        if ev.task_id != self.master_running:
            return
        self.master_running = None
        rec = self.records[ev.task_id]
        att = self._master_attempt(ev.task_id, now)
        att.reason, att.failure_class, att.log_tail = ev.reason, ev.failure_class, ev.log_tail
        if ev.ok:
            self._succeeded(ev.task_id, now)
        elif ev.failure_class == "Cancelled" or self.cancelled is not None:
            rec.status = Status.CANCELLED
            self._emit("cancelled", now, self.plan.nodes[ev.task_id], reason=ev.reason, attempt=att.number)
        else:
            self._final_failure(ev.task_id, ev.reason or "failed", ev.failure_class, now)

    def _on_MasterRequested(self, ev: MasterRequested, now: float) -> None:
        """luigi's contract: the yielding task goes back to pending; what it asked for is scheduled (new tasks
        planned like the static DAG, known ones as they are); once all of it is complete the task runs again."""
        uid = ev.task_id
        if uid != self.master_running:
            return
        self.master_running = None
        self._requested(uid, self._master_attempt(uid, now), ev.requested, ev.plan, now)

    def _requested(self, uid: str, att: Attempt, requested: tuple[str, ...], plan: Plan, now: float) -> None:
        rec = self.records[uid]
        att.requested = requested
        att.reason = f"run() yielded {len(requested)} task(s) not all complete; it runs again once they are"
        runs = sum(1 for a in rec.attempts if a.requested)
        if runs > self.policy.max_dynamic_runs:
            self._final_failure(uid, f"its run() stopped at a yield of incomplete tasks {runs} times, more than "
                                f"max_dynamic_runs={self.policy.max_dynamic_runs}; raise it (Kannon(max_dynamic_runs="
                                "...), kannon build --max-dynamic-runs) if the pipeline really yields that often",
                                "DynamicLimit", now)  # fmt: skip
            return
        self._add_nodes([n for n in plan.nodes.values() if n.task_id not in self.records], uid)
        for node in plan.nodes.values():
            if node.task_id not in self.plan.nodes:
                self.plan.nodes[node.task_id] = node
                kind: EventKind = "skipped_complete" if node.placement is Placement.COMPLETE else "planned"
                self._emit(kind, now, node, deps=node.deps, requested_by=uid)
        rec.requested = tuple(dict.fromkeys((*rec.requested, *requested)))
        for r in requested:
            self._emit("requested", now, self.plan.nodes[r], requested_by=uid)
        if self.cancelled is not None:
            rec.status = Status.CANCELLED
            self._emit("cancelled", now, self.plan.nodes[uid], reason=self.cancelled.reason, attempt=att.number)
            return
        rec.status = Status.PENDING
        self._ready.add(uid, requested)

    def _bullet_yielded(self, ev: Finished, live: _Live, now: float) -> None:
        """The child stopped at a yield of incomplete tasks (dynamic dependencies) and listed them in its record."""
        record = ev.result
        if record is None or not record.requested or record.truncated:
            self._drop(ev.key)
            self._final_failure(live.task_id, "its run() yielded incomplete tasks, but the child's result record does "
                                "not list them all (missing, or cut to fit 4 KiB): yield fewer tasks at once",
                                "DynamicRequest", now)  # fmt: skip
            return
        self._set_live(live, phase="planning")  # the slot is free: the child is gone
        wanted = tuple((r.task, r.spec_sha256) for r in record.requested)
        self._out.append(PlanRequested(ev.key, live.task_id, live.attempt, wanted))

    def _on_BulletRequested(self, ev: BulletRequested, now: float) -> None:
        live = self.live.get(ev.key)
        if live is None or live.phase != "planning":
            return
        self._drop(ev.key)
        if ev.plan is None:
            self._final_failure(live.task_id, ev.error or "its yielded tasks could not be planned", "PlanError", now)
            return
        self._requested(live.task_id, self.records[live.task_id].attempts[-1], ev.requested, ev.plan, now)


__all__ = [  # the messages are re-exported: callers and tests speak to the machine through this module
    "NOT_RETRYABLE",
    "RECANCEL_DELAY",
    "Action",
    "BulletRequested",
    "Cancel",
    "CancelFailed",
    "CancelRun",
    "Confirm",
    "Confirmed",
    "Done",
    "Emit",
    "Launch",
    "LaunchFailed",
    "MasterDone",
    "MasterRequested",
    "MasterStarted",
    "PlanRequested",
    "Policy",
    "Prepare",
    "Prepared",
    "RunMaster",
    "RunState",
    "StateEvent",
    "Tick",
]  # fmt: skip
