"""``kannon.build``: ``gokart.build``'s call and behaviour, with bullets run by an executor.

    value = kannon.build(root)                                  # like gokart.build(root)
    result = kannon.build(root, executor=DockerExecutor(...), return_value=False, retries=2)

Failures raise ``BuildError``, which *is* a ``gokart.build.GokartBuildError`` (existing ``except`` clauses and retry
wrappers keep working) and a ``kannon.KannonBuildError`` (``.result`` has every task's record). Its
``raised_exceptions`` maps unique ids to exceptions as gokart's does: a master task's real exception object; for a
bullet, a ``RemoteError`` (class name, module, message and traceback text, never a pickle) read back from the line the
child printed (kannon.child._remote_error).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import luigi
from gokart.build import GokartBuildError

from kannon import exitcodes, runner
from kannon.result import BuildResult, KannonBuildError, Placement, TaskRecord, format_failures

#: gokart.build keyword arguments kannon.build accepts, and what becomes of each
GOKART_KWARGS = {
    "return_value": "honoured: True returns the root's loaded output, False the BuildResult",
    "reset_register": "accepted, no effect: kannon unregisters only task classes whose name is ambiguous",
    "log_level": "accepted, no effect: kannon never disables logging process-wide; children log to their log files",
    "task_lock_exception_max_tries": "accepted, no effect (redis task locks are gokart's own, in each process)",
    "task_lock_exception_max_wait_seconds": "accepted, no effect",
    "task_dump_config": "accepted, no effect: `kannon plan` shows the DAG",
    "workers": "luigi's: becomes max_parallel (bullets at once) unless max_parallel is given",
    "local_scheduler": "luigi's: must be True (kannon schedules itself)",
    "detailed_summary": "luigi's: accepted, no effect (the BuildResult is the summary)",
}


class RemoteError(Exception):
    """An exception raised in a child, as text: ``type_name``, ``module``, ``message``, ``traceback_text``."""

    def __init__(self, type_name: str, message: str, traceback_text: str = "", module: str = "",
                 task_id: str = "") -> None:  # fmt: skip
        self.type_name, self.message, self.traceback_text, self.module, self.task_id = (
            type_name, message, traceback_text, module, task_id)  # fmt: skip
        super().__init__(f"{type_name}: {message}" if message else type_name)


class BuildError(KannonBuildError, GokartBuildError):  # type: ignore[misc]  # gokart is untyped
    """A kannon build failed: a ``GokartBuildError`` with ``raised_exceptions`` and a ``KannonBuildError`` with
    ``result``."""

    def __init__(self, result: BuildResult, raised_exceptions: dict[str, list[Exception]]) -> None:
        # not KannonBuildError.__init__: its super().__init__(message) would reach GokartBuildError's signature
        self.result = result
        GokartBuildError.__init__(self, format_failures(result), raised_exceptions)


def build(task: luigi.Task, executor: Any = None, return_value: bool = True, **options: Any) -> Any:
    """Run ``task`` as ``gokart.build`` would, bullets through ``executor`` (default: the local backend).

    ``options``: the ``gokart.build`` keyword arguments in ``GOKART_KWARGS`` and every ``kannon.Kannon`` argument
    (max_parallel, retries, keep_going, env_to_inherit, sys_path, follow_logs, ...)."""
    from kannon.scheduler import Kannon

    for name in ("reset_register", "log_level", "task_lock_exception_max_tries",
                 "task_lock_exception_max_wait_seconds", "task_dump_config", "detailed_summary"):  # fmt: skip
        options.pop(name, None)
    if not options.pop("local_scheduler", True):
        raise TypeError("kannon.build: local_scheduler=False is not supported (kannon schedules the tasks itself)")
    workers = options.pop("workers", None)
    if workers is not None:
        options.setdefault("max_parallel", workers)
    try:
        kannon = Kannon(executor=executor, **options)
    except TypeError as e:
        raise TypeError(f"kannon.build: {e}. Accepted: kannon.Kannon's arguments and these gokart.build ones: "
                        f"{', '.join(GOKART_KWARGS)}") from e  # fmt: skip
    with runner.collect_exceptions() as collected:
        try:
            result = kannon.build(task)
        except KannonBuildError as e:
            raise BuildError(e.result, raised_exceptions(e.result, collected)) from e
    if not return_value:
        return result
    from gokart.build import _get_output

    return _get_output(task)


def _log_lines(result: BuildResult, rec: TaskRecord, max_bytes: int = 64 * 1024) -> list[str]:
    """The end of the task's last attempt log in the run directory (``logs/[<invocation id>/]<family>-<uid[:12]>-
    <attempt>.log``): log tails may be shaped for reading, the file keeps every line."""
    last = rec.last
    if result.run_dir is None or last is None:
        return []
    name = f"{rec.family}-{rec.task_id[:12]}-{last.number}.log"
    found = sorted(Path(result.run_dir, "logs").glob(f"**/{name}"), key=lambda p: p.stat().st_mtime)
    if not found:
        return []
    with found[-1].open("rb") as f:
        f.seek(0, 2)
        f.seek(max(0, f.tell() - max_bytes))
        return f.read().decode("utf-8", "replace").splitlines()


def raised_exceptions(result: BuildResult,
                      master: Mapping[str, list[BaseException]] | None = None) -> dict[str, list[Exception]]:
    """``{unique id: [exception]}`` for every failed task, as ``GokartBuildError.raised_exceptions``."""
    out: dict[str, list[Exception]] = {}
    for rec in result.failed:
        caught = [e for e in (master or {}).get(rec.task_id, ()) if isinstance(e, Exception)]
        if caught:
            out[rec.task_id] = caught
        else:
            out[rec.task_id] = [remote_error(rec, result)]
    return out


def remote_error(rec: TaskRecord, result: BuildResult | None = None) -> RemoteError:
    """The exception a failed task's child reported (in its log tail, else its log file), else its failure class
    and reason."""
    last = rec.last
    lines = list(last.log_tail if last is not None else ())
    if result is not None and not any(exitcodes.REMOTE_ERROR_PREFIX in ln for ln in lines):
        try:
            lines = _log_lines(result, rec)
        except OSError:
            lines = []
    for line in reversed(lines):
        at = line.find(exitcodes.REMOTE_ERROR_PREFIX)
        if at < 0:
            continue
        try:
            doc = json.loads(line[at + len(exitcodes.REMOTE_ERROR_PREFIX):])
            return RemoteError(str(doc["type"]), str(doc["message"]), str(doc.get("traceback", "")),
                               str(doc.get("module", "")), rec.task_id)  # fmt: skip
        except (ValueError, KeyError, TypeError):
            logging.getLogger(__name__).debug("unreadable remote error line for %s", rec.task_id)
    klass = (last.failure_class if last is not None else None) or "TaskFailed"
    where = "master" if rec.placement is Placement.MASTER else "child"
    return RemoteError(klass, rec.reason or (last.reason if last else None) or f"failed in the {where}",
                       task_id=rec.task_id)  # fmt: skip


__all__ = ["GOKART_KWARGS", "BuildError", "RemoteError", "build", "raised_exceptions", "remote_error"]
