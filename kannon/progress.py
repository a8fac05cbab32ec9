"""Watching a run: the live console display, plain progress lines for CI logs, the final summary, the event log.

Both observers are plain objects with ``@kannon.hookimpl`` methods; the core registers them with
``plugin_manager().register(obj)`` for the duration of a build:

* :class:`ProgressObserver` — on a terminal, a rich live view (counts, running tasks with where and for how long,
  retries) with ``--follow-logs`` output scrolling above it; elsewhere one greppable line per state change. At
  the end, a summary table of every task, failures first with their reason and log tail.
* :class:`EventLogObserver` — ``--events FILE``: every event as one JSON line (schema in :mod:`kannon.events`).
"""

from __future__ import annotations

import json
import re
import sys
import threading
import time
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kannon import logtail, usage
from kannon.events import Event, EventLog
from kannon.hookspecs import hookimpl
from kannon.planview import one_line
from kannon.report.model import RunModel
from kannon.result import BuildResult, Placement, Status, TaskRecord

if TYPE_CHECKING:
    from kannon.backends.base import RunInfo

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
_PREFIX_STYLES = ("cyan", "magenta", "blue", "green", "yellow", "bright_cyan", "bright_magenta", "bright_blue")
_LINE_STYLE = {"failed": "bold red", "retried": "dark_orange", "run_finished": "bold"}
_FRAME_SLACK = 0.8  # see ProgressObserver.live_frame
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


# -- the summary ------------------------------------------------------------------------------------------------
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


# -- the observers ----------------------------------------------------------------------------------------------
class ProgressObserver:
    """Live progress on a terminal, plain lines elsewhere, and the final summary.

    ``console`` defaults to stderr so stdout stays clean for whatever the user pipes. ``live`` defaults to
    whether the console is an interactive terminal. ``clock`` is only for tests of the elapsed-time display,
    ``frame_clock`` (monotonic seconds) for tests of the redraw rate.
    Call :meth:`close` (or use it as a context manager) if the build can end without ``kannon_run_end``.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        live: bool | None = None,
        follow_logs: bool = False,
        max_running_rows: int = 12,
        refresh_per_second: float = 4,
        max_summary_rows: int | None = 200,
        summary: bool = True,
        clock: Callable[[], float] = time.time,
        notes: Sequence[str] = (),
        frame_clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.live_mode = (self.console.is_terminal and not self.console.is_dumb_terminal) if live is None else live
        self.follow_logs = follow_logs
        self.max_running_rows = max_running_rows
        self.refresh_per_second = refresh_per_second
        self.max_summary_rows = max_summary_rows
        self.show_summary = summary
        self.clock = clock
        self.frame_clock = frame_clock
        # The last live view built and when (frame_clock): rebuilt at most every _FRAME_SLACK / refresh_per_second s.
        self._frame: RenderableType | None = None
        self._frame_at = 0.0
        self.frames_built = 0
        self.notes = [clean(n) for n in notes]  # header lines after "run ... started" (e.g. how hints are enforced)
        self.model = RunModel()
        # Two locks, always taken in this order: _out (serialises output and the live view's start/stop), then
        # rich's own Live lock, then _lock (the model). rich's refresh thread holds its Live lock while calling
        # render_live, so the model lock must never be held while calling into rich.
        self._out = threading.RLock()
        self._lock = threading.RLock()
        self._live: Live | None = None
        self._announced_run = False
        self._announced_plan = False
        self._closed = False
        # The "run ... finished" line, held back while a summary is to follow: the summary's headline states the
        # same final state, so printing both would say it twice. Printed by close() if no summary ever comes.
        self._final_line: tuple[str, str] | None = None
        #: the latest set_status_message / set_progress_percentage of each task ("status" events), for the live view
        self.statuses: dict[str, tuple[str | None, float | None]] = {}

    # pluggy hooks ----------------------------------------------------------------------------------------
    @hookimpl
    def kannon_run_start(self, run: RunInfo, backend: str) -> None:
        with self._out:
            with self._lock:
                if self._closed:  # the same observer watching another build: start afresh
                    self.model = RunModel()
                    self._announced_run = self._announced_plan = self._closed = False
                    self._final_line = None
                    self._frame = None
                self.model.run_id = self.model.run_id or run.run_id
                self.model.backend = self.model.backend or backend
                lines = self._announce_run()
            self._emit(lines)
            self._start_live()

    @hookimpl
    def kannon_event(self, event: Event) -> None:
        with self._out:
            with self._lock:
                rec = self.model.apply(event)
                if event.kind == "launched" and event.task_id is not None:
                    self.statuses.pop(event.task_id, None)  # a new attempt starts without the last one's status
                elif event.kind == "status" and event.task_id is not None:
                    message, pct = self.statuses.get(event.task_id, (None, None))
                    self.statuses[event.task_id] = (
                        event.status_message if event.status_message is not None else message,
                        event.progress_percentage if event.progress_percentage is not None else pct,
                    )
                lines: list[tuple[str, str]] = []
                if event.kind == "run_started":
                    lines += self._announce_run()
                elif event.kind not in ("planned", "skipped_complete"):
                    lines += self._announce_plan()
                    line = self._plain_line(event, rec)
                    if line and event.kind == "run_finished" and self.show_summary:
                        self._final_line = (line, _LINE_STYLE["run_finished"])
                    # On a terminal the live view shows progress; only what must stay in the scrollback is printed.
                    elif line and (not self.live_mode or event.kind in ("failed", "retried", "run_finished")):
                        lines.append((line, _LINE_STYLE.get(event.kind, "")))
            self._emit(lines)
            if event.kind == "run_started":
                self._start_live()
            # no redraw per event: rich's refresh thread redraws a few times a second, however busy the run is, and
            # the lines printed above the view reuse the last frame (live_frame)

    @hookimpl
    def kannon_run_end(self, run: RunInfo, result: BuildResult) -> None:
        with self._out:
            self._stop_live()
            self._final_line = None  # the summary's headline says it
            if self.show_summary:
                if self.live_mode:
                    self.console.print(summary_renderable(result, max_rows=self.max_summary_rows))
                else:
                    self._write(summary_text(result, max_rows=self.max_summary_rows), end="")
            self._closed = True

    @hookimpl
    def kannon_task_log(self, task_id: str, label: str, line: str) -> None:
        self.log_line(label, line)

    # log lines from the core (``--follow-logs``) -----------------------------------------------------------
    def log_line(self, task_label: str, line: str) -> None:
        """Print one line of a child's output as ``[label] line``; on a terminal it scrolls above the live view."""
        if not self.follow_logs:
            return
        label, text = clean(task_label), clean(line.rstrip("\r\n"))
        with self._out:
            if self.live_mode:
                style = _PREFIX_STYLES[zlib.crc32(label.encode()) % len(_PREFIX_STYLES)]
                self.console.print(Text.assemble((f"[{label}] ", style), text), soft_wrap=True, highlight=False)
            else:
                self._write(f"[{label}] {text}")

    def close(self) -> None:
        """Stop the live view (idempotent); for builds that end by an exception before ``kannon_run_end``."""
        with self._out:
            self._stop_live()
            final, self._final_line = self._final_line, None
            if final is not None:  # the run finished but no summary followed: its last state is still said once
                self._emit([final])
            self._closed = True

    def __enter__(self) -> ProgressObserver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # plain lines ---------------------------------------------------------------------------------------------
    def _write(self, text: str, end: str = "\n") -> None:
        # Plain mode goes straight to the file: no rich markup parsing of task params, no wrapping of long lines.
        f: IO[str] = self.console.file
        f.write(text + end)
        f.flush()

    def _emit(self, lines: list[tuple[str, str]]) -> None:
        for text, style in lines:
            if self.live_mode:
                self.console.print(Text(text, style=style), soft_wrap=True, highlight=False)
            else:
                self._write(text)

    def _announce_run(self) -> list[tuple[str, str]]:
        if self._announced_run or self.model.run_id is None:
            return []
        self._announced_run = True
        head = f"kannon: run {clean(self.model.run_id)} started on {clean(self.model.backend or '?')}"
        return [(head, "bold"), *((f"kannon: {note}", "dim") for note in self.notes)]

    def _announce_plan(self) -> list[tuple[str, str]]:
        if self._announced_plan:
            return []
        self._announced_plan = True
        tasks = self.model.tasks.values()
        by = {p: sum(1 for t in tasks if t.placement == p) for p in Placement}
        line = (
            f"kannon: planned {len(self.model.tasks)} task(s): {by[Placement.BULLET]} bullet, "
            f"{by[Placement.MASTER]} master, {by[Placement.COMPLETE]} already complete"
        )
        return [(line, "dim")]

    def _done_counter(self) -> str:
        counts = self.model.counts()
        done = counts.get("succeeded", 0) + counts.get("complete", 0)
        return f"[{done}/{len(self.model.tasks)} done]"

    def _plain_line(self, e: Event, rec: TaskRecord | None) -> str | None:
        if e.kind == "run_finished":
            counts = ", ".join(
                f"{n} {k.replace('_', ' ')}" for k, n in sorted((e.counts or self.model.counts()).items())
            )
            start = self.model.started_at if self.model.started_at is not None else self.model.first_time
            took = f" in {fmt_duration(e.time - start)}" if start is not None else ""
            return f"kannon: run {clean(e.run_id)} finished: {clean(e.reason or '?')}{took} ({counts})"
        if rec is None:
            return None
        name = describe(rec)
        attempt = f"attempt {e.attempt}" if e.attempt is not None else ""
        where = where_text(rec, self.model.backend)
        code = f" (exit code {e.exit_code})" if e.exit_code is not None else ""
        reason = clean(e.reason or e.failure_class or "no reason given")
        if e.kind == "launched":
            if rec.placement == Placement.MASTER:
                return None  # a master task starts right away; its "started" line says the same
            return f"kannon: launched {name} {attempt} on {clean(e.backend or self.model.backend or '?')}"
        if e.kind == "started":
            return f"kannon: started {name} {attempt} on {where}"
        if e.kind == "succeeded":
            took = f" in {fmt_duration(rec.last.duration)}" if rec.last and rec.last.duration is not None else ""
            return f"kannon: succeeded {name} {attempt} on {where}{took} {self._done_counter()}"
        if e.kind == "retried":
            return f"kannon: retrying {name}: {attempt} failed on {where}: {reason}{code}"
        if e.kind == "failed":
            return f"kannon: FAILED {name} {attempt} on {where}: {reason}{code} {self._done_counter()}"
        if e.kind == "cancelled":
            return f"kannon: cancelled {name}" + (f": {clean(e.reason)}" if e.reason else "")
        if e.kind == "upstream_failed":
            return f"kannon: not run {name}: {clean(e.reason or 'something it needs failed')}"
        if e.kind == "status":
            return f"kannon: status {name}: {self.status_text(rec.task_id)}"
        if e.kind == "admission_wait":
            return f"kannon: {name} {attempt} waits for admission" + (f": {clean(e.reason)}" if e.reason else "")
        if e.kind == "admitted":
            return f"kannon: {name} {attempt} admitted after {fmt_duration(e.waited)}"
        if e.kind == "requested" and e.requested_by:
            by = self.model.tasks.get(e.requested_by)
            return f"kannon: {describe(by) if by else e.requested_by[:8]} yielded {name} (it runs again after)"
        return None

    def status_text(self, task_id: str) -> str:
        """``40% loading rows`` — a task's latest status message and progress percentage ("" if it set none)."""
        message, pct = self.statuses.get(task_id, (None, None))
        parts = [f"{pct:g}%" if pct is not None else "", clean(message) if message else ""]
        return " ".join(p for p in parts if p)

    # the live view -----------------------------------------------------------------------------------------
    def _start_live(self) -> None:
        if not self.live_mode or self._live is not None or self._closed:
            return
        self._live = Live(
            console=self.console,
            get_renderable=self.live_frame,
            refresh_per_second=self.refresh_per_second,
            transient=True,
            redirect_stdout=True,
            redirect_stderr=True,
        )
        self._live.start()

    def _stop_live(self) -> None:
        if self._live is not None:
            live, self._live = self._live, None
            live.stop()

    def live_frame(self) -> RenderableType:
        """The live view as rich draws it: :meth:`render_live` at most ``refresh_per_second / 0.8`` times a second.

        rich redraws the view on its timer and also under every line printed above it (failures, retries,
        ``--follow-logs`` output): without this a burst of such lines would rebuild it, walking every task, per line.
        The 0.8 lets rich's timer, which may fire a little early, still get a fresh frame each tick.
        """
        with self._lock:
            now = self.frame_clock()
            if self._frame is not None and 0.0 <= now - self._frame_at < _FRAME_SLACK / self.refresh_per_second:
                return self._frame
            self._frame, self._frame_at = self.render_live(), now
            self.frames_built += 1
            return self._frame

    def render_live(self) -> RenderableType:
        """What the live view shows right now (also called by rich's refresh thread, hence the lock)."""
        with self._lock:
            now = self.clock()
            counts = self.model.counts()
            done = counts.get("succeeded", 0) + counts.get("complete", 0)
            head = Text.assemble(
                ("kannon ", "bold"),
                (clean(self.model.run_id or ""), "dim"),
                f" on {clean(self.model.backend or '?')}",
                f"  {fmt_duration(now - self.model.started_at) if self.model.started_at else ''}  ",
                (f"{done}/{len(self.model.tasks)} done", "green"),
                "  ",
                (f"{counts.get('running', 0)} running", "yellow"),
                (f" ({self.model.admission_waiting} waiting for admission)" if self.model.admission_waiting else "",
                 "grey62"),
                "  ",
                (f"{counts.get('pending', 0)} pending", "grey62"),
                (f" ({self.model.queued} queued for a slot)" if self.model.queued else "", "grey62"),
                "  ",
                (f"{counts.get('failed', 0)} failed", "bold red" if counts.get("failed") else "grey62"),
            )
            extra = []
            if counts.get("upstream_failed"):
                extra.append(f"{counts['upstream_failed']} not run (upstream failed)")
            if counts.get("cancelled"):
                extra.append(f"{counts['cancelled']} cancelled")
            if self.model.retries:
                extra.append(f"{self.model.retries} retr{'y' if self.model.retries == 1 else 'ies'}")
            if extra:
                head.append("  " + ", ".join(extra), style="dark_orange")
            running = [t for t in self.model.tasks.values() if t.status == Status.RUNNING]
            if not running:
                return head
            # one line per task whatever the terminal width: the live view must not grow and jump
            table = Table(box=None, pad_edge=False, show_header=True, header_style="dim")
            table.add_column("running", no_wrap=True, overflow="ellipsis", ratio=1)
            table.add_column("attempt", justify="right", no_wrap=True)
            table.add_column("where", no_wrap=True, overflow="ellipsis", max_width=32)
            table.add_column("state", no_wrap=True)
            table.add_column("for", justify="right", no_wrap=True)
            with_status = any(t.task_id in self.statuses for t in running)  # the column only when a task has one
            if with_status:
                table.add_column("status", no_wrap=True, overflow="ellipsis", max_width=40)
            running.sort(key=lambda t: t.last.launched_at if t.last else 0.0)
            for rec in running[: self.max_running_rows]:
                a = rec.last
                if a is None:
                    continue
                state = "running" if a.started_at is not None else "waiting"
                since = a.started_at if a.started_at is not None else a.launched_at
                cells: list[RenderableType] = [
                    Text(task_text(rec, self.model.tasks)),
                    str(a.number),
                    Text(where_text(rec, self.model.backend)),
                    Text(state, style="yellow" if state == "running" else "grey62"),
                    fmt_duration(max(0.0, now - since)),
                ]
                if with_status:
                    cells.append(Text(self.status_text(rec.task_id), style="cyan"))
                table.add_row(*cells)
            parts: list[RenderableType] = [head, table]
            if len(running) > self.max_running_rows:
                parts.append(Text(f"... and {len(running) - self.max_running_rows} more running", style="dim"))
            return Group(*parts)


class LogPrinter:
    """Prints every line a child writes as ``[Family 1a2b3c4d] line`` (stderr by default).

    ``Kannon(follow_logs=True)`` through the Python API registers one (see :func:`log_printers`); the CLI's
    ProgressObserver prints the lines itself, above its live view.
    """

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream
        self._lock = threading.Lock()

    @hookimpl
    def kannon_task_log(self, task_id: str, label: str, line: str) -> None:
        stream = self.stream or sys.stderr  # looked up per line: pytest and users may swap sys.stderr
        with self._lock:
            stream.write(f"[{clean(label)}] {clean(line.rstrip(chr(13) + chr(10)))}\n")
            stream.flush()


def log_printers(observers: Sequence[object], follow_logs: bool) -> list[object]:
    """What ``Kannon.build`` registers besides ``observers`` so that ``follow_logs=True`` prints each child's
    output: a LogPrinter, unless one of ``observers`` already prints log lines (a ProgressObserver following logs,
    or a LogPrinter)."""
    if not follow_logs:
        return []
    for obs in observers:
        if isinstance(obs, LogPrinter) or (isinstance(obs, ProgressObserver) and obs.follow_logs):
            return []
    return [LogPrinter()]


class EventLogObserver:
    """``--events FILE``: appends every event as a JSON line, flushed per line (a killed run leaves a valid log).

    The file is opened on the first event and closed at the end of the run; an event arriving after that (a
    late cancellation) reopens it rather than being lost.
    """

    def __init__(self, path: str | Path, context: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.context = dict(context or {})
        self._log: EventLog | None = None
        self._lock = threading.Lock()

    @hookimpl
    def kannon_event(self, event: Event) -> None:
        with self._lock:
            if self._log is None and event.kind == "run_started" and self.context:
                # The run's context (target, command line, ...) rides on run_started as an extra key (readers
                # ignore unknown keys; `kannon report` puts it in the report's header).
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with self.path.open("a", encoding="utf-8") as f:
                    f.write(json.dumps({**event.to_dict(), "context": self.context}, ensure_ascii=False,
                                       sort_keys=True) + "\n")  # fmt: skip
                self._log = EventLog(self.path)
                return
            if self._log is None:
                self._log = EventLog(self.path)
            self._log.write(event)

    @hookimpl
    def kannon_run_end(self, run: RunInfo, result: BuildResult) -> None:
        self.close()

    def close(self) -> None:
        with self._lock:
            if self._log is not None:
                self._log.close()
                self._log = None


_DID_SOMETHING = frozenset({"launched", "failed", "cancelled", "upstream_failed"})


class ReportObserver:
    """``--report FILE.html``: keeps the run's events and writes the HTML report when the run ends.

    The report is written from exactly the events an event log would hold, so ``kannon report EVENTS.jsonl``
    gives the same page. :meth:`close` writes whatever was seen if the run ended without ``kannon_run_end``.
    """

    def __init__(self, path: str | Path, context: Mapping[str, str] | None = None) -> None:
        self.path = Path(path)
        self.context = dict(context or {})
        self.events: list[Event] = []
        self.written: Path | None = None
        #: the run had nothing to do, so the report of the last run that did something was left in place
        self.kept_previous = False
        self._lock = threading.Lock()

    @hookimpl
    def kannon_run_start(self, run: RunInfo, backend: str) -> None:
        with self._lock:
            if self.written is not None:  # reused for another build: that build gets its own report
                self.events.clear()
                self.written = None

    @hookimpl
    def kannon_event(self, event: Event) -> None:
        with self._lock:
            self.events.append(event)

    @hookimpl
    def kannon_run_end(self, run: RunInfo, result: BuildResult) -> None:
        self.write()

    def write(self) -> Path:
        from kannon.report import write_report  # reads the page template: only when a report is wanted

        with self._lock:
            events = list(self.events)
        if self.path.is_file() and not any(e.kind in _DID_SOMETHING for e in events):
            self.kept_previous = True  # an empty report would replace the one worth reading
            self.written = self.path
            return self.path
        self.written = write_report(events, self.path, context=self.context)
        return self.written

    def close(self) -> None:
        if self.written is None and self.events:
            self.write()
