"""The summary printed when a run ends: a table of every task (failures first, with their reason) and the failures'
log tails, as plain text for CI logs or as a rich renderable for a terminal."""

from __future__ import annotations

from pathlib import Path

from rich import box
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from kannon import logtail, usage
from kannon.progress.text import clean, describe, fmt_duration, task_text, where_text
from kannon.result import BuildResult, Status, TaskRecord

# Summary order: what needs attention first.
STATUS_ORDER = (
    Status.FAILED,
    Status.UPSTREAM_FAILED,
    Status.CANCELLED,
    Status.RUNNING,
    Status.PENDING,
    Status.SUCCEEDED,
    Status.COMPLETE,
)
_STATUS_STYLE = {
    Status.FAILED: "bold red",
    Status.UPSTREAM_FAILED: "dark_orange",
    Status.CANCELLED: "grey50",
    Status.RUNNING: "yellow",
    Status.PENDING: "grey62",
    Status.SUCCEEDED: "green",
    Status.COMPLETE: "grey50",
}


def _ordered(result: BuildResult) -> list[TaskRecord]:
    """Failures first; within an outcome, in the order the tasks were launched (a readable chronology)."""
    rank = {s: i for i, s in enumerate(STATUS_ORDER)}

    def key(t: TaskRecord) -> tuple[int, float]:
        return rank.get(t.status, len(rank)), t.attempts[0].launched_at if t.attempts else float("inf")

    return sorted(result.tasks.values(), key=key)


def _reason(rec: TaskRecord) -> str:
    last = rec.last
    reason = rec.reason or (last.reason if last is not None and rec.status != Status.SUCCEEDED else None) or ""
    if rec.status == Status.FAILED and last is not None and last.exit_code is not None:
        reason += f" (exit code {last.exit_code})"
    waited = sum(a.admission_wait for a in rec.attempts)
    if waited > 0:  # an admission queue (Kueue) held it: not a stuck Job, and the next run may wait as long
        why = next((a.admission_reason for a in reversed(rec.attempts) if a.admission_reason), None)
        reason += f"{'; ' if reason else ''}waited {fmt_duration(waited)} for admission" + (f" ({why})" if why else "")
    if rec.memory_grown:  # said on success too: the next run should ask for this much (kannon hints suggest)
        reason += f"{'; ' if reason else ''}memory grown {' -> '.join(rec.memory_grown)} (OOM growth)"
    return clean(reason.strip())


def _rows(result: BuildResult, max_rows: int | None) -> tuple[list[TaskRecord], int]:
    """Rows to show: every task that needs attention, then the rest up to ``max_rows``; and how many were left."""
    rows = _ordered(result)
    if max_rows is None or len(rows) <= max_rows:
        return rows, 0
    attention = [r for r in rows if r.status not in (Status.SUCCEEDED, Status.COMPLETE)]
    rest = [r for r in rows if r.status in (Status.SUCCEEDED, Status.COMPLETE)]
    keep = max(0, max_rows - len(attention))
    return attention + rest[:keep], len(rest) - keep


def _headline(result: BuildResult) -> str:
    counts = result.counts()
    parts = [f"{counts[s.value]} {s.value.replace('_', ' ')}" for s in STATUS_ORDER if counts.get(s.value)]
    outcome = "cancelled" if result.cancelled else ("ok" if result.ok else "FAILED")
    wall = f" in {fmt_duration(result.wall_time)}" if result.wall_time is not None else ""
    return f"kannon: run {result.run_id} {outcome}{wall} on {result.backend}: {', '.join(parts) or 'no tasks'}"


def _failure_details(result: BuildResult, tail: int) -> list[str]:
    lines: list[str] = []
    for rec in result.failed:
        last = rec.last
        lines.append(f"FAILED {describe(rec)} on {where_text(rec, result.backend)}, {len(rec.attempts)} attempt(s)")
        lines.append(f"  reason: {_reason(rec) or 'unknown'}")
        for a in rec.attempts[:-1]:
            lines.append(f"  attempt {a.number} failed before: {clean(a.reason or a.failure_class or 'unknown')}")
        log = logtail.shape(last.log_tail)[-tail:] if last is not None else ()
        if log:
            lines.append("  log:")
            lines.extend("    | " + clean(line) for line in log)
        path = full_log(result, rec)
        if path is not None:
            lines.append(f"  full log: {path}")
    return lines


def full_log(result: BuildResult, rec: TaskRecord) -> Path | None:
    """The full log of a task's last attempt, if this machine has it (the run directory is local)."""
    if not result.run_dir or rec.last is None:
        return None
    return logtail.find_logs(result.run_dir, rec.family, rec.task_id).get(rec.last.number)


def summary_text(result: BuildResult, *, max_rows: int | None = 200, tail: int = 20) -> str:
    """The final summary as plain aligned text (CI logs): a headline, a table of tasks, then failure details."""
    rows, hidden = _rows(result, max_rows)
    header: tuple[str, ...] = ("OUTCOME", "TASK", "WHERE", "ATTEMPTS", "DURATION", "REASON")
    cells: list[tuple[str, ...]] = [
        (
            r.status.value,
            task_text(r, result.tasks),
            where_text(r, result.backend),
            str(len(r.attempts)),
            fmt_duration(r.duration),
            _reason(r),
        )
        for r in rows
    ]
    if any(r.usage is not None for r in rows):  # requested against used (issue 17), before the reason
        header = (*header[:5], "USED", header[5])
        cells = [(*c[:5], usage.summary_text(r.usage, r.requested_resources), c[5])
                 for c, r in zip(cells, rows, strict=True)]  # fmt: skip
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    lines = [_headline(result)]

    def fmt(row: tuple[str, ...]) -> str:
        return "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()

    lines.append(fmt(header))
    lines.extend(fmt(c) for c in cells)
    if hidden:
        lines.append(f"... and {hidden} more succeeded/complete task(s) (see --events / --report for all)")
    details = _failure_details(result, tail)
    if details:
        lines.append("")
        lines.extend(details)
    return "\n".join(lines) + "\n"


def summary_renderable(result: BuildResult, *, max_rows: int | None = 200, tail: int = 20) -> RenderableType:
    """The final summary for a terminal: a rich Table, then failure details."""
    rows, hidden = _rows(result, max_rows)
    ok = result.ok
    # A light box and short headers: on an 80-column terminal the task and reason columns need the room.
    table = Table(
        title=_headline(result),
        title_style="bold green" if ok else "bold red",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    table.add_column("outcome", no_wrap=True, min_width=9)
    table.add_column("task", overflow="fold", ratio=3)
    table.add_column("where", overflow="fold", ratio=1, max_width=24)
    table.add_column("tries", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    used = any(r.usage is not None for r in rows)
    if used:
        table.add_column("used", overflow="fold", ratio=2)
    table.add_column("reason", overflow="fold", ratio=2)
    for r in rows:
        table.add_row(
            Text(r.status.value.replace("_", " "), style=_STATUS_STYLE.get(r.status, "")),
            Text(task_text(r, result.tasks)),
            Text(where_text(r, result.backend)),
            str(len(r.attempts)),
            fmt_duration(r.duration),
            *([Text(usage.summary_text(r.usage, r.requested_resources))] if used else []),
            Text(_reason(r), style="red" if r.status == Status.FAILED else ""),
        )
    parts: list[RenderableType] = [table]
    if hidden:
        parts.append(Text(f"... and {hidden} more succeeded/complete task(s) (see --events / --report for all)"))
    details = _failure_details(result, tail)
    if details:
        parts.append(Text("\n".join(details), style="red"))
    return Group(*parts)
