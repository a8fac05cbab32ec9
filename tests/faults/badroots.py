"""Targets for `kannon build` that are not a runnable pipeline (tests/faults/test_bad_input.py)."""

from __future__ import annotations

import gokart
import luigi

import kannon

number = 42
klass = gokart.TaskOnKart


def returns_none() -> None:
    return None


class Greedy(kannon.TaskOnBullet[str]):
    kannon_hints = kannon.Hints(memory="lots", cpu="-1")

    def run(self) -> None:
        self.dump("never")


greedy = Greedy()


class Loop(gokart.TaskOnKart[str]):  # type: ignore[misc]
    """requires() forms a cycle: Loop(n=0) -> Loop(n=1) -> Loop(n=0)."""

    n = luigi.IntParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return Loop(n=(self.n + 1) % 2)


loop = Loop(n=0)


class Fine(kannon.TaskOnBullet[str]):
    """A valid bullet: the pipeline is fine, the backend configuration is not."""

    def run(self) -> None:
        self.dump("fine")


fine = Fine()
