"""gokart's InMemoryTarget lives in one process's memory: on a bullet, or consumed by one, it is refused at plan
time with the fix (issue 13), for the static plan and for a plan of yielded tasks alike."""

from __future__ import annotations

from pathlib import Path

import pytest

from kannon.plan import PlanError, make_plan, plan_requested
from tests.support import dyntasks as dt
from tests.support.procs import kannon as run_kannon


def test_a_bullet_with_an_in_memory_output_is_refused_with_the_fix() -> None:
    with pytest.raises(PlanError) as info:
        make_plan(dt.InMemoryBullet())
    (problem,) = info.value.problems
    assert "InMemoryBullet" in problem and "InMemoryTarget" in problem and "self.make_target" in problem


def test_a_bullet_consuming_a_master_in_memory_output_is_refused_with_the_fix() -> None:
    with pytest.raises(PlanError) as info:
        make_plan(dt.ConsumesInMemory())
    (problem,) = info.value.problems
    assert problem.startswith("ConsumesInMemory") and "InMemoryMaster" in problem and "InMemoryTarget" in problem


def test_a_master_task_consuming_an_in_memory_output_is_fine() -> None:
    assert len(make_plan(dt.MasterConsumesInMemory()).todo) == 2


def test_yielded_tasks_get_the_same_check() -> None:
    with pytest.raises(PlanError):
        plan_requested([dt.PidBullet(name="fine"), dt.ConsumesInMemory()])


def test_the_cli_refuses_in_one_line_with_exit_2(tmp_path: Path) -> None:
    (tmp_path / "pipe.py").write_text("from tests.support.dyntasks import ConsumesInMemory\n"
                                      "root = ConsumesInMemory()\n")
    out = run_kannon("build", "pipe.py:root", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and "InMemoryTarget" in out.stderr and "make_target" in out.stderr
