"""Master tasks run here, on the thread that called ``build()`` — the main thread whenever there are any, because
``gokart.build`` installs signal handlers, which only the main thread may.

This is the only place a signal may interrupt user code. SIGINT/SIGTERM always become a ``CancelRun`` for the
loop; they raise ``KeyboardInterrupt`` only while the user's own code runs (``_interruptible``), never while kannon
reports, formats a failure or waits for work. So every master task's end is reported — whatever interrupts it —
and the loop never waits for a result that cannot come.

Tests steer signals to each phase through :data:`seam_hook` (called with "before", "failing", "after"); the
"inside" phase is the task's own ``run()``.
"""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import traceback
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

import luigi

from kannon import dynamic, runner
from kannon.handoff import unique_id
from kannon.plan import Node, Plan, PlanError
from kannon.scheduler.state import CancelRun, MasterDone, MasterRequested, MasterStarted

log = logging.getLogger("kannon")

#: tests only: called with the phase name at each seam of a master task
seam_hook: Callable[[str], None] | None = None


def _seam(phase: str) -> None:
    hook = seam_hook
    if hook is not None:
        hook(phase)


#: plans the tasks a yield asked for, like the static DAG (kannon.plan.plan_requested + the import check)
Planner = Callable[[list[luigi.Task]], Plan]


class MasterRunner:
    def __init__(self, post: Callable[[object], None], planner: Planner | None = None) -> None:
        self._post = post
        self._planner = planner
        # A Queue (not SimpleQueue): its blocking get() lets signal handlers run on an idle main thread.
        self._jobs: queue.Queue[Node | Callable[[], None] | None] = queue.Queue()
        self._interruptible = False
        self.cancel_requested = False

    def submit(self, node: Node | Callable[[], None]) -> None:
        """A master task to run, or other master-side work for this thread (planning a bullet's yield)."""
        self._jobs.put(node)

    def stop(self) -> None:
        self._jobs.put(None)

    @contextlib.contextmanager
    def signals(self) -> Iterator[None]:
        """While inside: SIGINT/SIGTERM cancel the run (main thread only; elsewhere signals stay as they were)."""
        previous: dict[signal.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                previous[sig] = signal.signal(sig, self._on_signal)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.cancel_requested = True
        self._post(CancelRun(f"received {signal.Signals(signum).name}", signum))
        if self._interruptible:
            self._interruptible = False  # once: the unwinding of user code is not interrupted again
            raise KeyboardInterrupt

    def serve(self) -> None:
        """Run master tasks as the loop hands them over, until :meth:`stop`."""
        while True:
            node = self._jobs.get()
            if node is None:
                return
            if callable(node):
                try:
                    node()
                except Exception:  # the job reports its own outcome; this is a bug of ours
                    log.exception("kannon: master-side work failed")
                continue
            try:
                self._run(node)
            except Exception:  # a bug of ours; the task's end was reported all the same (finally below)
                log.exception("kannon: running master task %s failed", node.task_id)

    def _run(self, node: Node) -> None:
        self._post(MasterStarted(node.task_id))
        # if anything below escapes:
        done: MasterDone | MasterRequested = MasterDone(node.task_id, False, "interrupted", "Cancelled")
        try:
            _seam("before")
            done = self._call(node)
            _seam("after")
        finally:
            self._post(done)

    def _call(self, node: Node) -> MasterDone | MasterRequested:
        error: BaseException | None = None
        try:
            try:
                self._interruptible = True
                if self.cancel_requested:  # checked after arming: a signal in between still interrupts
                    raise KeyboardInterrupt
                with dynamic.intercept(node.task):
                    runner.run_one(node.task)
            finally:
                self._interruptible = False
        except dynamic.DynamicRequest as req:  # before KeyboardInterrupt, which it is (kannon.dynamic)
            return self._requested(node, req.tasks)
        except KeyboardInterrupt:
            return MasterDone(node.task_id, False, "interrupted", "Cancelled")
        except BaseException as e:  # SystemExit from a task is its failure, not the master's exit
            error = e
        if error is None:
            return MasterDone(node.task_id, True)
        return _failure(node.task_id, error)


    def _requested(self, node: Node, tasks: list[luigi.Task]) -> MasterDone | MasterRequested:
        """Plan what run() asked for (on this thread: complete() checks and the import check may take a while,
        and the loop must not wait for them)."""
        if self._planner is None:
            return MasterDone(node.task_id, False, "run() yielded incomplete tasks, and this runner cannot plan them",
                              "PlanError")  # fmt: skip
        try:
            fragment = self._planner(tasks)
            requested = tuple(dict.fromkeys(unique_id(t) for t in tasks))
        except PlanError as e:
            reason = f"{type(node.task).__name__} yielded tasks that cannot run: " + "; ".join(e.problems)
            return MasterDone(node.task_id, False, reason, "PlanError")
        except Exception as e:
            return _failure(node.task_id, e)
        return MasterRequested(node.task_id, requested, fragment)


def _failure(task_id: str, e: BaseException) -> MasterDone:
    tail: tuple[str, ...] = ()
    if isinstance(e, runner.UpstreamMissingError):
        reason, klass = str(e), "UpstreamMissing"
    elif isinstance(e, runner.OutputMissingError):
        reason, klass = str(e), "OutputMissing"
    elif isinstance(e, runner.TaskRaisedError):
        reason, klass = str(e), "TaskFailed"
        cause = e.cause or e
        _seam("failing")
        tail = tuple("".join(traceback.format_exception(type(cause), cause, cause.__traceback__)).splitlines())
    else:
        reason, klass = f"{type(e).__name__}: {e}", "TaskFailed"
        _seam("failing")
        tail = tuple("".join(traceback.format_exception(type(e), e, e.__traceback__)).splitlines())
    return MasterDone(task_id, False, reason, klass, tail[-20:])
