from __future__ import annotations

from typing import ClassVar

import gokart
import luigi
import pytest

import kannon
from kannon.plan import PlanError, make_plan
from kannon.result import Placement
from tests.support.tasks import Bullet, Join, Leaf, Untyped


class Counted(gokart.TaskOnKart[str]):
    """Counts complete() and requires() calls per instance name."""

    name = luigi.Parameter()
    deps = gokart.ListTaskInstanceParameter(default=[])
    completes: ClassVar[dict[str, int]] = {}

    def requires(self):  # type: ignore[no-untyped-def]
        return self.deps

    def complete(self) -> bool:
        Counted.completes[self.name] = Counted.completes.get(self.name, 0) + 1
        return super().complete()

    def run(self) -> None:
        self.dump(self.name)


def test_one_node_per_unique_id_and_complete_called_once() -> None:
    Counted.completes.clear()
    shared = Counted(name="shared")
    a, b = Counted(name="a", deps=[shared]), Counted(name="b", deps=[shared])
    root = Counted(name="root", deps=[a, b, shared])
    plan = make_plan(root)
    assert len(plan.nodes) == 4
    assert Counted.completes == {"root": 1, "a": 1, "b": 1, "shared": 1}
    assert plan.nodes[plan.root_id].deps == (a.make_unique_id(), b.make_unique_id(), shared.make_unique_id())


def test_complete_subtrees_are_not_checked() -> None:
    Counted.completes.clear()
    deep = Counted(name="deep")
    mid = Counted(name="mid", deps=[deep])
    root = Counted(name="root", deps=[mid])
    mid.dump("done")  # mid is complete: nothing below it is looked at
    plan = make_plan(root)
    assert Counted.completes == {"root": 1, "mid": 1}
    assert plan.nodes[mid.make_unique_id()].placement is Placement.COMPLETE
    assert deep.make_unique_id() not in plan.nodes
    assert [n.family for n in plan.todo] == ["Counted"]


def test_placement_follows_the_class() -> None:
    leaf = Leaf(name="x")
    root = Join(parents=[Bullet(name="b", parents=[leaf])])
    plan = make_plan(root)
    kinds = {n.family: n.placement for n in plan.nodes.values()}
    assert kinds == {"Join": Placement.MASTER, "Bullet": Placement.BULLET, "Leaf": Placement.MASTER}
    assert plan.bullet_modules() == ["tests.support.tasks"]


class Chain(kannon.TaskOnBullet[int]):
    n = luigi.IntParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return Chain(n=self.n - 1) if self.n > 0 else []

    def run(self) -> None:
        self.dump(self.n)


def test_deep_chain_does_not_hit_the_recursion_limit() -> None:
    # gokart's own make_unique_id recursion would need ~3 frames per level; the planner computes ids leaves-first.
    plan = make_plan(Chain(n=1500))
    assert len(plan.nodes) == 1501
    assert all(n.placement is Placement.BULLET for n in plan.nodes.values())


class Cyclic(gokart.TaskOnKart[str]):
    n = luigi.IntParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return Cyclic(n=(self.n + 1) % 3)


def test_cycle_is_reported_with_its_path() -> None:
    with pytest.raises(PlanError, match=r"cycle: Cyclic\(.*\) -> Cyclic\(.*\) -> Cyclic\(.*\) -> Cyclic"):
        make_plan(Cyclic(n=0))


class Broken(gokart.TaskOnKart[str]):
    def requires(self):  # type: ignore[no-untyped-def]
        raise KeyError("missing-setting")


class NeedsBroken(gokart.TaskOnKart[str]):
    def requires(self):  # type: ignore[no-untyped-def]
        return Broken()


def test_requires_raising_names_the_task() -> None:
    with pytest.raises(PlanError) as e:
        make_plan(NeedsBroken())
    assert "Broken" in str(e.value) and "requires() raised KeyError" in str(e.value)


class Hungry(kannon.TaskOnBullet[str]):
    kannon_hints = kannon.Hints(memory="lots", cpu="-1", retries=-2)

    def run(self) -> None:
        self.dump("x")


def test_invalid_hints_are_all_reported_before_launch() -> None:
    with pytest.raises(PlanError) as e:
        make_plan(Hungry())
    text = str(e.value)
    assert "Hungry" in text and "memory 'lots'" in text and "cpu" in text and "retries" in text
    assert "kannon_hints" in text


def test_instance_hints_override_class_hints() -> None:
    task = Hungry().with_hints(memory="1Gi", cpu="500m", retries=1)
    plan = make_plan(task)
    hints = plan.nodes[plan.root_id].hints
    assert hints is not None and hints.memory == "1Gi" and hints.cpu_cores == 0.5


def test_backend_validation_is_applied() -> None:
    def no_gpus(family: str, hints: kannon.Hints) -> list[str]:
        return ["this backend has no GPUs"] if hints.gpu else []

    with pytest.raises(PlanError, match="no GPUs"):
        make_plan(Bullet(name="g").with_hints(gpu=1), validate_hints=no_gpus)


def test_handoff_problems_fail_the_plan() -> None:
    with pytest.raises(PlanError, match="cannot be handed to a child") as e:
        make_plan(Join(parents=[Untyped(value=object()), Untyped(value=2j)]))
    assert len(e.value.problems) == 2  # every one, not the first


def test_root_must_be_a_task() -> None:
    with pytest.raises(PlanError, match="must be a gokart task instance"):
        make_plan(Leaf)


def test_two_task_classes_with_one_name_do_not_stop_the_plan() -> None:
    # gokart.build runs them (it unregisters user classes); kannon unregisters only the duplicates when it runs.
    import luigi.task_register

    twin = type("Leaf", (gokart.TaskOnKart,), {"__module__": "tests.unit.elsewhere"})
    try:
        assert make_plan(Leaf(name="dup")).nodes
    finally:
        if twin in luigi.task_register.Register._reg:
            luigi.task_register.Register._reg.remove(twin)
