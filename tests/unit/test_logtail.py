"""kannon.logtail.shape on real tracebacks (produced by Python here, not typed in)."""

from __future__ import annotations

import json
import traceback

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
