"""The thin loop: feeds :class:`RunState` events from one queue (executor reports, master results, signals, the
I/O pool's answers) and a timer, and carries its actions out.

It runs on its own thread ("kannon-loop"). What may block goes elsewhere: ``complete()`` checks and spec writes to
the I/O pool, observer hooks to their ordered lane, master tasks to the master runner. What stays here is quick or
urgent: ``executor.launch`` and ``executor.cancel``. So a slow object store or observer never delays a cancel.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import time
from functools import partial
from typing import Any

from kannon import dynamic, handoff, logtail, speccrypt, storage
from kannon.backends import base
from kannon.events import Event
from kannon.hints import Hints
from kannon.plan import Plan, PlanError
from kannon.plugins import plugin_manager
from kannon.scheduler import ids, state
from kannon.scheduler.env import ChildEnv
from kannon.scheduler.io import Pool
from kannon.scheduler.master import MasterRunner, Planner
from kannon.scheduler.specs import Specs

log = logging.getLogger("kannon")

IO_WORKERS = 4


class Loop:
    def __init__(self, machine: state.RunState, executor: base.Executor, plan: Plan, run: base.RunInfo,
                 specs: Specs, child_env: ChildEnv, print_logs: bool = False,
                 planner: Planner | None = None) -> None:  # fmt: skip
        self.machine, self.executor, self.plan, self.run = machine, executor, plan, run
        self.print_logs = print_logs  # Kannon.follow_logs: child output reaches kannon_task_log observers
        self.specs, self.child_env = specs, child_env
        self._masked = logtail.maskable(run.secrets)  # masked in children's output before anyone sees it
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()  # put() is reentrant: signal handlers use it
        self.master = MasterRunner(self.post, planner)
        self.planner = planner
        self.io = Pool(IO_WORKERS, "kannon-io")
        self.observers = Pool(1, "kannon-observers")  # one lane: observers see events in order
        self.pm = plugin_manager()
        self.done: state.Done | None = None

    def post(self, msg: object) -> None:
        """Thread-safe, never blocks: the executor's report callback, the master runner's and the pool's answers."""
        self._q.put(msg)

    def notify(self, hook: str, **kwargs: Any) -> None:
        self.observers.submit(partial(self._call_hook, hook, kwargs))

    # -- loop thread -------------------------------------------------------------------------------------------
    def run_guarded(self) -> None:
        try:
            self._run()
        except BaseException as e:  # never leave the main thread waiting, nor children running
            log.exception("kannon's scheduling loop failed")
            reason = f"kannon's scheduling loop failed: {type(e).__name__}: {e}"
            for key in self.executor.live_keys():
                try:
                    self.executor.cancel(key)
                except Exception:
                    log.exception("cancelling %s failed", key)
            self.done = state.Done(self.machine.abort(reason, time.time()), None)
        finally:
            self.master.stop()

    def _run(self) -> None:
        self._carry(self.machine.start(time.time()))
        while self.done is None:
            if self._q.empty():  # nothing more comes at once: a backend that holds launches back starts them now
                self._flush()
            due = self.machine.next_due()
            try:
                msg = self._q.get(timeout=None if due is None else max(0.0, due - time.time()))
            except queue.Empty:
                msg = state.Tick()
            if isinstance(msg, base.LogLine):
                self._log_line(msg)
                continue
            if isinstance(msg, base.Finished) and self._masked:
                tail = tuple(logtail.mask(line, self._masked) for line in msg.log_tail)
                reason = msg.reason and logtail.mask(msg.reason, self._masked)
                msg = dataclasses.replace(msg, log_tail=tail, reason=reason)
            self._carry(self.machine.step(msg, time.time()))

    def _carry(self, actions: list[state.Action]) -> None:
        events = [a.event for a in actions if isinstance(a, state.Emit)]
        if events:  # one hand-off per step, not per event: each wakes the observer lane's thread
            self.observers.submit(partial(self._notify_events, events))
        for a in actions:
            if isinstance(a, state.Prepare):
                self._prepare(a)
            elif isinstance(a, state.Launch):
                self._launch(a)
            elif isinstance(a, state.Cancel):
                self._cancel(a)
            elif isinstance(a, state.Confirm):
                self.io.submit(partial(self._confirm, a))
            elif isinstance(a, state.PlanRequested):
                self.master.submit(partial(self._plan_requested, a))
            elif isinstance(a, state.RunMaster):
                self.master.submit(self.plan.nodes[a.task_id])
            elif isinstance(a, state.Done):
                self.done = a

    def _prepare(self, a: state.Prepare) -> None:
        try:
            spec, upload = self.specs.encode(self.plan.nodes[a.task_id])
        except Exception as e:
            self.post(state.Prepared(a.key, f"{type(e).__name__}: {e}"))
            return
        if upload is None:
            self.post(state.Prepared(a.key))
            return

        def write() -> None:  # I/O pool: object storage
            try:
                self.specs.upload(a.task_id, spec, upload)
            except Exception as e:
                self.post(state.Prepared(a.key, f"{type(e).__name__}: {e}"))
            else:
                self.post(state.Prepared(a.key))

        self.io.submit(write)

    def _launch(self, a: state.Launch) -> None:
        node = self.plan.nodes[a.task_id]
        spec = self.specs.take(a.task_id)
        assert spec is not None, "Launch before Prepared"
        hints = node.hints or Hints()
        own = {"KANNON_RUN_ID": self.run.run_id, "KANNON_INVOCATION_ID": self.run.invocation_id,
               "KANNON_TASK_ID": a.task_id, "KANNON_ATTEMPT": str(a.attempt), **spec.env}  # fmt: skip
        log_path = ids.log_path(self.run.run_dir, self.run.invocation_id, node.family, a.task_id, a.attempt)
        launch = base.Launch(
            key=a.key, run_id=self.run.run_id, task_id=a.task_id, family=node.family, attempt=a.attempt,
            child_args=handoff.child_args(spec.location, a.task_id, spec.sha256),
            env=self._env(hints, own), hints=hints, log_path=log_path,
            labels={"kannon.io/run-id": self.run.run_id},
        )  # fmt: skip
        try:
            self.executor.launch(launch)
        except Exception as e:
            self._launch_failed(a.key, e)

    def _flush(self) -> None:
        for key, e in self.executor.flush():
            self._launch_failed(key, e)

    def _launch_failed(self, key: str, e: Exception) -> None:
        reason = f"the {self.executor.name} backend could not launch it: {type(e).__name__}: {e}"
        self.post(state.LaunchFailed(key, reason, isinstance(e, base.BackendError)))

    def _env(self, hints: Hints, own: dict[str, str]) -> dict[str, str]:
        env = self.child_env.for_launch(hints, own)
        if not self.executor.delivers_secrets:  # a backend from before RunInfo.secrets (base.Executor)
            env = {**self.run.secrets, **env}
        return env

    def _cancel(self, a: state.Cancel) -> None:
        try:
            self.executor.cancel(a.key)
        except Exception as e:  # the child may still run: the state machine tries again later
            log.warning("kannon: cancelling %s failed (%s: %s); trying again", a.key, type(e).__name__, e)
            self.post(state.CancelFailed(a.key, f"{type(e).__name__}: {e}"))

    def _confirm(self, a: state.Confirm) -> None:  # I/O pool
        try:
            complete, error = bool(self.plan.nodes[a.task_id].task.complete()), None
        except Exception as e:
            complete, error = False, f"{type(e).__name__}: {e}"
        self.post(state.Confirmed(a.key, complete, error))

    def _plan_requested(self, a: state.PlanRequested) -> None:  # the master runner's thread
        """Read the specs a bullet's child wrote for the tasks its run() yielded, verify and rebuild them as a
        child does, and plan them like the static DAG (docs/design.md, "Dynamic dependencies")."""
        ids = tuple(t for t, _ in a.requested)
        try:
            assert self.planner is not None, "a yield answered without a planner"
            requester = self.plan.nodes[a.task_id].task
            tasks = []
            for task_id, sha in a.requested:
                where = dynamic.requested_location(requester, self.run.run_id, a.task_id, a.attempt, task_id)
                try:
                    data = speccrypt.open_sealed(storage.read_bytes(where), self.specs.key)
                    handoff.verify_hash(data, sha)
                    doc = handoff.parse_spec(data)
                    with handoff.fresh_instances():
                        handoff.import_modules(doc)
                        tasks.append(handoff.rebuild(doc)[task_id])
                finally:
                    storage.delete(where)
            self.post(state.BulletRequested(a.key, ids, self.planner(tasks)))
        except PlanError as e:
            self.post(state.BulletRequested(a.key, ids, None, "its run() yielded tasks that cannot run: " +
                                            "; ".join(e.problems)))  # fmt: skip
        except Exception as e:
            self.post(state.BulletRequested(a.key, ids, None, f"reading the tasks its run() yielded failed: "
                                            f"{type(e).__name__}: {e}"))  # fmt: skip

    def _log_line(self, msg: base.LogLine) -> None:
        uid = self.machine.task_of(msg.key)
        if uid is None:
            return
        line = logtail.mask(msg.line, self._masked)  # a status message may quote a secret as much as a print
        status = logtail.parse_status(line)
        if status is not None:  # a bullet's set_status_message / set_progress_percentage: an event, not output
            node = self.plan.nodes[uid]
            event = Event("status", self.run.run_id, task_id=uid, family=node.family, attempt=_attempt_of(msg.key),
                          status_message=status.message, progress_percentage=status.percentage)  # fmt: skip
            self.observers.submit(partial(self._notify_event, event))
        elif self.print_logs:
            label = f"{self.plan.nodes[uid].family} {uid[:8]}"
            self.notify("kannon_task_log", task_id=uid, label=label, line=line)

    # -- observer lane -----------------------------------------------------------------------------------------
    def _notify_events(self, events: list[Event]) -> None:
        for event in events:
            self._notify_event(event)

    def _notify_event(self, event: Event) -> None:
        hook = self.pm.hook
        self._call_hook("kannon_event", {"event": event})
        specific = {"launched": "kannon_task_start", "succeeded": "kannon_task_success",
                    "failed": "kannon_task_failure", "retried": "kannon_task_retry"}.get(event.kind)  # fmt: skip
        if specific is not None and hasattr(hook, specific):
            self._call_hook(specific, {"event": event})

    def _call_hook(self, name: str, kwargs: dict[str, Any]) -> None:
        try:
            getattr(self.pm.hook, name)(**kwargs)
        except Exception:
            log.exception("an observer failed on %s; continuing", name)


def _attempt_of(key: str) -> int | None:
    """The attempt number in a launch key (``<task id>-<attempt>``, see state.RunState)."""
    tail = key.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else None
