"""``follow_logs`` through the Python API: printing each child's output lines when no console observer does."""

from __future__ import annotations

import sys
import threading
from collections.abc import Sequence
from typing import IO

from kannon.hookspecs import hookimpl
from kannon.progress.text import clean


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
    # an observer that is a ProgressObserver has imported its module (and rich): no need to import them here
    console = sys.modules.get("kannon.progress.console")
    progress_observer = getattr(console, "ProgressObserver", None)
    for obs in observers:
        if isinstance(obs, LogPrinter) or (
            progress_observer is not None and isinstance(obs, progress_observer) and obs.follow_logs
        ):
            return []
    return [LogPrinter()]
