"""Hints files (issue 17): `kannon build --hints FILE` applies them to real children, `kannon plan --hints FILE`
shows where each value came from, and a bad file is one line and exit 2 before anything launches.

On the local backend a memory hint is the child's memory limit (kannon.backends._memlimit): a child that touches
300 MB is OOM-killed under a 128Mi limit and runs under 1Gi, so the outcome shows which value the child got.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest

from kannon import hintsfile
from tests.support.procs import events
from tests.support.procs import kannon as run_kannon

PIPELINE = """
    import os
    import time

    import gokart
    import luigi

    import kannon


    class Toucher(kannon.TaskOnBullet[int]):
        kannon_hints = kannon.Hints(cpu="250m", memory="128Mi")
        mb = luigi.IntParameter()
        hold = luigi.FloatParameter(default=0.0, significant=False)

        def run(self):
            block = b"\\x01" * (self.mb << 20)  # written, not just reserved: resident memory is what counts
            deadline = time.monotonic() + self.hold  # the watchdog (if no cgroup is usable) polls: let it see it
            while time.monotonic() < deadline:
                time.sleep(0.05)
            self.dump(len(block) >> 20)


    class Sink(kannon.TaskOnBullet[int]):
        def run(self):
            self.dump(0)


    class Worker(kannon.TaskOnBullet[int]):
        kannon_hints = kannon.Hints(memory="2Gi")  # a guess, far too high
        mb = luigi.IntParameter()

        def run(self):
            block = b"\x01" * (self.mb << 20)
            self.dump(len(block) >> 20)


    class Both(gokart.TaskOnKart[int]):
        def requires(self):
            return [Worker(mb=50), Worker(mb=200)]

        def run(self):
            self.dump(sum(self.load()))


    def both():
        return Both()


    def class_only():
        return Toucher(mb=300)


    def instance_2gi():
        # the hold (not significant: the same task either way) gives the watchdog time to see the 300 MB when a limit
        # is below it; HOLD shortens it for the run that is expected to succeed, which would only wait it out
        hold = float(os.environ.get("HOLD", "60"))
        return Toucher(mb=300, hold=hold).with_hints(memory="2Gi", retries=0)
"""


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    (tmp_path / "mem.py").write_text(textwrap.dedent(PIPELINE))
    return tmp_path


def _attempts(path: Path) -> list[str]:
    return [e["kind"] for e in events(path) if e.get("family") == "Toucher" and e["kind"] in ("succeeded", "failed")]


def test_a_file_raising_memory_over_the_class_hint_lets_the_child_run(pipeline: Path) -> None:
    (pipeline / "hints.ini").write_text("[Toucher]\nmemory = 1Gi\n")
    out = run_kannon("build", "mem.py:class_only", "--workspace", "ws", "--events", "ev.jsonl", "--hints",
                     "hints.ini", cwd=pipeline)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    assert _attempts(pipeline / "ev.jsonl") == ["succeeded"]


def test_the_file_wins_over_the_instance_hint_and_its_limit_is_what_the_child_gets(pipeline: Path) -> None:
    # without the file the instance's 2Gi lets the child run (checked first, so the file is what changes)
    ok = run_kannon("build", "mem.py:instance_2gi", "--workspace", "ws1", "--events", "ok.jsonl", cwd=pipeline,
                    env={"HOLD": "1"})  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    (pipeline / "hints.ini").write_text("# from kannon hints suggest\n[Toucher]\nmemory = 128Mi\n")
    out = run_kannon("build", "mem.py:instance_2gi", "--workspace", "ws2", "--events", "ev.jsonl", "--hints",
                     "hints.ini", cwd=pipeline)  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    failed = [e for e in events(pipeline / "ev.jsonl") if e["kind"] == "failed"]
    assert len(failed) == 1 and "memory limit of 128Mi" in failed[0]["reason"], failed


def test_plan_shows_where_each_value_came_from(pipeline: Path) -> None:
    (pipeline / "hints.ini").write_text("[Toucher]\nmemory = 384Mi\n")
    out = run_kannon("plan", "mem.py:instance_2gi", "--workspace", "ws", "--hints", "hints.ini", cwd=pipeline)
    assert out.returncode == 0, out.stderr
    assert "{cpu=250m(class) memory=384Mi(file) retries=0(instance)}" in out.stdout, out.stdout
    js = run_kannon("plan", "mem.py:class_only", "--workspace", "ws", "--hints", "hints.ini", "--format", "json",
                    cwd=pipeline)  # fmt: skip
    node = json.loads(js.stdout)["nodes"][0]
    assert node["hints"] == "cpu=250m memory=384Mi"
    assert node["hint_origins"]["memory"] == "file" and node["hint_origins"]["cpu"] == "class"
    assert node["hint_origins"]["retries"] == "default"
    plain = run_kannon("plan", "mem.py:class_only", "--workspace", "ws", cwd=pipeline)
    assert "{cpu=250m memory=128Mi}" in plain.stdout, plain.stdout  # no file: the plan reads as before


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("[Toucher]\nmemroy = 1Gi\n", "hints file hints.ini, section [Toucher], key 'memroy': unknown key; use one of"),
        ("[Toucher]\nmemory = 1 gig\n", "section [Toucher], key 'memory': memory '1 gig' is not a quantity"),
        ("[Toucher]\ncpu = lots\n", "section [Toucher], key 'cpu': cpu 'lots' is not a quantity"),
        ("[Toucher]\nretries = two\n", "key 'retries': 'two' is not a whole number"),
        ("[Toucher]\noom_growth = 0.5\n", "key 'oom_growth': oom_growth must be a factor above 1"),
        ("[Touch]\nmemory = 1Gi\n", "section [Touch]: no bullet task class of that name in this pipeline (its "
                                    "bullet classes: Toucher); fix the section name"),
        ("[DEFAULT]\nmemory = 1Gi\n", "section [DEFAULT]: no bullet task class"),
        ("memory = 1Gi\n", "hints file hints.ini is not an INI file"),
        ("[Toucher]\nmemory = 1Gi\nmemory = 2Gi\n", "hints file hints.ini is not an INI file"),
        (None, "hints file hints.ini does not exist"),
    ],
)  # fmt: skip
@pytest.mark.parametrize("command", ["build", "plan"])
def test_a_bad_file_is_one_line_naming_section_and_key_and_nothing_runs(pipeline: Path, text: str | None,
                                                                        expected: str, command: str) -> None:
    if text is not None:
        (pipeline / "hints.ini").write_text(text)
    out = run_kannon(command, "mem.py:class_only", "--workspace", "ws", "--events", "ev.jsonl", "--hints",
                     "hints.ini", cwd=pipeline) if command == "build" else run_kannon(
        command, "mem.py:class_only", "--workspace", "ws", "--hints", "hints.ini", cwd=pipeline)  # fmt: skip
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip().splitlines() == [out.stderr.strip()], out.stderr  # one line
    assert expected in out.stderr, out.stderr
    assert not [e for e in events(pipeline / "ev.jsonl") if e["kind"] == "launched"]


def test_the_api_takes_a_hints_file(pipeline: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from kannon import Kannon

    monkeypatch.syspath_prepend(str(pipeline))
    monkeypatch.chdir(pipeline)
    (pipeline / "hints.ini").write_text("[Toucher]\ncpu = 2\ntimeout = 30\n")
    mem = __import__("mem")
    try:
        plan = Kannon(hints_file=pipeline / "hints.ini").plan(mem.instance_2gi())
        hints = plan.nodes[plan.root_id].hints
        assert hints is not None
        assert (hints.cpu, hints.memory, hints.timeout, hints.retries) == ("2", "2Gi", 30.0, 0)
        where = hintsfile.origins(plan, hintsfile.load(pipeline / "hints.ini"))[plan.root_id]
        assert (where["cpu"], where["memory"], where["timeout"], where["gpu"]) == ("file", "instance", "file",
                                                                                  "default")  # fmt: skip
        # a value the backend refuses is refused as in code, naming the file and section
        from kannon.plan import PlanError

        again = Kannon().plan(mem.instance_2gi())
        with pytest.raises(PlanError) as refused:
            hintsfile.apply_to_plan(again, hintsfile.load(pipeline / "hints.ini"),
                                    lambda family, h: ["cpu '2' is more than the 1 CPU(s)"] if h.cpu == "2" else [])
        assert refused.value.problems == [f"Toucher: cpu '2' is more than the 1 CPU(s) (with hints file "
                                          f"{pipeline / 'hints.ini'}, section [Toucher]); fix the file"]  # fmt: skip
    finally:
        sys.modules.pop("mem", None)


def test_right_sizing_loop_from_real_runs(pipeline: Path) -> None:
    """Run twice, suggest from both logs, apply the suggestion as a file: the third run's children get it."""
    for n in (1, 2):
        out = run_kannon("build", "mem.py:both", "--workspace", f"ws{n}", "--events", f"run{n}.jsonl", cwd=pipeline)
        assert out.returncode == 0, out.stdout + out.stderr
    sug = run_kannon("hints", "suggest", "run1.jsonl", "run2.jsonl", "--format", "ini", cwd=pipeline)
    assert sug.returncode == 0, sug.stderr
    assert "# Worker: 4 samples (2 instances, 2 logs)" in sug.stdout, sug.stdout
    (pipeline / "hints.ini").write_text(sug.stdout)
    suggested = hintsfile.load(pipeline / "hints.ini").sections["Worker"]
    assert suggested.memory_bytes is not None
    # the largest peak is the 200 MB block plus the interpreter; x 1.2, and far below the guessed 2Gi
    assert 1.2 * (200 << 20) <= suggested.memory_bytes < 1 << 30, suggested
    plan = run_kannon("plan", "mem.py:both", "--workspace", "ws3", "--hints", "hints.ini", cwd=pipeline)
    assert f"memory={suggested.memory}(file)" in plan.stdout, plan.stdout
    out = run_kannon("build", "mem.py:both", "--workspace", "ws3", "--events", "run3.jsonl", "--hints",
                     "hints.ini", cwd=pipeline)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    done = [e for e in events(pipeline / "run3.jsonl") if e["kind"] == "succeeded" and e.get("family") == "Worker"]
    assert len(done) == 2
    assert all(e["requested_resources"]["memory"] == suggested.memory for e in done), done


def test_a_bad_oom_growth_flag_is_one_line_and_exit_2(pipeline: Path) -> None:
    out = run_kannon("build", "mem.py:class_only", "--workspace", "ws", "--oom-growth", "0.9", cwd=pipeline)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.strip() == ("kannon: oom_growth must be a factor above 1 (at most 10) like 1.5, got 0.9 "
                                  "(--oom-growth / --oom-growth-cap)"), out.stderr  # fmt: skip
