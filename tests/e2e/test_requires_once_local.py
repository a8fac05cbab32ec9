"""A whole kannon build on the local backend asks each master task for its requirements once (issue 16).

Plain ``gokart.build`` calls a task's ``requires()`` about ten times (luigi's worker: ``deps()`` to schedule and
again to run; ``input()``; gokart's ``dump()`` in run() and in each START/SUCCESS handler); each call constructs every
required task again. The bound is the contract, not the code: the DAG must be discovered once before anything runs
(the plan), and kannon holds ``requires()`` deterministic within a build (each bullet's child refuses to run when
its own ``requires()`` differs from the plan's), so every later consumer can reuse that answer: once per task per
build, however often the task's run() starts. A later build asks again (files may have changed between builds)."""

from __future__ import annotations

import luigi
import pytest

import kannon
from kannon.backends.local import LocalExecutor
from tests.support import reqtasks as rt


@pytest.fixture(autouse=True)
def _fresh_counts() -> None:
    rt.calls.clear()
    rt.seen_inputs.clear()


def build(root: luigi.Task) -> kannon.BuildResult:
    return kannon.Kannon(executor=LocalExecutor()).build(root)


def test_each_master_task_s_requires_is_called_once_per_build() -> None:
    root = rt.ReqRoot()
    build(root)
    assert root.output().load() == (10 + 11) + (20 + 21) + (30 + 130) + 40
    assert dict(rt.calls) == {("ReqRoot", 0): 1, ("ReqMid", 10): 1, ("ReqMid", 20): 1, ("ReqYielding", 30): 1}


def test_input_inside_run_is_what_requires_gives_outside_the_build() -> None:
    root = rt.ReqRoot()
    build(root)
    expected = {("ReqRoot", 0): root, ("ReqMid", 10): rt.ReqMid(n=10), ("ReqMid", 20): rt.ReqMid(n=20)}
    for key, task in expected.items():
        assert rt.seen_inputs[key] == [t.path() for t in luigi.task.flatten(task.input())]
    assert "requires" not in vars(root)  # nothing of the build's memo stays on the (cached) instance


def test_a_later_build_asks_again() -> None:
    build(rt.ReqRoot())
    rt.calls.clear()
    build(rt.ReqRoot())
    assert rt.calls["ReqRoot", 0] == 1
