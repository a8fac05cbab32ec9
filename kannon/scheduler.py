"""Kannon: plan, then one event-driven loop that runs master tasks here and hands bullets to an executor.

Threads, and why:
* the **main thread** runs master tasks (``gokart.build`` installs signal handlers, which only the main thread may)
  and receives SIGINT/SIGTERM;
* the **loop thread** owns all scheduling state. It blocks on one queue fed by the executor (Started/Finished/
  LogLine), by the main thread (master task results) and by signal handlers (cancel), with a timeout only for the
  next retry/deadline timer — there is no polling per task.
"""

from __future__ import annotations

import dataclasses
import graphlib
import hashlib
import heapq
import itertools
import logging
import os
import queue
import signal
import threading
import time
import traceback
import warnings
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import luigi

from kannon import handoff, runner, storage
from kannon.backends.base import BackendError, Executor, Finished, Launch, LogLine, RunInfo, Started
from kannon.events import Event
from kannon.hints import Hints
from kannon.plan import Node, Plan, PlanError, make_plan
from kannon.plugins import get_backend, plugin_manager
from kannon.result import Attempt, BuildResult, KannonBuildError, Placement, Status, TaskRecord

log = logging.getLogger("kannon")

LEGACY_K8S_ARGS = ("api_instance", "template_job", "job_prefix", "path_child_script", "master_pod_name",
                   "master_pod_uid", "dynamic_config_paths")  # fmt: skip


class Interrupted(KeyboardInterrupt):
    """The build was interrupted by a signal; every child was cancelled first. ``signum`` says which."""

    def __init__(self, signum: int, result: BuildResult | None = None) -> None:
        super().__init__(f"interrupted by {signal.Signals(signum).name}")
        self.signum = signum
        self.result = result


# -- messages into the loop ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _MasterDone:
    task_id: str
    ok: bool
    reason: str | None
    failure_class: str | None
    log_tail: tuple[str, ...]
    started_at: float


@dataclass(frozen=True)
class _Cancel:
    reason: str
    signum: int | None = None


@dataclass(frozen=True)
class _MasterStarted:
    task_id: str


# Retrying these cannot help: the same spec, code and environment give the same answer.
_NOT_RETRYABLE = frozenset({"BadSpec", "IdMismatch", "ImportFailed"})


def _run_id(root_id: str) -> str:
    # Deterministic per pipeline: a rerun after a crash finds (and re-attaches to) the same run's children.
    return hashlib.sha256(root_id.encode()).hexdigest()[:12]


class Kannon:
    """Build a gokart pipeline: master tasks here, ``TaskOnBullet`` tasks through ``executor``.

    Args:
        executor: where bullets run (default: ``LocalExecutor()``).
        max_parallel: cap on running bullets (default: the executor's default parallelism).
        retries: extra attempts per bullet after a failure (per class: ``kannon_hints = Hints(retries=...)``).
        retry_delay: first retry backoff in seconds; doubles per attempt, capped at ``retry_delay_max``.
        keep_going: finish every branch that does not depend on a failure (True), or cancel everything at the first
            final failure (False).
        env_to_inherit: names of environment variables passed from the master to every child.
        infra_retries: extra attempts for infrastructure failures (eviction, preemption, image pull flakes) that do
            not spend the task's own retries.
        run_dir: local directory for logs and local specs (default: ``<workspace>/kannon/runs/<run id>`` for a
            local workspace, else ``./.kannon/runs/<run id>``).
        follow_logs: stream every child's output as it runs.
        observers: objects with ``@kannon.hookimpl`` methods, registered for this build only.

    The original kannon's keyword arguments (``api_instance``, ``template_job``, ``job_prefix``, ...) still work and
    select the Kubernetes backend, with a DeprecationWarning.
    """

    def __init__(
        self,
        executor: Executor | None = None,
        max_parallel: int | None = None,
        retries: int = 0,
        keep_going: bool = True,
        *legacy_args: Any,
        retry_delay: float = 1.0,
        retry_delay_max: float = 60.0,
        env_to_inherit: Sequence[str] = (),
        infra_retries: int = 3,
        run_dir: str | os.PathLike[str] | None = None,
        follow_logs: bool = False,
        observers: Iterable[object] = (),
        sys_path: Sequence[str] = (),
        max_child_jobs: int | None = None,
        **legacy: Any,
    ) -> None:
        if executor is not None and not isinstance(executor, Executor):
            # kannon 0.1.x: Kannon(api_instance, template_job, job_prefix, path_child_script="./run_child.py",
            # env_to_inherit=None) — positionally. Its job_prefix was a required string.
            if not isinstance(retries, str) or len(legacy_args) > 1:
                raise TypeError("executor must be a kannon Executor (or use the 0.1.x form Kannon(api_instance, "
                                "template_job, job_prefix, ...))")  # fmt: skip
            legacy.update(api_instance=executor, template_job=max_parallel, job_prefix=retries)
            if isinstance(keep_going, str):
                legacy["path_child_script"] = keep_going
            if legacy_args:
                env_to_inherit = tuple(legacy_args[0] or ())
            executor, max_parallel, retries, keep_going = None, None, 0, True
        elif legacy_args:
            raise TypeError(f"Kannon() takes at most 4 positional arguments ({4 + len(legacy_args)} given)")
        unknown = set(legacy) - set(LEGACY_K8S_ARGS)
        if unknown:
            raise TypeError(f"Kannon() got unexpected keyword argument(s): {', '.join(sorted(unknown))}")
        if legacy or max_child_jobs is not None:
            if legacy:
                warnings.warn(
                    "Kannon(api_instance=..., template_job=..., ...) is deprecated: use "
                    "Kannon(executor=K8sJobExecutor(template_job=..., namespace=...)). The child script "
                    "(path_child_script) is no longer needed: every backend runs `python -m kannon run-task`.",
                    DeprecationWarning,
                    stacklevel=2,
                )
                if executor is not None:
                    raise TypeError("pass either executor= or the legacy Kubernetes arguments, not both")
                executor = get_backend("kubernetes").factory(legacy=True, **legacy)
            if max_child_jobs is not None and max_parallel is None:
                max_parallel = max_child_jobs
        if max_parallel is not None and max_parallel < 1:
            raise ValueError("max_parallel must be at least 1")
        if retries < 0:
            raise ValueError("retries must be >= 0")
        self.executor = executor
        self.max_parallel = max_parallel
        self.retries = retries
        self.keep_going = keep_going
        self.retry_delay = retry_delay
        self.retry_delay_max = retry_delay_max
        self.env_to_inherit = tuple(env_to_inherit)
        self.infra_retries = infra_retries
        self.run_dir = Path(run_dir) if run_dir is not None else None
        self.follow_logs = follow_logs
        self.observers = list(observers)
        self.sys_path = tuple(sys_path)

    # -- public -------------------------------------------------------------------------------------------------
    def plan(self, root: luigi.Task) -> Plan:
        executor = self._executor()
        return make_plan(root, validate_hints=executor.validate)

    def build(self, root: luigi.Task) -> BuildResult:
        """Run everything ``root`` needs; returns the BuildResult or raises KannonBuildError / Interrupted."""
        runner.quiet_luigi()
        executor = self._executor()
        pm = plugin_manager()
        for obs in self.observers:
            if not pm.is_registered(obs):
                pm.register(obs)
        try:
            plan = make_plan(root, validate_hints=executor.validate)
            _check_master_thread(plan)
            run = _Run(self, executor, plan)
            return run.execute()
        finally:
            for obs in self.observers:
                if pm.is_registered(obs):
                    pm.unregister(obs)

    def _executor(self) -> Executor:
        if self.executor is None:
            from kannon.backends.local import LocalExecutor

            self.executor = LocalExecutor()
        return self.executor


def _check_master_thread(plan: Plan) -> None:
    # gokart.build, which runs master tasks, installs signal handlers: only the main thread may. Refuse before
    # anything is launched rather than fail on the first master task with bullets already running.
    if threading.current_thread() is threading.main_thread():
        return
    pending = [n.family for n in plan.nodes.values() if n.placement is Placement.MASTER]
    if pending:
        raise PlanError([
            f"Kannon.build() was called from thread {threading.current_thread().name!r}, but {len(pending)} "
            f"master task(s) must run ({', '.join(sorted(set(pending))[:5])}), and gokart.build, which runs them, "
            "installs signal handlers, which only the main thread may. Call build() from the main thread, or "
            "run the pipeline in its own process (`kannon build MODULE:ROOT`, or multiprocessing)."
        ])


class _Run:
    """The state of one build. Only the loop thread touches the scheduling state."""

    def __init__(self, kannon: Kannon, executor: Executor, plan: Plan) -> None:
        self.k = kannon
        self.executor = executor
        self.plan = plan
        self.pm = plugin_manager()
        self.run_id = _run_id(plan.root_id)
        self.backend = executor.name
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()  # put() is reentrant: signal handlers use it
        # A Queue (not SimpleQueue): its blocking get() is interruptible, so Ctrl-C reaches an idle main thread.
        self.master_q: queue.Queue[Node | None] = queue.Queue()
        self.max_parallel = kannon.max_parallel or executor.default_parallelism
        self.records: dict[str, TaskRecord] = {}
        self.started_at = time.time()
        self.run_dir = self._run_dir()
        self.config = handoff.luigi_config_snapshot()
        self.encoder = handoff.Encoder(verify_values=False)  # values were verified while planning
        self.specs: dict[str, tuple[str, str, dict[str, str]]] = {}  # task -> (location, sha256, extra env)
        # scheduling state (loop thread only)
        self.key_to_task: dict[str, str] = {}
        self.running: dict[str, str] = {}  # task id -> live key
        self.waiting: deque[str] = deque()  # ready bullets over the parallelism cap
        self.fresh: list[str] = []  # made ready since the last dispatch: queued if they could not start at once
        self.queued_at: dict[str, float] = {}  # task id -> when it was announced queued
        self.timers: list[tuple[float, int, str, str]] = []  # (due, seq, what, task id/key)
        self.seq = itertools.count()
        self.infra_used: dict[str, int] = {}
        self.master_fifo: deque[str] = deque()  # ready master tasks (the main thread runs one at a time)
        self.master_busy = False
        self.master_handed: str | None = None  # the master task last handed to the main thread
        self.in_master_task = False  # main thread: a master task is running (signals may interrupt it)
        self.deadline_hit: set[str] = set()  # keys cancelled because they ran past their timeout
        self.cancelled: _Cancel | None = None
        self.fatal: str | None = None

    def _run_dir(self) -> Path:
        if self.k.run_dir is not None:
            return (self.k.run_dir / self.run_id).absolute()
        workspace = str(getattr(self.plan.nodes[self.plan.root_id].task, "workspace_directory", "./resources/"))
        base = Path(".kannon") if storage.is_remote(workspace) else Path(workspace) / "kannon"
        return (base / "runs" / self.run_id).absolute()

    # -- events out ------------------------------------------------------------------------------------------
    def emit(self, kind: str, node: Node | None = None, **fields: Any) -> None:
        if node is not None:
            fields.setdefault("task_id", node.task_id)
            fields.setdefault("family", node.family)
            fields.setdefault("params", node.params)
            fields.setdefault("placement", node.placement.value)
            if node.placement is not Placement.COMPLETE:
                fields.setdefault("backend", self.backend if node.placement is Placement.BULLET else "master")
        event = Event(kind=kind, run_id=self.run_id, **fields)  # type: ignore[arg-type]
        hook = self.pm.hook
        try:
            hook.kannon_event(event=event)
            specific = {"launched": hook.kannon_task_start, "succeeded": hook.kannon_task_success,
                        "failed": hook.kannon_task_failure, "retried": hook.kannon_task_retry}.get(kind)  # fmt: skip
            if specific is not None:
                specific(event=event)
        except Exception:
            log.exception("an observer failed on %s; continuing", kind)

    # -- the build -------------------------------------------------------------------------------------------
    def execute(self) -> BuildResult:
        plan = self.plan
        for node in plan.nodes.values():
            status = Status.COMPLETE if node.placement is Placement.COMPLETE else Status.PENDING
            self.records[node.task_id] = TaskRecord(node.task_id, node.family, node.params, node.placement, status,
                                                    node.deps)  # fmt: skip
        info = RunInfo(self.run_id, self.run_dir, self.k.follow_logs)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.executor.start(info, self.events.put)  # may fork the local zygote: no threads of ours exist yet
        try:
            self.pm.hook.kannon_run_start(run=info, backend=self.backend)
            self.emit("run_started", backend=self.backend)
            for node in plan.nodes.values():
                kind = "skipped_complete" if node.placement is Placement.COMPLETE else "planned"
                self.emit(kind, node, deps=node.deps)
            self.executor.prepare(plan.bullet_modules())
            result = self._drive()
        finally:
            try:
                self.executor.close()
            except Exception:
                log.exception("closing the %s backend failed", self.backend)
        counts = result.counts()
        outcome = "cancelled" if result.cancelled else ("ok" if result.ok else "failed")
        self.emit("run_finished", reason=outcome, counts=counts)
        try:
            self.pm.hook.kannon_run_end(run=info, result=result)
        except Exception:
            log.exception("an observer failed on run_end")
        if self.cancelled is not None and self.cancelled.signum is not None:
            raise Interrupted(self.cancelled.signum, result)
        if not result.ok:
            raise KannonBuildError(result)
        return result

    def _drive(self) -> BuildResult:
        """Main thread: run master tasks as the loop hands them over; turn signals into a cancel."""
        previous: dict[signal.Signals, Any] = {}

        def on_signal(signum: int, frame: FrameType | None) -> None:
            self.events.put(_Cancel(f"received {signal.Signals(signum).name}", signum))
            if self.in_master_task:
                # Interrupt the master task. Never raise while idle in Queue.get(): an exception inside
                # Condition.wait() can leave the queue's lock broken ("release unlocked lock").
                raise KeyboardInterrupt

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, on_signal)
        loop = threading.Thread(target=self._loop_guarded, name="kannon-loop", daemon=True)
        loop.start()
        try:
            while True:
                try:
                    node = self.master_q.get()
                    if node is None:
                        break
                    self._run_master(node)
                except KeyboardInterrupt:
                    self.events.put(_Cancel("interrupted", signal.SIGINT))
        finally:
            while loop.is_alive():
                try:
                    loop.join()
                except KeyboardInterrupt:
                    self.events.put(_Cancel("interrupted", signal.SIGINT))
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return self._result()

    def _run_master(self, node: Node) -> None:
        try:
            self.in_master_task = True
            self._run_master_task(node)
        finally:
            self.in_master_task = False

    def _run_master_task(self, node: Node) -> None:
        started = time.time()
        self.events.put(_MasterStarted(node.task_id))
        ok, reason, klass = True, None, None
        tail: tuple[str, ...] = ()
        try:
            runner.run_one(node.task)
        except runner.UpstreamMissingError as e:
            ok, reason, klass = False, str(e), "UpstreamMissing"
        except runner.OutputMissingError as e:
            ok, reason, klass = False, str(e), "OutputMissing"
        except runner.TaskRaisedError as e:
            ok, reason, klass = False, str(e), "TaskFailed"
            cause = e.cause or e
            tail = tuple("".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).splitlines())
        except KeyboardInterrupt:
            ok, reason, klass = False, "interrupted", "Cancelled"
            self.events.put(_MasterDone(node.task_id, ok, reason, klass, tail, started))
            raise
        except Exception as e:
            ok, reason, klass = False, f"{type(e).__name__}: {e}", "TaskFailed"
            tail = tuple(traceback.format_exc().splitlines())
        self.events.put(_MasterDone(node.task_id, ok, reason, klass, tail[-20:], started))

    # -- the loop (loop thread) -------------------------------------------------------------------------------
    def _loop_guarded(self) -> None:
        try:
            self._loop()
        except BaseException as e:  # never leave the main thread waiting, nor children running
            self.fatal = f"kannon's scheduling loop failed: {type(e).__name__}: {e}"
            log.exception("scheduling loop failed")
            self._cancel_everything()
        finally:
            self.master_q.put(None)

    def _loop(self) -> None:
        graph = {n.task_id: [d for d in n.deps if self.plan.nodes[d].placement is not Placement.COMPLETE]
                 for n in self.plan.todo}  # fmt: skip
        self.sorter = graphlib.TopologicalSorter(graph)
        self.sorter.prepare()
        self._dispatch_ready()
        while self._active():
            timeout = None
            if self.timers:
                timeout = max(0.0, self.timers[0][0] - time.time())
            try:
                msg = self.events.get(timeout=timeout)
            except queue.Empty:
                msg = None
            if msg is not None:
                self._handle(msg)
            self._fire_timers()
            self._dispatch_ready()

    def _active(self) -> bool:
        # The sorter stays "active" forever once a task failed (its dependents never become ready), so the run
        # is over when nothing runs, waits or is scheduled — not when the sorter says so.
        return bool(self.running or self.master_busy or self.waiting or self.master_fifo or self.timers)

    def _dispatch_ready(self) -> None:
        if self.cancelled is not None:
            return
        for uid in self.sorter.get_ready():
            self.fresh.append(uid)
            if self.plan.nodes[uid].placement is Placement.MASTER:
                self.master_fifo.append(uid)
            else:
                self.waiting.append(uid)
        if not self.master_busy and self.master_fifo:
            self.master_busy = True
            self.master_handed = self.master_fifo.popleft()
            self.master_q.put(self.plan.nodes[self.master_handed])
        while self.waiting and len(self.running) < self.max_parallel:
            self._launch(self.waiting.popleft())
        if self.fresh:
            self._announce_queued()

    def _announce_queued(self) -> None:
        # Ready tasks that could not start at once (parallelism cap, or another master task running) say so, so
        # the wait for a slot is visible (report, progress) and not mistaken for scheduling or start-up time.
        now = time.time()
        for uid in self.fresh:
            rec = self.records[uid]
            if rec.status is Status.PENDING and uid not in self.running and uid != self.master_handed:
                self.queued_at[uid] = now
                self.emit("queued", self.plan.nodes[uid], attempt=len(rec.attempts) + 1, time=now)
        self.fresh.clear()

    def _launch(self, uid: str) -> None:
        node = self.plan.nodes[uid]
        rec = self.records[uid]
        attempt = len(rec.attempts) + 1
        try:
            location, sha, spec_env = self._spec_for(node)
        except Exception as e:
            self._final_failure(uid, f"could not write the hand-off spec: {type(e).__name__}: {e}", "BadSpec")
            return
        key = f"{uid}-{attempt}"
        hints = node.hints or Hints()
        env = {name: os.environ[name] for name in self.k.env_to_inherit if name in os.environ}
        env.update(hints.env)
        env.update(spec_env)
        env.update({"KANNON_RUN_ID": self.run_id, "KANNON_TASK_ID": uid, "KANNON_ATTEMPT": str(attempt)})
        launch = Launch(
            key=key, run_id=self.run_id, task_id=uid, family=node.family, attempt=attempt,
            child_args=handoff.child_args(location, uid, sha), env=env, hints=hints,
            log_path=self.run_dir / "logs" / f"{node.family}-{uid[:12]}-{attempt}.log",
            labels={"kannon.io/run-id": self.run_id},
        )  # fmt: skip
        rec.status = Status.RUNNING
        rec.attempts.append(Attempt(attempt, time.time(), queued_at=self.queued_at.pop(uid, None)))
        self.key_to_task[key] = uid
        self.running[uid] = key
        self.emit("launched", node, attempt=attempt)
        try:
            self.executor.launch(launch)
        except Exception as e:
            self.running.pop(uid, None)
            self._attempt_failed(uid, Finished(key, None, f"the {self.backend} backend could not launch it: "
                                               f"{type(e).__name__}: {e}", "LaunchFailed"))  # fmt: skip
            if isinstance(e, BackendError):  # the backend is unusable as configured: stop launching
                self._cancel(_Cancel(f"backend error: {e}"))
            return
        if hints.timeout:
            self._timer(time.time() + hints.timeout, "deadline", key)

    def _spec_for(self, node: Node) -> tuple[str, str, dict[str, str]]:
        cached = self.specs.get(node.task_id)
        if cached is not None:
            return cached
        data = self.encoder.spec(node.task, self.run_id, self.config, self.k.sys_path)
        sha = hashlib.sha256(data).hexdigest()
        transport = self.executor.spec_transport(len(data))
        env: dict[str, str] = {}
        if transport == "inline":
            location = "env:KANNON_SPEC"
            env["KANNON_SPEC"] = storage.encode_inline(data)
        else:
            if transport == "workspace":
                base = str(getattr(node.task, "workspace_directory", "./resources/"))
                location = storage.join(base, "kannon", "specs", self.run_id, f"{node.task_id}.json")
            else:
                location = str(self.run_dir / "specs" / f"{node.task_id}.json")
            storage.write_bytes(location, data)
        self.specs[node.task_id] = (location, sha, env)
        return self.specs[node.task_id]

    def _handle(self, msg: Any) -> None:
        if isinstance(msg, Finished):
            uid = self.key_to_task.get(msg.key)
            if uid is None or self.running.get(uid) != msg.key:
                return  # stale (e.g. a cancelled attempt already accounted for)
            del self.running[uid]
            self._timers_drop(msg.key)
            if msg.key in self.deadline_hit and self.cancelled is None:
                timeout = (self.plan.nodes[uid].hints or Hints()).timeout
                msg = dataclasses.replace(msg, reason=f"DeadlineExceeded: ran longer than its timeout of {timeout} s; "
                                          "raise `timeout` in its kannon_hints", failure_class="DeadlineExceeded")
            rec = self.records[uid]
            att = rec.attempts[-1]
            att.finished_at, att.exit_code, att.where = msg.at, msg.exit_code, msg.where or att.where
            att.log_tail = msg.log_tail
            if msg.ok:
                self._confirm(uid)
            else:
                self._attempt_failed(uid, msg)
        elif isinstance(msg, Started):
            uid = self.key_to_task.get(msg.key)
            if uid is not None and self.running.get(uid) == msg.key:
                att = self.records[uid].attempts[-1]
                att.started_at, att.where = msg.at, msg.where
                self.emit("started", self.plan.nodes[uid], attempt=att.number, where=msg.where)
        elif isinstance(msg, LogLine):
            uid = self.key_to_task.get(msg.key)
            if uid is not None:
                node = self.plan.nodes[uid]
                label = f"{node.family} {uid[:8]}"
                try:
                    self.pm.hook.kannon_task_log(task_id=uid, label=label, line=msg.line)
                except Exception:
                    log.exception("an observer failed on a log line")
        elif isinstance(msg, _MasterStarted):
            node = self.plan.nodes[msg.task_id]
            rec = self.records[msg.task_id]
            rec.status = Status.RUNNING
            now = time.time()
            rec.attempts.append(Attempt(1, now, started_at=now, where="master",
                                        queued_at=self.queued_at.pop(msg.task_id, None)))  # fmt: skip
            self.emit("launched", node, attempt=1, where="master")
            self.emit("started", node, attempt=1, where="master")
        elif isinstance(msg, _MasterDone):
            self.master_busy = False
            rec = self.records[msg.task_id]
            att = rec.attempts[-1]
            att.finished_at, att.reason, att.failure_class, att.log_tail = time.time(), msg.reason, \
                msg.failure_class, msg.log_tail  # fmt: skip
            if msg.ok:
                self._succeeded(msg.task_id)
            elif msg.failure_class == "Cancelled" or self.cancelled is not None:
                rec.status = Status.CANCELLED
                self.emit("cancelled", self.plan.nodes[msg.task_id], reason=msg.reason, attempt=1)
            else:
                self._final_failure(msg.task_id, msg.reason or "failed", msg.failure_class)
        elif isinstance(msg, _Cancel):
            self._cancel(msg)

    def _confirm(self, uid: str) -> None:
        node = self.plan.nodes[uid]
        try:
            complete = bool(node.task.complete())
            error = None
        except Exception as e:
            complete, error = False, f"{type(e).__name__}: {e}"
        if complete:
            self._succeeded(uid)
            return
        reason = (f"the child exited 0 but the output is missing ({error or 'complete() is False'}); a local "
                  "workspace must be shared with the children (same path), object storage reachable from both")
        self._attempt_failed(uid, Finished("", 0, reason, "OutputMissing"))

    def _succeeded(self, uid: str) -> None:
        rec = self.records[uid]
        rec.status = Status.SUCCEEDED
        att = rec.attempts[-1]
        self.emit("succeeded", self.plan.nodes[uid], attempt=att.number, where=att.where)
        self.sorter.done(uid)

    def _attempt_failed(self, uid: str, fin: Finished) -> None:
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
            self.emit("cancelled", node, attempt=att.number, reason=fin.reason or "cancelled", where=att.where)
            return
        hints = node.hints or Hints()
        allowed = hints.retries if hints.retries is not None else self.k.retries
        spent = sum(1 for a in rec.attempts if not a.infra)
        delay = None
        if fin.infra and self.infra_used.get(uid, 0) < self.k.infra_retries:
            self.infra_used[uid] = self.infra_used.get(uid, 0) + 1
            delay = 0.0
        elif fin.infra:  # the free infrastructure budget is spent: this attempt counts like any other
            att.infra = False
            spent += 1
        if delay is None and spent <= allowed and fin.failure_class not in _NOT_RETRYABLE:
            delay = min(self.k.retry_delay_max, self.k.retry_delay * 2 ** (spent - 1))
        if delay is None:
            self._final_failure(uid, fin.reason or "failed", fin.failure_class)
            return
        rec.status = Status.PENDING
        self.emit("retried", node, attempt=att.number, reason=fin.reason, failure_class=fin.failure_class,
                  exit_code=fin.exit_code, log_tail=fin.log_tail, where=att.where)  # fmt: skip
        self._timer(time.time() + delay, "retry", uid)

    def _final_failure(self, uid: str, reason: str, failure_class: str | None) -> None:
        node = self.plan.nodes[uid]
        rec = self.records[uid]
        rec.status, rec.reason = Status.FAILED, reason
        att = rec.last
        self.emit("failed", node, attempt=att.number if att else None, reason=reason, failure_class=failure_class,
                  exit_code=att.exit_code if att else None, log_tail=att.log_tail if att else (),
                  where=att.where if att else None)  # fmt: skip
        if not self.k.keep_going:
            self._cancel(_Cancel(f"{node.family} failed and keep_going is off (fail fast)"))

    def _cancel(self, msg: _Cancel) -> None:
        if self.cancelled is not None:
            if msg.signum is not None and self.cancelled.signum is None:
                self.cancelled = msg
            return
        self.cancelled = msg
        log.warning("kannon: cancelling run %s: %s", self.run_id, msg.reason)
        self.timers.clear()
        self.waiting.clear()
        self.master_fifo.clear()
        self._cancel_everything()

    def _cancel_everything(self) -> None:
        for key in list(self.running.values()):
            try:
                self.executor.cancel(key)
            except Exception:
                log.exception("cancelling %s failed", key)

    def _timer(self, due: float, what: str, ref: str) -> None:
        heapq.heappush(self.timers, (due, next(self.seq), what, ref))

    def _timers_drop(self, ref: str) -> None:
        self.timers = [t for t in self.timers if t[3] != ref]
        heapq.heapify(self.timers)

    def _fire_timers(self) -> None:
        now = time.time()
        while self.timers and self.timers[0][0] <= now:
            _, _, what, ref = heapq.heappop(self.timers)
            if what == "retry" and self.cancelled is None:
                self.waiting.appendleft(ref)
                self.fresh.append(ref)
            elif what == "deadline":
                uid = self.key_to_task.get(ref)
                if uid is not None and self.running.get(uid) == ref:
                    self.deadline_hit.add(ref)
                    self.executor.cancel(ref)

    # -- result ------------------------------------------------------------------------------------------------
    def _result(self) -> BuildResult:
        failed = {uid for uid, r in self.records.items() if r.status is Status.FAILED}
        # everything downstream of a failure that never ran
        for uid, rec in self.records.items():
            if rec.status in (Status.PENDING, Status.RUNNING):
                if self.cancelled is not None:
                    rec.status = Status.CANCELLED
                    rec.reason = self.cancelled.reason
                else:
                    rec.status = Status.UPSTREAM_FAILED
                    blockers = self._failed_upstream(uid, failed)
                    rec.reason = "upstream failed: " + ", ".join(self.records[b].family + " " + b[:8]
                                                                 for b in blockers[:3])  # fmt: skip
                kind = "cancelled" if rec.status is Status.CANCELLED else "upstream_failed"
                self.emit(kind, self.plan.nodes[uid], reason=rec.reason)
        if self.fatal:
            for rec in self.records.values():
                if rec.status is Status.CANCELLED:
                    rec.reason = self.fatal
        return BuildResult(
            run_id=self.run_id, backend=self.backend, tasks=self.records, root_id=self.plan.root_id,
            started_at=self.started_at, finished_at=time.time(), run_dir=str(self.run_dir),
            cancelled=self.cancelled is not None and (self.cancelled.signum is not None or self.fatal is not None),
        )  # fmt: skip

    def _failed_upstream(self, uid: str, failed: set[str]) -> list[str]:
        out, seen, stack = [], set(), list(self.plan.nodes[uid].deps)
        while stack:
            d = stack.pop()
            if d in seen:
                continue
            seen.add(d)
            if d in failed:
                out.append(d)
            else:
                stack.extend(self.plan.nodes[d].deps)
        return out


__all__ = ["Interrupted", "Kannon", "PlanError"]
