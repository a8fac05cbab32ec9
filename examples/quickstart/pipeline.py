"""The quick-start pipeline: A -> B -> C0..2 -> D0..2 -> E0..2 -> F -> G.

A, B, F and G are ordinary gokart tasks and run in the master; C, D and E are bullets and run in parallel
(three branches), each taking a while. Run it with:

    kannon build examples/quickstart/pipeline.py:root --workspace ./resources/quickstart
"""

from __future__ import annotations

import os
import time

import gokart
import luigi

import kannon

# Seconds each task "works"; the benchmark shortens or lengthens them.
MASTER_SECONDS = float(os.environ.get("QUICKSTART_MASTER_SECONDS", "0.2"))
BULLET_SECONDS = float(os.environ.get("QUICKSTART_BULLET_SECONDS", "1.0"))


class TaskA(gokart.TaskOnKart[str]):
    param = luigi.Parameter()

    def run(self) -> None:
        time.sleep(MASTER_SECONDS)
        self.dump(f"A({self.param})")


class TaskB(gokart.TaskOnKart[str]):
    param = luigi.Parameter()
    parent = gokart.TaskInstanceParameter()

    def run(self) -> None:
        time.sleep(MASTER_SECONDS)
        self.dump(f"B({self.load('parent')})")


class TaskC(kannon.TaskOnBullet[str]):
    param = luigi.Parameter()
    parent = gokart.TaskInstanceParameter()

    def run(self) -> None:
        time.sleep(BULLET_SECONDS)
        self.dump(f"C{self.param}({self.load('parent')})")


class TaskD(kannon.TaskOnBullet[str]):
    param = luigi.Parameter()
    parent = gokart.TaskInstanceParameter()

    def run(self) -> None:
        time.sleep(BULLET_SECONDS)
        self.dump(f"D{self.param}({self.load('parent')})")


class TaskE(kannon.TaskOnBullet[str]):
    param = luigi.Parameter()
    parent = gokart.TaskInstanceParameter()

    def run(self) -> None:
        time.sleep(BULLET_SECONDS)
        self.dump(f"E{self.param}({self.load('parent')})")


class TaskF(gokart.TaskOnKart[str]):
    parents = gokart.ListTaskInstanceParameter()

    def run(self) -> None:
        time.sleep(MASTER_SECONDS)
        self.dump("F(" + ", ".join(self.load(p) for p in self.parents) + ")")

    def requires(self):  # type: ignore[no-untyped-def]
        return self.parents


class TaskG(gokart.TaskOnKart[str]):
    parent = gokart.TaskInstanceParameter()

    def run(self) -> None:
        time.sleep(MASTER_SECONDS)
        self.dump(f"G({self.load('parent')})")


def root(branches: int = 3) -> TaskG:
    b = TaskB(param="b", parent=TaskA(param="a"))
    ends = [TaskE(param=str(i), parent=TaskD(param=str(i), parent=TaskC(param=str(i), parent=b)))
            for i in range(branches)]  # fmt: skip
    return TaskG(parent=TaskF(parents=ends))
