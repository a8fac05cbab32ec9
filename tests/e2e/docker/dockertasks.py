"""Pipelines for the Docker e2e tests. Loaded by file path (as module ``dockertasks``), in the master and in the
containers alike (the checkout is bind-mounted read-only)."""

from __future__ import annotations

import os
import time

import gokart
import luigi

import kannon


class Waiter(kannon.TaskOnBullet[str]):
    """Runs until the file ``flag`` exists (tests release it), then writes its name."""

    name = luigi.Parameter()
    flag = luigi.Parameter()

    def run(self) -> None:
        print(f"{self.name} waiting", flush=True)
        while not os.path.exists(self.flag):
            time.sleep(0.05)
        self.dump(self.name)


class Raises(kannon.TaskOnBullet[str]):
    def run(self) -> None:
        print("about to fail", flush=True)
        raise ValueError("broken on purpose")


class Hog(kannon.TaskOnBullet[str]):
    kannon_hints = kannon.Hints(memory="48Mi")

    def run(self) -> None:
        print("allocating", flush=True)
        block = bytearray(512 * 1024 * 1024)
        self.dump(str(len(block)))


class DockerJoin(gokart.TaskOnKart[str]):
    parents = gokart.ListTaskInstanceParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return self.parents

    def run(self) -> None:
        self.dump("+".join(self.load(p) for p in self.parents))


def waiting() -> DockerJoin:
    flag = os.environ["DOCKERTASKS_FLAG"]
    return DockerJoin(parents=[Waiter(name="a", flag=flag), Waiter(name="b", flag=flag)])


def failing() -> DockerJoin:
    return DockerJoin(parents=[Raises(), Hog()])
