"""kannon.logtail.shape on real tracebacks (produced by Python here, not typed in)."""

from __future__ import annotations

import json
import traceback

import pytest

from kannon import exitcodes
from kannon.logtail import OUTPUT_HEADER, shape


def _traceback_of(fn) -> list[str]:  # type: ignore[no-untyped-def]
    try:
        fn()
    except Exception:
        return traceback.format_exc().splitlines()
    raise AssertionError("did not raise")


def _chained() -> None:
    try:
        json.loads("{")
    except ValueError as e:
        raise RuntimeError("could not read the config") from e


def test_chained_exception_keeps_the_last_one_and_own_output_before_the_first() -> None:
    lines = ["own 1", "own 2", "2026-12-03 12:15:09,885 INFO luigi.worker: noise", *_traceback_of(_chained),
             "2026-12-03 12:15:09,893 INFO gokart.task: FAILURE:", "    task name=T", "    unique id=ab",
             exitcodes.REASON_PREFIX + "T raised RuntimeError: could not read the config"]  # fmt: skip
    out = shape(lines)
    assert out[0] == "RuntimeError: could not read the config"
    assert any("in _chained" in ln for ln in out) and any("library frames (json)" in ln for ln in out) is False
    assert out[-3:] == (OUTPUT_HEADER, "own 1", "own 2")
    assert not any("noise" in ln or "FAILURE" in ln or ln.startswith(exitcodes.REASON_PREFIX) for ln in out)
    assert shape(out) == out  # idempotent: every display shapes again


def test_without_a_traceback_the_tail_is_the_own_output() -> None:
    lines = [f"line {i}" for i in range(30)] + ["2026-12-03 12:15:09,885 INFO kannon.child: running T()"]
    assert shape(lines) == tuple(f"line {i}" for i in range(10, 30))


def test_stdlib_frames_fold_into_one_line_and_user_frames_stay() -> None:
    out = shape(_traceback_of(lambda: json.loads("{")))
    assert out[0].startswith("json.decoder.JSONDecodeError:")
    assert any("test_logtail.py" in ln and "in <lambda>" in ln for ln in out)
    assert any(ln.startswith("  ... ") and ln.endswith("library frames (json)") for ln in out)


def test_logs_are_found_in_the_per_invocation_layout_and_the_flat_one(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """BRIEF interface 2: <run_dir>/logs/<invocation_id>/<family>-<uid[:12]>-<attempt>.log; older runs: logs/*.log."""
    import os

    from kannon.logtail import find_logs, pick_log, pick_run, run_logs

    runs = tmp_path / "kannon" / "runs"
    uid = "0123456789abcdef0123456789abcdef"
    paths = [runs / "run1" / "logs" / "T-0123456789ab-1.log",  # a flat (older) layout
             runs / "run2" / "logs" / "20261203T120102Z-3fa9c1" / "T-0123456789ab-1.log",
             runs / "run2" / "logs" / "20261203T130000Z-77aa01" / "T-0123456789ab-1.log",
             runs / "run2" / "logs" / "20261203T130000Z-77aa01" / "T-0123456789ab-2.log"]  # fmt: skip
    for i, p in enumerate(paths):
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"log {i}\n")
        os.utime(p, (1_000_000 + i, 1_000_000 + i))
    found = run_logs([runs])
    assert [(r.run_id, r.invocation_id) for r in found] == [
        ("run1", ""), ("run2", "20261203T120102Z-3fa9c1"), ("run2", "20261203T130000Z-77aa01")]
    assert pick_log(pick_run(found, None), "T", None) == paths[3]  # the last run, the last attempt
    assert pick_log(pick_run(found, None), "0123", 1) == paths[2]
    assert pick_log(pick_run(found, "20261203T1201"), "T[01234567]", None) == paths[1]  # an invocation id prefix
    assert pick_log(pick_run(found, "1"), "T", None) == paths[0]
    assert find_logs(runs / "run2", "T", uid) == {1: paths[2], 2: paths[3]}  # the newest of each attempt


def test_a_run_id_prefix_of_digits_only_picks_that_run_not_an_index(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """Run ids are hex (a digest): a prefix such as ``957166`` is all digits ~6% of the time and must still name the
    run by its id, not "the 957166th run" (found by a CI run whose workspace path hashed that way)."""
    import os

    from kannon.logtail import pick_run, run_logs

    runs = tmp_path / "kannon" / "runs"
    for i, rid in enumerate(["957166ab12cd", "1234abcdef01"]):
        p = runs / rid / "logs" / "T-0123456789ab-1.log"
        p.parent.mkdir(parents=True)
        p.write_text(f"log {i}\n")
        os.utime(p, (1_000_000 + i, 1_000_000 + i))
    found = run_logs([runs])
    assert pick_run(found, "957166").run_id == "957166ab12cd"
    assert pick_run(found, "1234").run_id == "1234abcdef01"
    assert pick_run(found, "1").run_id == "957166ab12cd" and pick_run(found, "-1").run_id == "1234abcdef01"
    with pytest.raises(LookupError, match="there are 2 run"):
        pick_run(found, "5555")
