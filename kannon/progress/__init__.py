"""Watching a run: the live console display, plain progress lines for CI logs, the final summary, the event log.

The observers are plain objects with ``@kannon.hookimpl`` methods; the core registers them with
``plugin_manager().register(obj)`` for the duration of a build:

* :class:`ProgressObserver` (:mod:`.console`) — on a terminal, a rich live view (counts, running tasks with where
  and for how long, retries) with ``--follow-logs`` output scrolling above it; elsewhere one greppable line per state
  change. At the end, a summary table of every task (:mod:`.summary`), failures first with their reason and log tail.
* :class:`EventLogObserver` (:mod:`.files`) — ``--events FILE``: every event as one JSON line (schema in
  :mod:`kannon.events`); :class:`ReportObserver` — ``--report FILE.html``.
* :class:`LogPrinter` (:mod:`.logs`) — child output for ``Kannon(follow_logs=True)`` without a console observer.

:mod:`.text` holds how all of them name a task, where it ran and how long it took.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kannon import lazy

if TYPE_CHECKING:
    from kannon.progress.console import ProgressObserver
    from kannon.progress.files import EventLogObserver, ReportObserver
    from kannon.progress.logs import LogPrinter, log_printers
    from kannon.progress.summary import STATUS_ORDER, full_log, summary_renderable, summary_text
    from kannon.progress.text import clean, describe, fmt_duration, task_text, where_text

# Loaded on first use (PEP 562): every build imports this package, and only a console view or a summary needs rich
# (~50 ms of import on the quick-start's critical path, ~100 ms on a loaded machine).
_HOME = {"ProgressObserver": "console", "EventLogObserver": "files", "ReportObserver": "files", "LogPrinter": "logs",
         "log_printers": "logs", "STATUS_ORDER": "summary", "full_log": "summary", "summary_renderable": "summary",
         "summary_text": "summary", "clean": "text", "describe": "text", "fmt_duration": "text", "task_text": "text",
         "where_text": "text"}  # fmt: skip

__all__ = [
    "STATUS_ORDER",
    "EventLogObserver",
    "LogPrinter",
    "ProgressObserver",
    "ReportObserver",
    "clean",
    "describe",
    "fmt_duration",
    "full_log",
    "log_printers",
    "summary_renderable",
    "summary_text",
    "task_text",
    "where_text",
]


__getattr__ = lazy.attributes(__name__, _HOME)
