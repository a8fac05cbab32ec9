"""The run's state machine, its core: the ready set, bullets' attempts and their phases, retries, deadlines,
cancellation and the result. ``RunState`` (kannon.scheduler.state) adds master tasks and dynamic dependencies;
read that module's docstring first."""

from __future__ import annotations

import dataclasses
import heapq
import itertools
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

from kannon import exitcodes, oomgrowth, usage
from kannon.backends.base import Finished, Queued, Started
from kannon.events import Event, EventKind
from kannon.hints import Hints
from kannon.plan import Node, Plan
from kannon.result import Attempt, BuildResult, Placement, Status, TaskRecord
from kannon.scheduler.graph import Readiness, failed_upstream
from kannon.scheduler.messages import (
    NOT_RETRYABLE,
    RECANCEL_DELAY,
    Action,
    Cancel,
    CancelFailed,
    CancelRun,
    Confirm,
    Confirmed,
    Done,
    Emit,
    Launch,
    LaunchFailed,
    Policy,
    Prepare,
    Prepared,
    RunMaster,
    StateEvent,
    Tick,
)

_Phase = Literal["preparing", "launched", "confirming", "planning", "gone"]


@dataclass
class _Live:
    task_id: str
    attempt: int
    # planning: its yield (no slot held); gone: dropped from RunCore.live. Changed only by RunCore._set_live.
    phase: _Phase
    deadline_hit: bool = False
    queued: bool = False  # waiting in the cluster's admission queue (Queued): no max_parallel slot
    queued_since: float | None = None  # when this stint in the admission queue began


@dataclass(order=True)
class _Timer:
    due: float
    seq: int
    what: Literal["retry", "deadline", "recancel"] = field(compare=False)
    ref: str = field(compare=False)  # task id (retry) or key


class RunCore:
    """What every task shares; see RunState for the whole machine."""

    def __init__(self, plan: Plan, policy: Policy, run_id: str, backend: str, invocation_id: str = "") -> None:
        self.plan, self.policy, self.run_id, self.backend = plan, policy, run_id, backend
        self.invocation_id = invocation_id
        self.records: dict[str, TaskRecord] = {}
        self._ready = Readiness()  # takes new tasks while the run goes on: a yield in run() adds some
        self._add_nodes(list(plan.nodes.values()), None)
        self.live: dict[str, _Live] = {}  # key -> attempt in flight
        # Of those, the ones holding a max_parallel slot (preparing or launched, not queued by admission) and the
        # submitted ones (preparing or launched): kept as they change (_set_live, _drop), not summed per step.
        self._used = 0
        self._in_flight = 0
        self._current: dict[str, str] = {}  # task id -> its live key
        self._waiting: deque[str] = deque()  # ready bullets without a slot yet
        self._master_fifo: deque[str] = deque()
        self.master_running: str | None = None  # handed to the master runner, MasterDone not yet seen
        self._fresh: list[str] = []  # made ready since the last dispatch: announced queued if they must wait
        self._queued_at: dict[str, float] = {}
        self._timers: list[_Timer] = []
        self._seq = itertools.count()
        self._infra_used: dict[str, int] = {}
        self._grown: dict[str, int] = {}  # OOM growth steps taken per task (kannon.oomgrowth)
        self.cancelled: CancelRun | None = None
        self.started_at: float | None = None
        self.done = False
        self._out: list[Action] = []

    # -- driving ---------------------------------------------------------------------------------------------
    def start(self, now: float) -> list[Action]:
        self.started_at = now
        self._emit("run_started", now, backend=self.backend, invocation_id=self.invocation_id or None)
        for node in self.plan.nodes.values():
            kind: EventKind = "skipped_complete" if node.placement is Placement.COMPLETE else "planned"
            self._emit(kind, now, node, deps=node.deps)
        return self._finish_step(now)

    def _add_nodes(self, nodes: list[Node], requested_by: str | None) -> None:
        for node in nodes:
            status = Status.COMPLETE if node.placement is Placement.COMPLETE else Status.PENDING
            self.records[node.task_id] = TaskRecord(node.task_id, node.family, node.params, node.placement, status,
                                                    node.deps, requested_by=requested_by)  # fmt: skip
            if node.placement is Placement.BULLET:
                self.records[node.task_id].requested_resources = usage.requested_resources(node.hints)
            if node.placement is Placement.COMPLETE:
                self._ready.finished.add(node.task_id)
        for node in nodes:
            if node.placement is not Placement.COMPLETE:
                self._ready.add(node.task_id, node.deps)

    def step(self, event: StateEvent, now: float) -> list[Action]:
        if self.done:
            return []
        handler = getattr(self, "_on_" + type(event).__name__)
        handler(event, now)
        return self._finish_step(now)

    def next_due(self) -> float | None:
        """When the caller must send a Tick at the latest (None: only events can move the run on)."""
        return self._timers[0].due if self._timers else None

    def task_of(self, key: str) -> str | None:
        live = self.live.get(key)
        return live.task_id if live is not None else None

    def abort(self, reason: str, now: float) -> BuildResult:
        """The result when the loop itself broke: everything unfinished is cancelled, with ``reason``."""
        self.done = True
        self.cancelled = CancelRun(reason, fatal=True)
        self._out.clear()
        return self._result(now)

    def _finish_step(self, now: float) -> list[Action]:
        self._fire_timers(now)
        self._dispatch(now)
        if not self._active():
            self.done = True
            self._out.append(Done(self._result(now), self.cancelled.signum if self.cancelled else None))
        out, self._out = self._out, []
        return out

    def _active(self) -> bool:
        # Dependents of a failed task never become ready, so the run is over when nothing is in flight, waits or
        # is scheduled — not when every task has run.
        return bool(self.live or self.master_running or self._waiting or self._master_fifo or self._timers)

    # -- dispatch ----------------------------------------------------------------------------------------------
    def _dispatch(self, now: float) -> None:
        if self.cancelled is not None:
            return
        for uid in self._ready.take():
            self._fresh.append(uid)
            if self.plan.nodes[uid].placement is Placement.MASTER:
                self._master_fifo.append(uid)
            else:
                self._waiting.append(uid)
        if self.master_running is None and self._master_fifo:
            self.master_running = self._master_fifo.popleft()
            self._out.append(RunMaster(self.master_running))
        if self._waiting:  # counted once per step, not once per launch: at 500 in flight that was O(n^2) a burst
            used, submitted = self._slots_used(), self._submitted()
            cap = self.policy.max_submitted or self.policy.max_parallel
            while self._waiting and used < self.policy.max_parallel and submitted < cap:
                used, submitted = used + 1, submitted + 1  # the Prepare below takes a slot, and counts as submitted
                uid = self._waiting.popleft()
                attempt = len(self.records[uid].attempts) + 1
                key = f"{uid}-{attempt}"
                self.live[key] = _Live(uid, attempt, "preparing")
                self._used, self._in_flight = self._used + 1, self._in_flight + 1
                self._current[uid] = key
                self._out.append(Prepare(key, uid))
        # Ready tasks that could not start at once (parallelism cap, or another master task running) say so, so
        # the wait for a slot is visible (report, progress) and not mistaken for scheduling or start-up time.
        for uid in self._fresh:
            rec = self.records[uid]
            if rec.status is Status.PENDING and uid not in self._current and uid != self.master_running:
                self._queued_at[uid] = now
                self._emit("queued", now, self.plan.nodes[uid], attempt=len(rec.attempts) + 1)
        self._fresh.clear()

    def _slots_used(self) -> int:
        return self._used

    def _submitted(self) -> int:
        return self._in_flight

    @staticmethod
    def _counts(live: _Live) -> tuple[int, int]:
        """What one live attempt adds to (_used, _in_flight)."""
        if live.phase not in ("preparing", "launched"):
            return 0, 0
        return (0 if live.queued else 1), 1

    def _set_live(self, live: _Live, phase: _Phase | None = None, queued: bool | None = None) -> None:
        """Change a live attempt's phase or admission state: the only way to, so the counts stay exact."""
        used, in_flight = self._counts(live)
        if phase is not None:
            live.phase = phase
        if queued is not None:
            live.queued = queued
        now_used, now_in_flight = self._counts(live)
        self._used += now_used - used
        self._in_flight += now_in_flight - in_flight

    def _on_Queued(self, ev: Queued, now: float) -> None:
        live = self.live.get(ev.key)
        if live is None or live.phase != "launched":
            return
        node, att = self.plan.nodes[live.task_id], self.records[live.task_id].attempts[-1]
        if ev.queued:
            fresh = not live.queued
            if fresh:
                self._set_live(live, queued=True)
                live.queued_since = now
            if fresh or (ev.reason and ev.reason != att.admission_reason):  # the reason often comes a moment later
                self._emit("admission_wait", now, node, attempt=att.number, reason=ev.reason or None)
            att.admission_reason = ev.reason or att.admission_reason
        elif live.queued:
            waited = self._leave_queue(live, att, now)
            self._emit("admitted", now, node, attempt=att.number, waited=round(waited, 3))

    def _leave_queue(self, live: _Live, att: Attempt, now: float) -> float:
        waited = max(0.0, now - (live.queued_since if live.queued_since is not None else now))
        att.admission_wait += waited
        self._set_live(live, queued=False)
        live.queued_since = None
        return waited

    # -- bullets -------------------------------------------------------------------------------------------------
    def _on_Prepared(self, ev: Prepared, now: float) -> None:
        live = self.live.get(ev.key)
        if live is None or live.phase != "preparing":
            return  # cancelled meanwhile
        uid = live.task_id
        node = self.plan.nodes[uid]
        if ev.error is not None:
            self._drop(ev.key)
            self._final_failure(uid, f"could not write the hand-off spec: {ev.error}", "BadSpec", now)
            return
        self._set_live(live, phase="launched")
        rec = self.records[uid]
        rec.status = Status.RUNNING
        rec.attempts.append(Attempt(live.attempt, now, queued_at=self._queued_at.pop(uid, None)))
        self._emit("launched", now, node, attempt=live.attempt)
        self._out.append(Launch(ev.key, uid, live.attempt))
        timeout = (node.hints or Hints()).timeout
        if timeout:
            self._timer(now + timeout, "deadline", ev.key)

    def _on_LaunchFailed(self, ev: LaunchFailed, now: float) -> None:
        live = self.live.get(ev.key)
        if live is None or live.phase != "launched":
            return
        self._drop(ev.key)
        self._attempt_failed(live.task_id, Finished(ev.key, None, ev.reason, "LaunchFailed", at=now), now)
        if ev.backend_error:
            self._cancel_run(CancelRun(f"backend error: {ev.reason}"), now)

    def _on_Started(self, ev: Started, now: float) -> None:
        live = self.live.get(ev.key)
        if live is None or live.phase != "launched":
            return
        self._set_live(live, queued=False)
        att = self.records[live.task_id].attempts[-1]
        att.started_at, att.where = ev.at, ev.where
        self._emit("started", now, self.plan.nodes[live.task_id], attempt=att.number, where=ev.where)

    def _on_Finished(self, ev: Finished, now: float) -> None:
        live = self.live.get(ev.key)
        if live is None or live.phase != "launched":
            return  # stale: an attempt already accounted for
        uid = live.task_id
        if live.deadline_hit and self.cancelled is None:
            timeout = (self.plan.nodes[uid].hints or Hints()).timeout
            ev = dataclasses.replace(ev, reason=f"DeadlineExceeded: ran longer than its timeout of {timeout} s; "
                                     "raise `timeout` in its kannon_hints", failure_class="DeadlineExceeded")
        att = self.records[uid].attempts[-1]
        if live.queued:  # ended (cancelled, failed) while still in the admission queue
            self._leave_queue(live, att, now)
        att.finished_at, att.exit_code, att.where = ev.at, ev.exit_code, ev.where or att.where
        att.log_tail = ev.log_tail
        att.usage = usage.attempt_usage(ev, self.plan.nodes[uid].hints, att.duration)
        self._drop_timers(ev.key)
        if ev.exit_code == exitcodes.REQUESTED and self.cancelled is None:
            self._bullet_yielded(ev, live, now)
            return
        if ev.ok:
            self._set_live(live, phase="confirming")  # the slot is free: the child is gone
            self._out.append(Confirm(ev.key, uid))
            return
        self._drop(ev.key)
        self._attempt_failed(uid, ev, now)

    def _bullet_yielded(self, ev: Finished, live: _Live, now: float) -> None:
        raise NotImplementedError  # RunState (kannon.scheduler.state): dynamic dependencies of a bullet

    def _on_Confirmed(self, ev: Confirmed, now: float) -> None:
        live = self.live.get(ev.key)
        if live is None or live.phase != "confirming":
            return
        self._drop(ev.key)
        if ev.complete:
            self._succeeded(live.task_id, now)
            return
        reason = (f"the child exited 0 but the output is missing ({ev.error or 'complete() is False'}); a local "
                  "workspace must be shared with the children (same path), object storage reachable from both")
        self._attempt_failed(live.task_id, Finished(ev.key, 0, reason, "OutputMissing", at=now), now)

    def _on_CancelFailed(self, ev: CancelFailed, now: float) -> None:
        live = self.live.get(ev.key)
        if live is not None and live.phase == "launched":
            self._timer(now + RECANCEL_DELAY, "recancel", ev.key)

    # -- outcomes ----------------------------------------------------------------------------------------------
    def _succeeded(self, uid: str, now: float) -> None:
        rec = self.records[uid]
        rec.status = Status.SUCCEEDED
        att = rec.attempts[-1]
        self._emit("succeeded", now, self.plan.nodes[uid], attempt=att.number, where=att.where)
        self._ready.done(uid)

    def _attempt_failed(self, uid: str, fin: Finished, now: float) -> None:
        node = self.plan.nodes[uid]
        rec = self.records[uid]
        att = rec.attempts[-1]
        att.reason, att.failure_class, att.infra = fin.reason, fin.failure_class, fin.infra
        if fin.log_tail:
            att.log_tail = fin.log_tail
        if att.finished_at is None:
            att.finished_at = fin.at
        if self.cancelled is not None or fin.failure_class == "Cancelled":
            rec.status = Status.CANCELLED
            self._emit("cancelled", now, node, attempt=att.number, reason=fin.reason or "cancelled", where=att.where)
            return
        hints = node.hints or Hints()
        allowed = hints.retries if hints.retries is not None else self.policy.retries
        grown = self._grown.get(uid, 0)
        # a stop at a yield is free, and so is growth on OOM
        spent = sum(1 for a in rec.attempts if not a.infra and not a.requested) - grown
        delay = None
        growth = oomgrowth.grow(hints, grown) if fin.failure_class == "OOMKilled" else None
        if growth is not None:  # the next attempt gets the grown memory hint (kannon.oomgrowth)
            rec.memory_grown = (rec.memory_grown or (hints.memory or "",)) + (growth[0].memory or "",)
            node.hints, note = growth
            self._grown[uid] = grown + 1
            fin = dataclasses.replace(fin, reason=f"{fin.reason or 'OOMKilled'}; {note}")
            att.reason, delay = fin.reason, 0.0
        elif fin.infra and self._infra_used.get(uid, 0) < self.policy.infra_retries:
            self._infra_used[uid] = self._infra_used.get(uid, 0) + 1
            delay = 0.0
        elif fin.infra:  # the free infrastructure budget is spent: this attempt counts like any other
            att.infra = False
            spent += 1
        if delay is None and spent <= allowed and fin.failure_class not in NOT_RETRYABLE:
            delay = self.policy.backoff(spent)
        if delay is None:
            self._final_failure(uid, fin.reason or "failed", fin.failure_class, now)
            return
        rec.status = Status.PENDING
        self._emit("retried", now, node, attempt=att.number, reason=fin.reason, failure_class=fin.failure_class,
                   exit_code=fin.exit_code, log_tail=fin.log_tail, where=att.where)  # fmt: skip
        if growth is not None:  # the next attempt's events say what it asked for
            rec.requested_resources = usage.requested_resources(node.hints)
        self._timer(now + delay, "retry", uid)

    def _final_failure(self, uid: str, reason: str, failure_class: str | None, now: float) -> None:
        node = self.plan.nodes[uid]
        rec = self.records[uid]
        rec.status, rec.reason = Status.FAILED, reason
        att = rec.last
        self._emit("failed", now, node, attempt=att.number if att else None, reason=reason,
                   failure_class=failure_class, exit_code=att.exit_code if att else None,
                   log_tail=att.log_tail if att else (), where=att.where if att else None)  # fmt: skip
        if not self.policy.keep_going:
            self._cancel_run(CancelRun(f"{node.family} failed and keep_going is off (fail fast)"), now)

    # -- cancellation ------------------------------------------------------------------------------------------
    def _on_CancelRun(self, ev: CancelRun, now: float) -> None:
        self._cancel_run(ev, now)

    def _cancel_run(self, ev: CancelRun, now: float) -> None:
        if self.cancelled is not None:
            if (ev.signum is not None and self.cancelled.signum is None) or (ev.fatal and not self.cancelled.fatal):
                self.cancelled = ev  # a signal or a fatal error outranks a fail-fast cancel for the outcome
            return
        self.cancelled = ev
        self._timers.clear()
        self._waiting.clear()
        self._master_fifo.clear()
        for key, live in list(self.live.items()):
            if live.phase in ("preparing", "planning"):  # nothing runs for it (yet, or any more)
                self._drop(key)
            elif live.phase == "launched":
                self._out.append(Cancel(key, ev.reason))
        # a running master task is interrupted by the signal itself (only user code may be); its MasterDone follows

    # -- timers ------------------------------------------------------------------------------------------------
    def _on_Tick(self, ev: Tick, now: float) -> None:
        pass  # _finish_step fires what is due

    def _timer(self, due: float, what: Literal["retry", "deadline", "recancel"], ref: str) -> None:
        heapq.heappush(self._timers, _Timer(due, next(self._seq), what, ref))

    def _drop_timers(self, key: str) -> None:
        self._timers = [t for t in self._timers if t.ref != key]
        heapq.heapify(self._timers)

    def _fire_timers(self, now: float) -> None:
        while self._timers and self._timers[0].due <= now:
            t = heapq.heappop(self._timers)
            if t.what == "retry":
                if self.cancelled is None:
                    self._waiting.appendleft(t.ref)
                    self._fresh.append(t.ref)
                continue
            live = self.live.get(t.ref)
            if live is None or live.phase != "launched":
                continue
            if t.what == "deadline":
                live.deadline_hit = True
            timeout = (self.plan.nodes[live.task_id].hints or Hints()).timeout
            self._out.append(Cancel(t.ref, f"ran longer than its timeout of {timeout} s"))

    def _drop(self, key: str) -> None:
        live = self.live.pop(key)
        self._set_live(live, phase="gone")  # its slot and submission, if it held them
        if self._current.get(live.task_id) == key:
            del self._current[live.task_id]
        self._drop_timers(key)

    # -- events and result -------------------------------------------------------------------------------------
    def _emit(self, kind: EventKind, now: float, node: Node | None = None, **fields: Any) -> None:
        if node is not None:
            fields.setdefault("task_id", node.task_id)
            fields.setdefault("family", node.family)
            fields.setdefault("params", node.params)
            fields.setdefault("placement", node.placement.value)
            if node.placement is not Placement.COMPLETE:
                fields.setdefault("backend", self.backend if node.placement is Placement.BULLET else "master")
            if node.placement is Placement.BULLET:
                rec = self.records[node.task_id]
                fields.update(usage.event_fields(kind, rec.last.usage if rec.last else None, rec.requested_resources))
        self._out.append(Emit(Event(kind=kind, run_id=self.run_id, time=now, **fields)))

    def _result(self, now: float) -> BuildResult:
        failed = {uid for uid, r in self.records.items() if r.status is Status.FAILED}
        for uid, rec in self.records.items():  # everything that never ran: downstream of a failure, or cancelled
            if rec.status not in (Status.PENDING, Status.RUNNING):
                continue
            if self.cancelled is not None:
                rec.status, rec.reason = Status.CANCELLED, self.cancelled.reason
            else:
                rec.status = Status.UPSTREAM_FAILED
                blockers = failed_upstream(self.records, uid, failed)
                rec.reason = "upstream failed: " + ", ".join(self.records[b].family + " " + b[:8]
                                                             for b in blockers[:3])  # fmt: skip
            kind: EventKind = "cancelled" if rec.status is Status.CANCELLED else "upstream_failed"
            self._emit(kind, now, self.plan.nodes[uid], reason=rec.reason)
        if self.cancelled is not None and self.cancelled.fatal:
            for rec in self.records.values():
                if rec.status is Status.CANCELLED:
                    rec.reason = self.cancelled.reason
        cancelled = self.cancelled is not None and (self.cancelled.signum is not None or self.cancelled.fatal)
        return BuildResult(run_id=self.run_id, backend=self.backend, tasks=self.records, root_id=self.plan.root_id,
                           started_at=self.started_at or now, finished_at=now, cancelled=cancelled)  # fmt: skip
