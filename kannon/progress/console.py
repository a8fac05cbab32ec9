"""The console observer: a rich live view of the run on a terminal (with ``--follow-logs`` output scrolling above
it), one greppable line per state change elsewhere, and the summary at the end."""

from __future__ import annotations

import threading
import time
import zlib
from collections.abc import Callable, Sequence
from typing import IO, TYPE_CHECKING

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kannon.events import Event
from kannon.hookspecs import hookimpl
from kannon.progress.summary import summary_renderable, summary_text
from kannon.progress.text import clean, describe, fmt_duration, task_text, where_text
from kannon.report.model import RunModel
from kannon.result import BuildResult, Placement, Status, TaskRecord

if TYPE_CHECKING:
    from kannon.backends.base import RunInfo

# --follow-logs prefixes: a colour per task label (by its crc32), so interleaved lines tell tasks apart.
_PREFIX_STYLES = ("cyan", "magenta", "blue", "green", "yellow", "bright_cyan", "bright_magenta", "bright_blue")
_LINE_STYLE = {"failed": "bold red", "retried": "dark_orange", "run_finished": "bold"}
_FRAME_SLACK = 0.8  # see ProgressObserver.live_frame


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
