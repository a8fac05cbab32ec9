"""DAGs the local benchmarks run. Children import these classes by module name, so they live in a real module.

- ``noop_root()``: one master task requiring ``NOOP_COUNT`` (default 200) independent no-op bullets.
- ``chains_root()``: ``PLAN_BRANCHES`` (100) chains of ``PLAN_LENGTH`` (100) bullets each, linked through
  ``requires()``; one master task joins the chain ends (10,001 tasks).
- ``layers_root()``: ``PLAN_LENGTH`` layers of ``PLAN_BRANCHES`` bullets; each task requires three tasks of the
  layer below (fan-in), so upstream tasks are shared widely; one master task joins the top layer (10,001 tasks).
- ``params_root()``: like ``chains_root`` but every task receives its upstream task as a
  ``gokart.TaskInstanceParameter`` (the usual gokart style); luigi serializes nested task parameters while
  constructing each task, so constructing alone costs far more here.
"""

from __future__ import annotations

import os

import gokart
import luigi

import kannon


def _n(name: str, default: int) -> int:
    return int(os.environ.get(name, str(default)))


class NoOpBullet(kannon.TaskOnBullet[int]):
    n = luigi.IntParameter()

    def run(self) -> None:
        self.dump(self.n)


class NoOpRoot(gokart.TaskOnKart[int]):
    count = luigi.IntParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return [NoOpBullet(n=i) for i in range(self.count)]

    def run(self) -> None:
        self.dump(sum(self.load()))  # all inputs at once: load(task) would call requires() per input


class ChainStep(kannon.TaskOnBullet[int]):
    branch = luigi.IntParameter()
    step = luigi.IntParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return ChainStep(branch=self.branch, step=self.step - 1) if self.step > 0 else []

    def run(self) -> None:
        self.dump(self.step)


class LayerTask(kannon.TaskOnBullet[int]):
    layer = luigi.IntParameter()
    index = luigi.IntParameter()
    width = luigi.IntParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        if self.layer == 0:
            return []
        picks = sorted({self.index, (self.index + 1) % self.width, (self.index + 7) % self.width})
        return [LayerTask(layer=self.layer - 1, index=j, width=self.width) for j in picks]

    def run(self) -> None:
        self.dump(self.layer)


class ParamHead(kannon.TaskOnBullet[int]):
    branch = luigi.IntParameter()

    def run(self) -> None:
        self.dump(0)


class ParamStep(kannon.TaskOnBullet[int]):
    step = luigi.IntParameter()
    parent = gokart.TaskInstanceParameter()

    def run(self) -> None:
        self.dump(self.step)


class PlanJoin(gokart.TaskOnKart[int]):
    parents = gokart.ListTaskInstanceParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return self.parents

    def run(self) -> None:
        self.dump(len(self.parents))


def noop_root() -> NoOpRoot:
    return NoOpRoot(count=_n("NOOP_COUNT", 200))


def chains_root() -> PlanJoin:
    length, branches = _n("PLAN_LENGTH", 100), _n("PLAN_BRANCHES", 100)
    return PlanJoin(parents=[ChainStep(branch=b, step=length - 1) for b in range(branches)])


def layers_root() -> PlanJoin:
    layers, width = _n("PLAN_LENGTH", 100), _n("PLAN_BRANCHES", 100)
    return PlanJoin(parents=[LayerTask(layer=layers - 1, index=i, width=width) for i in range(width)])


def params_root() -> PlanJoin:
    length, branches = _n("PLAN_LENGTH", 100), _n("PLAN_BRANCHES", 100)
    ends = []
    for b in range(branches):
        task: gokart.TaskOnKart[int] = ParamHead(branch=b)
        for s in range(1, length):
            task = ParamStep(step=s, parent=task)
        ends.append(task)
    return PlanJoin(parents=ends)


ROOTS = {"noop": noop_root, "chains": chains_root, "layers": layers_root, "params": params_root}
