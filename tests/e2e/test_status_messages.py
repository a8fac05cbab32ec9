"""A bullet's ``set_status_message`` / ``set_progress_percentage`` reach the master (issue 18 point 7): the live
view shows them while the task runs, the event log holds them as "status" events, and the marked lines that carry
them never show as the task's output. Local backend, both modes, with and without follow_logs."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from typing import Any, Literal

import pytest
from rich.console import Console

import kannon
from kannon.backends.local import LocalExecutor
from kannon.logtail import STATUS_PREFIX, parse_status, shape, status_line
from kannon.progress import EventLogObserver, ProgressObserver
from tests.parity.statustasks import MESSAGE, PERCENTAGE, StatusBullet
from tests.support.procs import wait_until


def rendered(observer: ProgressObserver) -> str:
    console = Console(file=io.StringIO(), width=200, color_system=None)
    console.print(observer.render_live())
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert isinstance(out, str)
    return out


def build_with_status(executor: Any, tmp_path: Path, follow: bool, name: str) -> tuple[ProgressObserver, Path, Any]:
    """Run StatusBullet; while it runs (held by a file), return what the live view showed."""
    events = tmp_path / "events.jsonl"
    gate = tmp_path / "go"
    progress = ProgressObserver(console=Console(file=io.StringIO(), width=200), live=False, summary=False,
                                follow_logs=follow)  # fmt: skip
    task = StatusBullet(name=name, wait_file=str(gate))
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["result"] = kannon.Kannon(executor=executor, follow_logs=follow,
                                          observers=[progress, EventLogObserver(events)]).build(task)  # fmt: skip

    thread = threading.Thread(target=run)
    thread.start()
    try:
        def shown() -> str | None:
            text = rendered(progress)
            return text if MESSAGE in text else None

        live = wait_until(shown, timeout=120, what="the status message in the live view")
    finally:
        gate.touch()
        thread.join(timeout=180)
    assert not thread.is_alive()
    assert outcome["result"].ok
    return progress, events, live


@pytest.mark.parametrize("follow", [False, True])
@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_status_and_progress_reach_the_live_view_and_the_event_log(
    mode: Literal["fork", "spawn"], follow: bool, tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    progress, events, live = build_with_status(LocalExecutor(mode=mode), tmp_path, follow, f"{mode}-{follow}")
    row = next(line for line in live.splitlines() if "StatusBullet" in line)
    assert f"{PERCENTAGE}% {MESSAGE}" in row, live
    status = [json.loads(line) for line in events.read_text().splitlines() if '"kind": "status"' in line]
    assert any(s.get("status_message") == MESSAGE for s in status), status
    assert any(s.get("progress_percentage") == PERCENTAGE for s in status), status
    assert all(s["family"] == "StatusBullet" and s["attempt"] == 1 for s in status), status
    # plain (non-terminal) progress lines say it too, and the marked lines are never shown as output
    printed = progress.console.file.getvalue()  # type: ignore[attr-defined]
    assert "kannon: status StatusBullet" in printed and MESSAGE in printed, printed
    err = capfd.readouterr().err
    assert STATUS_PREFIX not in printed and STATUS_PREFIX not in err, err
    if follow:  # the task's own output still streams
        assert "after the status" in printed, printed


def test_marked_lines_parse_and_never_appear_in_a_failure_tail() -> None:
    line = status_line(message="50 of 100\nrows", percentage=50)
    parsed = parse_status(line)
    assert parsed is not None and parsed.message == "50 of 100\nrows" and parsed.percentage == 50.0
    assert "\n" not in line  # one line whatever the message holds
    assert parse_status(STATUS_PREFIX + "not json") is None  # a malformed marked line is ordinary output
    assert parse_status("print " + line) is None  # the mark counts only at the start of a line
    tail = shape(["my own output", line, "Traceback (most recent call last):", '  File "x.py", line 1, in run',
                  "ValueError: boom"])  # fmt: skip
    assert not any(STATUS_PREFIX in t for t in tail) and "my own output" in tail, tail
