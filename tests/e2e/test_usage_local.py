"""Issue 17 on the local backend: every bullet reports what it used, in both local modes, measured by getrusage
without a memory hint and by the attempt's own memory cgroup with one (cgroup v1 on these machines)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from kannon.backends import _memlimit
from tests.e2e import usagecheck, usagepipe
from tests.support.procs import events
from tests.support.procs import kannon as run_kannon
from tests.support.services import service_unavailable


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    shutil.copy(Path(usagepipe.__file__), tmp_path / "usagepipe.py")
    return tmp_path


def _build(pipeline: Path, mode: str, env: dict[str, str]) -> str:
    out = run_kannon("build", "usagepipe.py:root", "--local-mode", mode, "--workspace", "ws", "--events", "ev.jsonl",
                     cwd=pipeline, env=env, timeout=600)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout + out.stderr


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_usage_without_a_hint_is_measured_by_getrusage(pipeline: Path, mode: str) -> None:
    # No hint: the child shares the master's cgroup, whose peak is not the task's: getrusage it is.
    output = _build(pipeline, mode, {})
    by_mb = usagecheck.check_figures(pipeline / "ev.jsonl", "rusage")
    assert all("requested_resources" not in e for e in by_mb.values())
    assert "mem " in output and "cpu " in output  # the summary's requested-against-used column
    records = list((pipeline / "ws").rglob("results/*/*.json"))
    assert len(records) == 4, records
    for path in records:  # the record names tasks and hashes, never a parameter value
        text = path.read_text()
        assert usagepipe.SECRET not in text
        assert json.loads(text)["kannon_result"] == 1


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_usage_under_a_memory_hint_is_the_attempts_cgroup_peak(pipeline: Path, mode: str) -> None:
    found = _memlimit._detect()
    if found.kind == "watchdog":
        service_unavailable(f"no memory cgroup usable here ({found.why_not_cgroup})",
                            "run as root with cgroup v1's memory controller, or a delegated cgroup v2")  # fmt: skip
    output = _build(pipeline, mode, {"USAGEPIPE_MEMORY": "1Gi", "USAGEPIPE_CPU": "500m",
                                     "KANNON_LOCAL_MEMORY": "cgroup"})  # fmt: skip
    by_mb = usagecheck.check_figures(pipeline / "ev.jsonl", ("cgroup-v1", "cgroup-v2"))
    assert all(e["requested_resources"] == {"cpu": "500m", "memory": "1Gi"} for e in by_mb.values())
    assert "/ 1Gi req" in output, output


def test_a_failed_attempt_reports_what_it_used(pipeline: Path) -> None:
    mb = usagepipe.TOUCH_MB[-1]
    out = run_kannon("build", "usagepipe.py:root", "--workspace", "ws", "--events", "ev.jsonl",
                     "--env-to-inherit", "USAGEPIPE_FAIL", cwd=pipeline, env={"USAGEPIPE_FAIL": str(mb)},
                     timeout=600)  # fmt: skip
    assert out.returncode != 0
    (failed,) = [e for e in events(pipeline / "ev.jsonl") if e["kind"] == "failed"]
    assert f"mb={mb}," in failed["params"] and failed["failure_class"] == "TaskFailed"
    noop = next(e for e in events(pipeline / "ev.jsonl")
                if e["kind"] == "succeeded" and "mb=0, burn=0.0" in e["params"])  # fmt: skip
    extra = failed["usage"]["peak_rss_bytes"] - noop["usage"]["peak_rss_bytes"]
    assert abs(extra - (mb << 20)) <= usagecheck.MEM_TOLERANCE * (mb << 20), failed["usage"]
