"""`kannon hints suggest` (issue 17): exact suggestions from two synthesized runs with known figures.

The logs carry the keys of the agreed event interface: `usage` (the child-result record's Usage fields) and
`requested_resources` on succeeded / failed / retried events.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kannon import hintsfile, suggest
from tests.support.procs import kannon as run_kannon

MI = 2**20


def ev(kind: str, family: str, task_id: str, attempt: int = 1, placement: str = "bullet",
       **extra: Any) -> dict[str, Any]:  # fmt: skip
    return {"schema": 1, "kind": kind, "run_id": "r" * 32, "time": 1.0, "task_id": task_id, "family": family,
            "placement": placement, "attempt": attempt, **extra}  # fmt: skip


def usage(peak_mib: float, cpu: float, wall: float, oom: int | None = None) -> dict[str, Any]:
    u: dict[str, Any] = {"peak_rss_bytes": int(peak_mib * MI), "peak_source": "cgroup-v1", "cpu_seconds": cpu,
                         "wall_seconds": wall, "output_bytes": 10}  # fmt: skip
    if oom is not None:
        u["oom_limit_bytes"] = oom
    return u


def write(path: Path, events: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(e) + "\n" for e in events))
    return path


@pytest.fixture
def two_runs(tmp_path: Path) -> list[Path]:
    """Train: 20 attempts over the two runs, peaks 10, 20, ..., 200 MiB and 0.05, 0.10, ..., 1.00 busy cores.
    Load: one attempt per run, 900 and 1000 MiB, 1.1 and 1.5 cores. A master task's usage and events without usage
    (a log from before measuring, a cancelled attempt) must not count."""
    runs: list[list[dict[str, Any]]] = [[], []]
    runs[0].append({"schema": 1, "kind": "run_started", "run_id": "r" * 32, "time": 0.0})
    for i in range(20):
        kind = "retried" if i == 3 else "failed" if i == 4 else "succeeded"
        runs[i % 2].append(ev(kind, "Train", f"train{i // 2}", usage=usage(10 * (i + 1), 0.05 * (i + 1) * 4, 4.0),
                              requested_resources={"memory": "1Gi", "cpu": "2"}))  # fmt: skip
    runs[0].append(ev("succeeded", "Load", "load", usage=usage(900, 2.2, 2.0)))
    runs[1].append(ev("succeeded", "Load", "load", usage=usage(1000, 3.0, 2.0)))
    runs[1].append(ev("succeeded", "Report", "rep", placement="master", usage=usage(5000, 40.0, 2.0)))
    runs[1].append(ev("succeeded", "Old", "old"))
    runs[1].append(ev("cancelled", "Train", "train0", usage=usage(9000, 100.0, 1.0)))
    return [write(tmp_path / "run1.jsonl", runs[0]), write(tmp_path / "run2.jsonl", runs[1])]


def test_nearest_rank_percentile_and_rounding_rules() -> None:
    assert suggest.nearest_rank(list(range(1, 21))) == 19  # ceil(0.95 * 20) = 19th smallest
    assert suggest.nearest_rank([3, 1, 2]) == 3  # ceil(2.85) = 3rd
    assert suggest.nearest_rank([7]) == 7
    assert suggest.round_memory(228 * MI) == "240Mi"  # 16 Mi steps below 1 Gi, rounded up
    assert suggest.round_memory(240 * MI) == "240Mi"
    assert suggest.round_memory(1200 * MI) == "1280Mi"  # 256 Mi steps from 1 Gi on
    assert suggest.round_memory(2000 * MI) == "2Gi"
    assert suggest.round_cpu(0.3) == "300m"  # 0.3 * 1000 is 300.00000000000006 in floats: still 300m
    assert suggest.round_cpu(0.301) == "350m"
    assert suggest.round_cpu(0.001) == "50m"
    assert suggest.round_cpu(1.01) == "1250m"
    assert suggest.round_cpu(2.0) == "2"


def test_suggestion_from_two_runs_has_the_exact_values(two_runs: list[Path]) -> None:
    out = run_kannon("hints", "suggest", *map(str, two_runs), cwd=two_runs[0].parent)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    # Train: p95 of 10..200 MiB is 190 MiB; x 1.2 = 228 MiB -> 240Mi. cpu: p95 of 0.05..1.00 is 0.95 -> 950m.
    assert 'kannon_hints = kannon.Hints(cpu="950m", memory="240Mi")  # class Train' in lines
    # Load: p95 of two is the larger, 1000 MiB x 1.2 = 1200 MiB -> 1280Mi; cpu 1.5 cores -> 1500m
    assert 'kannon_hints = kannon.Hints(cpu="1500m", memory="1280Mi")  # class Load' in lines
    assert not any("Report" in line or "Old" in line for line in lines), out.stdout  # master / unmeasured
    # the samples each suggestion rests on
    assert "# Train: 20 samples (10 instances, 2 logs); memory = p95 peak 190.0 MiB of 20 x 1.2 -> 240Mi" in out.stdout
    assert "# Load: 2 samples (1 instance, 2 logs)" in out.stdout


def test_headroom_and_the_ini_format_round_trip_into_a_hints_file(two_runs: list[Path], tmp_path: Path) -> None:
    out = run_kannon("hints", "suggest", *map(str, two_runs), "--headroom", "1.5", "--format", "ini",
                     cwd=tmp_path)  # fmt: skip
    assert out.returncode == 0, out.stderr
    (tmp_path / "hints.ini").write_text(out.stdout)
    hf = hintsfile.load(tmp_path / "hints.ini")
    # 190 MiB x 1.5 = 285 MiB -> 288Mi; 1000 MiB x 1.5 = 1500 MiB -> 1536Mi; cpu has no headroom
    assert hf.sections["Train"].memory == "288Mi" and hf.sections["Train"].cpu == "950m"
    assert hf.sections["Load"].memory == "1536Mi" and hf.sections["Load"].cpu == "1500m"
    assert set(hf.sections) == {"Train", "Load"}


def test_an_oom_killed_attempt_pushes_the_suggestion_above_its_limit(tmp_path: Path) -> None:
    killed = {**usage(256, 0.0, 3.0, oom=256 * MI), "peak_source": "oom-limit"}  # no record: the master's figures
    log = write(tmp_path / "oom.jsonl", [
        ev("retried", "Big", "b", usage=usage(256, 0.1, 1.0, oom=256 * MI)),
        ev("retried", "Big", "b", attempt=2, usage=killed),
        ev("succeeded", "Big", "b", attempt=3, usage=usage(200, 0.6, 1.0)),
    ])  # fmt: skip
    text = suggest.run([str(log)])
    assert 'memory="320Mi"' in text  # 256 x 1.2 = 307.2 -> 320Mi, above the limit that killed it
    assert "2 attempt(s) were OOM-killed" in text
    # cpu from the two attempts that reported it (0.1 and 0.6 cores): the unknown one is not a 0
    assert 'cpu="600m"' in text and "cpu = p95 0.600 cores of 2" in text


@pytest.mark.parametrize(
    ("content", "args", "expected"),
    [
        (None, [], "does not exist"),
        (b"\x89PNG\r\n\x1a\n\x00\xff\xfe", [], "cannot be read as a kannon event log"),
        (b'{"hello": 1}\nnot json\n', [], "is not a kannon event log"),
        (b'{"schema": 1, "kind": "succeeded", "run_id": "r", "family": "A", "placement": "bullet"}\n', [],
         "no usage samples in"),
        (b'{"schema": 1, "kind": "succeeded", "run_id": "r", "family": "A", "placement": "bullet", "usage": '
         b'{"peak_rss_bytes": 1000, "cpu_seconds": 1, "wall_seconds": 2}}\n', ["--task", "B"],
         "no usage samples for task class B"),
        (b'{"schema": 1, "kind": "run_started", "run_id": "r"}\n', ["--headroom", "0.8"], "factor >= 1"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, content: bytes | None, args: list[str],
                                          expected: str) -> None:  # fmt: skip
    path = tmp_path / "log.jsonl"
    if content is not None:
        path.write_bytes(content)
    out = run_kannon("hints", "suggest", str(path), *args, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stdout == ""
    assert len(out.stderr.strip().splitlines()) == 1 and expected in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
