"""Pipelines that count, in the process they run in, how often each master task's ``requires()`` is called.

The counts live in this module (one process's memory): bullets run in children, so only the master's calls count,
which is what the tests of "requires() once per build" (issue 16) bound."""

from __future__ import annotations

import collections
from typing import Any

import gokart
import luigi

import kannon

#: (family, n) -> calls of that task's requires() in this process
calls: collections.Counter[tuple[str, int]] = collections.Counter()
#: what a task's input() returned inside its run(): (family, n) -> the input paths
seen_inputs: dict[tuple[str, int], list[str]] = {}


def _paths(targets: Any) -> list[str]:
    return [t.path() for t in luigi.task.flatten(targets)]


class ReqLeaf(kannon.TaskOnBullet[int]):
    n = luigi.IntParameter()

    def run(self) -> None:
        self.dump(int(self.n))


class ReqMid(gokart.TaskOnKart[int]):
    """A master task that requires two bullets, by name (gokart's load(name) reads input())."""

    n = luigi.IntParameter()

    def requires(self) -> dict[str, ReqLeaf]:
        calls["ReqMid", int(self.n)] += 1
        return {"a": ReqLeaf(n=self.n), "b": ReqLeaf(n=self.n + 1)}

    def run(self) -> None:
        seen_inputs["ReqMid", int(self.n)] = _paths(self.input())
        self.dump(self.load("a") + self.load("b"))


class ReqYielding(gokart.TaskOnKart[int]):
    """A master task with a static requirement and a dynamic one: run() starts twice (luigi's contract)."""

    n = luigi.IntParameter()

    def requires(self) -> ReqLeaf:
        calls["ReqYielding", int(self.n)] += 1
        return ReqLeaf(n=self.n)

    def run(self) -> Any:
        extra = yield ReqLeaf(n=self.n + 100)
        self.dump(self.load() + extra.load())


class ReqRoot(gokart.TaskOnKart[int]):
    n = luigi.IntParameter(default=0)

    def requires(self) -> list[gokart.TaskOnKart[int]]:
        calls["ReqRoot", int(self.n)] += 1
        return [ReqMid(n=10), ReqMid(n=20), ReqYielding(n=30), ReqLeaf(n=40)]

    def run(self) -> None:
        seen_inputs["ReqRoot", int(self.n)] = _paths(self.input())
        self.dump(sum(self.load()))
