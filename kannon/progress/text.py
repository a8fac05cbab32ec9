"""How progress output names things: a task, where it ran, a duration; and the control-character scrubbing all of
it goes through (the live view, the plain lines and the summary share these, so a task reads the same everywhere)."""

from __future__ import annotations

import re

from kannon.planview import one_line
from kannon.result import Placement, TaskRecord

_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)")


def clean(text: str) -> str:
    """One printable line: ANSI escape sequences dropped, other control characters shown as spaces.

    Task params and child output are not ours; raw escapes could rewrite the terminal or the live view.
    """
    return one_line(_ANSI.sub("", text))


def fmt_duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 60:
        return f"{seconds:.1f}s"
    m, s = divmod(round(seconds), 60)
    if m < 60:
        return f"{m}m{s:02d}s"
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m"


def describe(rec: TaskRecord) -> str:
    """``TaskC(param=c0) [ab12cd34]`` — the same short form in every line kannon prints about a task."""
    name = f"{rec.family}({rec.params})" if rec.params else rec.family
    return clean(f"{name} [{rec.task_id[:8]}]")


def task_text(rec: TaskRecord, tasks: dict[str, TaskRecord]) -> str:
    """describe(), plus who yielded it for a task planned during the run (dynamic dependency)."""
    if rec.requested_by is None:
        return describe(rec)
    by = tasks.get(rec.requested_by)
    return describe(rec) + " yielded by " + (describe(by) if by is not None else rec.requested_by[:8])


def where_text(rec: TaskRecord, backend: str | None) -> str:
    last = rec.last
    if rec.placement == Placement.MASTER:
        place = "master"
    elif rec.placement == Placement.COMPLETE:
        return "complete"
    else:
        place = backend or "bullet"
    if last is not None and last.where and last.where != place:
        place += f" ({clean(last.where)})"
    return place
