"""A failed bullet's output is actionable without opening files (issue 14 §2): the exception, the user's own frames
(luigi/gokart frames folded), then the task's last own output — in the summary, KannonBuildError and the report —
and the path of the full log, which `kannon logs` prints."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

import kannon
from kannon.backends.local import LocalExecutor
from tests.support.procs import events
from tests.support.procs import kannon as run_kannon

PIPELINE = """
    import json

    import luigi

    import kannon


    def parse(text):
        return json.loads(text)


    class Loud(kannon.TaskOnBullet[int]):
        lines = luigi.IntParameter(default=30)

        def run(self):
            for i in range(self.lines):
                print(f"own line {i}", flush=True)
            parse("{not json")


    def root():
        return Loud()
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    (tmp_path / "loud.py").write_text(textwrap.dedent(PIPELINE))
    return tmp_path


def check_shaped(lines: list[str], where: str) -> None:
    text = "\n".join(lines)
    # 1. the exception first, then the user's frames with their source lines, library frames folded
    assert lines[0].endswith("JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 "
                             "(char 1)"), where  # fmt: skip
    assert re.search(r'File "[^"]*loud\.py", line \d+, in run\n\s+parse\("\{not json"\)', text), where
    assert re.search(r'File "[^"]*loud\.py", line \d+, in parse\n\s+return json\.loads\(text\)', text), where
    assert re.search(r"\.\.\. \d+ library frames \(gokart\)", text), where
    assert "site-packages/gokart" not in text and "^^^^" not in text, where
    # 2. then the task's own last output, up to the failure
    assert text.index("own line 29") > text.index("in parse"), where
    assert "own line 29" in lines[-1], where
    # gokart's FAILURE banner and the line repeating the reason are gone
    assert "FAILURE" not in text and "unique id=" not in text and "kannon-child:" not in text, where


def test_summary_shows_exception_user_frames_then_own_output_and_the_full_log_path(pipeline: Path) -> None:
    out = run_kannon("build", "loud.py:root", "--workspace", "ws", "--events", "ev.jsonl", "--report", "r.html",
                     cwd=pipeline)  # fmt: skip
    assert out.returncode == 1, out.stderr
    err = out.stderr
    block = err[err.index("  log:\n") :].splitlines()[1:]
    shaped = [ln.removeprefix("    | ") for ln in block if ln.startswith("    | ")]
    check_shaped(shaped, "summary")
    (path_line,) = [ln for ln in err.splitlines() if ln.startswith("  full log: ")]
    full = Path(path_line.removeprefix("  full log: "))
    assert full.is_file() and full.is_relative_to(pipeline / "ws" / "kannon" / "runs")
    assert "own line 0\n" in full.read_text() and "FAILURE" in full.read_text()  # the full log keeps everything
    # the run's end says where the event log and the report are
    assert f"kannon: event log: {pipeline / 'ev.jsonl'}" in err and f"kannon: report: {pipeline / 'r.html'}" in err
    # the event log and the report carry the same shaped tail
    (failed,) = [e for e in events(pipeline / "ev.jsonl") if e["kind"] == "failed"]
    check_shaped(failed["log_tail"], "event log")
    assert "last output before the failure:" in (pipeline / "r.html").read_text()
    # `kannon logs` prints the full log
    logs = run_kannon("logs", "Loud", "--workspace", "ws", cwd=pipeline)
    assert logs.returncode == 0, logs.stderr
    assert logs.stdout == full.read_text()


def test_kannon_build_error_message_has_the_shaped_tail(pipeline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(pipeline)
    monkeypatch.syspath_prepend(str(pipeline))
    import loud  # type: ignore[import-not-found]

    with pytest.raises(kannon.KannonBuildError) as info:
        kannon.Kannon(executor=LocalExecutor(mode="spawn"), run_dir=pipeline / "runs").build(loud.root())
    message = str(info.value)
    shaped = [ln.strip().removeprefix("| ") for ln in message.splitlines() if ln.strip().startswith("|")]
    assert shaped[0].endswith("JSONDecodeError: Expecting property name enclosed in double quotes: line 1 column 2 "
                              "(char 1)")  # fmt: skip
    assert 'loud.py", line' in message and 'parse("{not json")' in message
    assert "own line 29" in shaped[-1] and "own line 21" not in message  # the last 8 own lines
    assert "FAILURE" not in message and "library frames (gokart)" in message
