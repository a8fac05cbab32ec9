"""The observers that write a run down in files: ``--events`` (a JSON line per event) and ``--report`` (HTML)."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from kannon.events import Event, EventLog
from kannon.hookspecs import hookimpl
from kannon.result import BuildResult

if TYPE_CHECKING:
    from kannon.backends.base import RunInfo


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
