"""Memory hints on the local backend are enforced on resident memory, as in a container (issue 14 §1).

A Kubernetes-sized hint (256Mi) must let a task that touches ~50 MB run, and must OOM-kill one that touches ~400 MB
with the classified reason — in both local modes, by the memory cgroup where one is usable (these machines: cgroup
v1's memory controller) and by the RSS watchdog otherwise.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from kannon.backends import _memlimit
from tests.support.procs import events
from tests.support.procs import kannon as run_kannon
from tests.support.services import service_unavailable

PIPELINE = """
    import time

    import luigi

    import kannon


    class Toucher(kannon.TaskOnBullet[int]):
        kannon_hints = kannon.Hints(memory="256Mi")
        mb = luigi.IntParameter()
        hold = luigi.FloatParameter(default=0.0, significant=False)

        def run(self):
            block = b"\\x01" * (self.mb << 20)  # written, not just reserved: resident memory is what counts
            print(f"touched {len(block) >> 20} MB", flush=True)
            deadline = time.monotonic() + self.hold  # the watchdog polls: give it a chance to see the peak
            while time.monotonic() < deadline:
                time.sleep(0.05)
            self.dump(len(block) >> 20)


    def small():
        return Toucher(mb=50)


    def big():
        return Toucher(mb=400, hold=60.0)
"""


def _mechanism_env(which: str) -> dict[str, str]:
    if which == "cgroup":
        found = _memlimit._detect()
        if found.kind == "watchdog":
            service_unavailable(f"no memory cgroup usable here ({found.why_not_cgroup})",
                                "run as root with cgroup v1's memory controller, or a delegated cgroup v2")
    return {"KANNON_LOCAL_MEMORY": which}


@pytest.fixture
def pipeline(tmp_path: Path) -> Path:
    (tmp_path / "mem.py").write_text(textwrap.dedent(PIPELINE))
    return tmp_path


@pytest.mark.parametrize("mode", ["fork", "spawn"])
@pytest.mark.parametrize("which", ["cgroup", "watchdog"])
def test_a_256Mi_hint_lets_a_50MB_task_run(pipeline: Path, mode: str, which: str) -> None:
    out = run_kannon("build", "mem.py:small", "--local-mode", mode, "--workspace", "ws", "--events", "ev.jsonl",
                     cwd=pipeline, env=_mechanism_env(which))  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    # the run header says which mechanism is in force
    assert ("kannon: memory hints: enforced " + ("on resident memory by a cgroup" if which == "cgroup"
                                                  else "by polling")) in out.stderr, out.stderr  # fmt: skip
    assert [e["kind"] for e in events(pipeline / "ev.jsonl") if e.get("family") == "Toucher"][-1] == "succeeded"


@pytest.mark.parametrize("mode", ["fork", "spawn"])
@pytest.mark.parametrize("which", ["cgroup", "watchdog"])
def test_a_400MB_task_under_a_256Mi_hint_is_oom_killed(pipeline: Path, mode: str, which: str) -> None:
    out = run_kannon("build", "mem.py:big", "--local-mode", mode, "--workspace", "ws", "--events", "ev.jsonl",
                     cwd=pipeline, env=_mechanism_env(which))  # fmt: skip
    assert out.returncode == 1, out.stdout + out.stderr
    (failed,) = [e for e in events(pipeline / "ev.jsonl") if e["kind"] == "failed"]
    assert failed["failure_class"] == "OOMKilled", failed
    assert failed["exit_code"] == 137
    assert "memory limit of 256Mi" in failed["reason"] and "raise `memory`" in failed["reason"]
    assert "OOMKilled" in out.stdout + out.stderr or "out of memory" in out.stdout + out.stderr


def test_plan_shows_each_bullets_hints_and_the_memory_mechanism(pipeline: Path) -> None:
    out = run_kannon("plan", "mem.py:small", cwd=pipeline, env=_mechanism_env("watchdog"))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[1].endswith("bullet {memory=256Mi}"), out.stdout
    assert out.stderr.startswith("kannon: memory hints: enforced by polling"), out.stderr
