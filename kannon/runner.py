"""Run exactly one task whose upstream is already complete — in the master or in a child.

``gokart.build`` alone would silently recompute a missing upstream task and, by default, unregister user classes
and silence logging process-wide; this wrapper refuses instead and keeps logging alone.
"""

from __future__ import annotations

import logging
from typing import Any

import gokart
import luigi
from gokart.build import GokartBuildError
from luigi.task import flatten


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
    missing = []
    for dep in flatten(task.requires()):
        if getattr(dep, "_rerun_state", False):
            dep._rerun_state = False  # `rerun` belongs to the run that plans the task, not to a consumer
        if not dep.complete():
            missing.append(dep)
    return missing


def run_one(task: luigi.Task) -> None:
    """Run ``task`` in this process; raise one of the errors above if it cannot be confirmed complete."""
    from kannon.handoff import describe

    missing = missing_requirements(task)
    if missing:
        names = ", ".join(describe(t) for t in missing[:5])
        raise UpstreamMissingError(
            f"{describe(task)} cannot run: upstream output missing for {names}. kannon never recomputes upstream "
            "tasks here; rerun the pipeline so the master rebuilds them."
        )
    if isinstance(task, gokart.TaskOnKart):
        _gokart_build(task)
    else:
        _luigi_build(task)
    if not task.complete():
        if isinstance(task, luigi.ExternalTask) or type(task).run is luigi.Task.run:
            outputs = ", ".join(str(getattr(t, "path", t)) for t in flatten(task.output()))
            raise OutputMissingError(f"{describe(task)} is an external input that does not exist: {outputs}")
        raise OutputMissingError(
            f"{describe(task)} finished without error but its output does not exist; run() must write every "
            "target in output()."
        )


def _gokart_build(task: gokart.TaskOnKart[Any]) -> None:
    try:
        # reset_register=False keeps user classes registered (dynamic deps, later lookups); NOTSET keeps
        # gokart from calling logging.disable() on the whole process.
        gokart.build(task, return_value=False, reset_register=False, log_level=logging.NOTSET)
    except GokartBuildError as e:
        causes = [exc for excs in e.raised_exceptions.values() for exc in excs]
        cause = causes[0] if causes else None
        text = f"{type(cause).__name__}: {cause}" if cause else "an error (see its log)"
        raise TaskRaisedError(f"{type(task).__name__} raised {text}", cause) from e
    except (KeyboardInterrupt, SystemExit):
        raise
    except Exception as e:  # requires()/output() errors escape gokart.build raw
        raise TaskRaisedError(f"{type(task).__name__} raised {type(e).__name__}: {e}", e) from e


def _luigi_build(task: luigi.Task) -> None:
    ok = luigi.build([task], local_scheduler=True, log_level="WARNING")
    if not ok and not (isinstance(task, luigi.ExternalTask) or type(task).run is luigi.Task.run):
        raise TaskRaisedError(f"{type(task).__name__} failed (see its log above)")
