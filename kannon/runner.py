"""Run exactly one task whose upstream is already complete — in the master or in a child.

``gokart.build`` alone would silently recompute a missing upstream task and, by default, unregister user classes
and silence logging process-wide; this wrapper refuses instead and keeps logging alone.
"""

from __future__ import annotations

import logging
import queue
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import gokart
import luigi
from gokart import worker as gokart_worker
from gokart.build import GokartBuildError
from luigi.task import flatten

from kannon.child import exception_text as _exception_text


class UpstreamMissingError(Exception):
    pass


class TaskRaisedError(Exception):
    def __init__(self, message: str, cause: BaseException | None = None) -> None:
        super().__init__(message)
        self.cause = cause


class OutputMissingError(Exception):
    pass


def quiet_luigi() -> None:
    """luigi's interface logs at INFO/DEBUG by default; keep its warnings, drop the chatter."""
    from luigi.setup_logging import InterfaceLogging

    InterfaceLogging._configured = True  # stop luigi from attaching its own stderr handler
    for name in ("luigi", "luigi-interface", "luigi.scheduler", "luigi.worker", "gokart.worker",
                 "gokart.file_processor"):  # fmt: skip
        lg = logging.getLogger(name)
        if lg.level == logging.NOTSET:
            lg.setLevel(logging.WARNING)


def missing_requirements(task: luigi.Task) -> list[luigi.Task]:
    """The requirements of ``task`` that are not complete, firing luigi's dependency events for the complete ones as
    luigi's worker does when it schedules them (``run_one`` keeps the worker from checking them again)."""
    missing = []
    for dep in flatten(task.requires()):
        if getattr(dep, "_rerun_state", False):
            dep._rerun_state = False  # `rerun` belongs to the run that plans the task, not to a consumer
        if dep.complete():
            task.trigger_event(luigi.Event.DEPENDENCY_DISCOVERED, task, dep)
            dep.trigger_event(luigi.Event.DEPENDENCY_PRESENT, dep)
        else:
            missing.append(dep)
    return missing


#: while ``collect_exceptions()`` is active: the exceptions master tasks raised, {unique id: [exception]}
_collected: dict[str, list[BaseException]] | None = None


@contextmanager
def collect_exceptions() -> Iterator[dict[str, list[BaseException]]]:
    """Collect what the tasks run in this process raise, as ``gokart.build``'s ``raised_exceptions`` does."""
    global _collected
    saved, _collected = _collected, {}
    try:
        yield _collected
    finally:
        _collected = saved


def target_path(target: object) -> str:
    """luigi targets have a ``path`` attribute, gokart's a ``path()`` method."""
    path = getattr(target, "path", None)
    if callable(path):
        try:
            path = path()
        except Exception:
            path = None
    return str(path) if path is not None else str(target)


def drop_ambiguous_task_classes() -> list[str]:
    """Unregister task classes whose name another registered class shares (keeping luigi's and gokart's own).

    gokart's dump() resolves every registered task name (PandasTypeConfigMap), so one duplicate name breaks every
    dump in the process; ``gokart.build`` avoids that by unregistering all user classes (``reset_register``). Only
    name lookups need the registry (the hand-off imports classes by module and qualname), so dropping just the
    duplicates keeps everything else working. Returns the names dropped."""
    from luigi.task_register import Register

    registry = Register._get_reg()
    dropped = sorted(name for name, cls in registry.items() if cls is Register.AMBIGUOUS_CLASS)
    if dropped:
        Register._reg = [c for c in Register._reg if c.get_task_family() not in dropped
                         or c.__module__.split(".")[0] in ("luigi", "gokart")]  # fmt: skip
    return dropped


def _incomplete_reason(task: luigi.Task) -> str:
    """Why a task that ran without error is not complete: its outputs, or gokart's extra checks."""
    from kannon.handoff import describe

    outputs = flatten(task.output())
    missing = [target_path(t) for t in outputs if not t.exists()]
    if missing:
        return (f"{describe(task)} finished without error but its output does not exist ({', '.join(missing[:3])}); "
                "run() must write every target in output().")  # fmt: skip
    if getattr(task, "modification_time_check", False):
        return (f"{describe(task)} wrote its output, but an input is newer than it, so gokart's "
                "modification_time_check=True counts it as not complete (clocks of the machines sharing the "
                "workspace may differ, or an input was rewritten meanwhile). Check the inputs' modification times, "
                "or drop modification_time_check.")  # fmt: skip
    if getattr(task, "strict_check", False):
        return (f"{describe(task)} wrote its output, but with strict_check=True it is complete only when its "
                "requirements and inputs are too, and one of them is not.")  # fmt: skip
    return f"{describe(task)} finished without error, but its complete() returns False."


def run_one(task: luigi.Task) -> None:
    """Run ``task`` in this process; raise one of the errors above if it cannot be confirmed complete."""
    from kannon.handoff import describe

    drop_ambiguous_task_classes()
    missing = missing_requirements(task)
    if missing:
        names = ", ".join(describe(t) for t in missing[:5])
        raise UpstreamMissingError(
            f"{describe(task)} cannot run: upstream output missing for {names}. kannon never recomputes upstream "
            "tasks here; rerun the pipeline so the master rebuilds them."
        )
    with _scheduled_alone(task), _handlers_kept():
        if isinstance(task, gokart.TaskOnKart):
            _gokart_build(task)
        else:
            _luigi_build(task)
    if not task.complete():
        if isinstance(task, luigi.ExternalTask) or type(task).run is luigi.Task.run:
            outputs = ", ".join(target_path(t) for t in flatten(task.output()))
            raise OutputMissingError(f"{describe(task)} is an external input that does not exist: {outputs}")
        raise OutputMissingError(_incomplete_reason(task))


def _no_requirements() -> list[luigi.Task]:
    return []


@contextmanager
def _scheduled_alone(task: luigi.Task) -> Iterator[None]:
    """Let luigi's worker see no requirements: ``missing_requirements`` has just checked them all.

    The worker would check each one's ``complete()`` again when scheduling and once more before running (a stat,
    or a HEAD request on an object store, per requirement and pass) and keep a scheduler record of each until the
    next build: for a task with 10,000 requirements, 20,000 checks and ~50 MB. Only luigi's scheduling calls
    ``deps()``; ``requires()``, ``input()`` and gokart's ids are unchanged. Like ``kannon.reqmemo``'s memo, this
    lives on the instance for the build only."""
    own = "deps" in vars(task)
    if not own:
        task.deps = _no_requirements
    try:
        yield
    finally:
        if not own:
            del task.deps


@contextmanager
def _handlers_kept() -> Iterator[None]:
    """Drop the event handler each ``gokart.build`` call adds to TaskOnKart and never removes: a master running many
    tasks kept one per task (with the exceptions it collected), each run on every later failure. Handlers the
    task's own code registers meanwhile stay."""
    callbacks = luigi.Task._event_callbacks
    saved = {(cls, event): set(cbs) for cls, events in callbacks.items() for event, cbs in events.items()}
    try:
        yield
    finally:
        for cls, events in list(callbacks.items()):
            for event, cbs in list(events.items()):
                cbs -= {cb for cb in cbs - saved.get((cls, event), set()) if cb.__module__ == "gokart.build"}
                if not cbs and (cls, event) not in saved:
                    del events[event]
            if not events and not any(c is cls for c, _ in saved):
                del callbacks[cls]


# -- gokart.build's worker, for tasks that run in this process ----------------------------------------------------
class _InProcessQueue(queue.Queue):  # type: ignore[type-arg]
    def close(self) -> None:
        pass


class _InProcessWorker(gokart_worker.Worker):  # type: ignore[misc]  # gokart is untyped
    """gokart's worker, unchanged, but when it runs its tasks in this process (one worker process, no forced
    multiprocessing: every kannon build) it starts no thread: results go through a plain queue instead of a
    ``multiprocessing.Queue`` (whose feeder thread starts on the first result), and no keep-alive thread pings the
    in-process local scheduler, which has nothing to say back. Two thread starts per build were a third of a no-op
    bullet's wall time in ``gokart.build`` on a busy machine (each waits until the new thread has run)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_process = not (self._config.force_multiprocessing or self.worker_processes > 1)
        if self._in_process:
            self._task_result_queue.close()
            self._task_result_queue: Any = _InProcessQueue()

    def __enter__(self) -> Any:
        return self if self._in_process else super().__enter__()

    def __exit__(self, *exc: Any) -> Any:
        return False if self._in_process else super().__exit__(*exc)


_factory_lock = threading.Lock()
_factory_users = 0
_stock_factory: Any = None


@contextmanager
def _in_process_workers() -> Iterator[None]:
    """gokart.build names its factory as a module global: swap in one making :class:`_InProcessWorker` while a
    kannon build runs (counted, so overlapping builds on several threads put the original back once)."""
    global _factory_users, _stock_factory
    module = sys.modules["gokart.build"]  # ``gokart.build`` the attribute is the function
    if not hasattr(module, "WorkerSchedulerFactory"):  # another gokart: leave it as it is
        yield
        return
    with _factory_lock:
        if _factory_users == 0:
            _stock_factory = module.WorkerSchedulerFactory
            setattr(module, "WorkerSchedulerFactory", _in_process_factory(_stock_factory))  # noqa: B010
        _factory_users += 1
    try:
        yield
    finally:
        with _factory_lock:
            _factory_users -= 1
            if _factory_users == 0:
                setattr(module, "WorkerSchedulerFactory", _stock_factory)  # noqa: B010


def _in_process_factory(stock: Any) -> Any:
    class Factory(stock):  # type: ignore[misc]
        def create_worker(self, scheduler: Any, worker_processes: int, assistant: bool = False) -> Any:
            return _InProcessWorker(scheduler=scheduler, worker_processes=worker_processes, assistant=assistant)

    return Factory


def _gokart_build(task: gokart.TaskOnKart[Any]) -> None:
    try:
        # reset_register=False keeps user classes registered (dynamic deps, later lookups); NOTSET keeps
        # gokart from calling logging.disable() on the whole process.
        with _in_process_workers():
            gokart.build(task, return_value=False, reset_register=False, log_level=logging.NOTSET)
    except GokartBuildError as e:
        if _collected is not None:
            for uid, excs in e.raised_exceptions.items():
                _collected.setdefault(uid, []).extend(excs)
        causes = [exc for excs in e.raised_exceptions.values() for exc in excs]
        cause = causes[0] if causes else None
        text = _exception_text(cause) if cause else "an error (see its log)"
        raise TaskRaisedError(f"{type(task).__name__} raised {text}", cause) from e
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # requires()/output() errors escape gokart.build raw
        if _collected is not None:
            _collected.setdefault(task.make_unique_id(), []).append(e)
        raise TaskRaisedError(f"{type(task).__name__} raised {_exception_text(e)}", e) from e



def _luigi_build(task: luigi.Task) -> None:
    ok = luigi.build([task], local_scheduler=True, log_level="WARNING")
    if not ok and not (isinstance(task, luigi.ExternalTask) or type(task).run is luigi.Task.run):
        raise TaskRaisedError(f"{type(task).__name__} failed (see its log above)")
