"""The exactly-once checker itself must catch every way a task can run twice (a check that cannot fail is a defect)."""

from __future__ import annotations

from pathlib import Path

from tests.faults.harness import ExactlyOnce, find_processes


def write(path: Path, *lines: str) -> None:
    with path.open("a") as f:
        f.writelines(line + "\n" for line in lines)


def test_a_clean_history_with_an_interrupted_run_passes(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    check = ExactlyOnce()
    write(ledger, "start a n1 0 10", "start b n2 0 11", "done a n1")  # b was killed before its dump
    check.observe(ledger, {"a": "n1"})
    write(ledger, "start b n3 0 12", "done b n3")
    check.observe(ledger, {"a": "n1", "b": "n3"})
    figures = check.final(ledger, {"a": "n1", "b": "n3"}, ["a", "b"])
    assert check.violations == []
    assert figures == {"runs": 3, "interrupted": 1, "tasks_run_more_than_once": 0}


def test_run_started_over_an_existing_output_is_caught(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    check = ExactlyOnce()
    write(ledger, "start a n1 0 10", "done a n1", "start a n2 1 11")
    check.observe(ledger, {"a": "n1"})
    assert any("started although its output existed" in v for v in check.violations)


def test_run_after_the_output_was_seen_is_caught_even_if_killed_before_its_dump(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    check = ExactlyOnce()
    write(ledger, "start a n1 0 10", "done a n1")
    check.observe(ledger, {"a": "n1"})
    write(ledger, "start a n2 0 11")  # claims the output did not exist: the snapshot says otherwise
    check.observe(ledger, {"a": "n1"})
    assert any("started again after its output was seen" in v for v in check.violations)


def test_a_rewritten_output_is_caught(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    check = ExactlyOnce()
    write(ledger, "start a n1 0 10")  # killed between its dump and its done line
    check.observe(ledger, {"a": "n1"})
    check.observe(ledger, {"a": "n2"})
    assert any("rewritten" in v for v in check.violations)


def test_two_commits_in_one_generation_are_caught(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    check = ExactlyOnce()
    write(ledger, "start a n1 0 10", "start a n2 0 11", "done a n1", "done a n2")
    check.observe(ledger, {"a": "n2"})
    figures = check.final(ledger, {"a": "n2"}, ["a"])
    assert any("2 runs committed" in v for v in check.violations)
    assert figures["tasks_run_more_than_once"] == 1


def test_a_missing_or_foreign_output_is_caught(tmp_path: Path) -> None:
    ledger = tmp_path / "ledger"
    check = ExactlyOnce()
    write(ledger, "start a n1 0 10", "done a n1")
    check.final(ledger, {"a": "zz"}, ["a", "b"])
    assert any("written by no run()" in v for v in check.violations)
    assert any("b: no output" in v for v in check.violations)


def test_process_scan_finds_a_marked_process_and_skips_others() -> None:
    import os
    import subprocess
    import sys

    marker = f"KANNON_FAULTS_MARKER=scan-{os.getpid()}"
    # Popen returns once exec has begun, but the kernel fills /proc/PID/environ in only when the new program's
    # stack is set up, a moment later: wait for a line from the child so the scan sees it as it will stay.
    proc = subprocess.Popen([sys.executable, "-c", "import sys; print('up', flush=True); sys.stdin.read()"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            env={**os.environ, "KANNON_FAULTS_MARKER": marker.split("=", 1)[1]})  # fmt: skip
    try:
        assert proc.stdout is not None and proc.stdout.readline() == b"up\n"
        assert [p.pid for p in find_processes([marker])] == [proc.pid]
        assert find_processes([marker + "-other"]) == []
    finally:
        proc.communicate(b"")
    assert find_processes([marker]) == []
