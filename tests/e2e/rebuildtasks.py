"""Tasks for the child-rebuild tests. Importing this module builds its root, as `kannon build mod:root` users do."""

from __future__ import annotations

import os
from typing import Any

import gokart
import luigi

import kannon


class Up(gokart.TaskOnKart[str]):
    """A master task: the bullet must read its output where the master wrote it."""

    def run(self) -> None:
        self.dump(f"up@{self.workspace_directory}")


class Down(kannon.TaskOnBullet[str]):
    def requires(self) -> Any:
        return Up()

    def run(self) -> None:
        self.dump(f"{self.load()} down@{self.workspace_directory}")


root = Down()  # built at import time: in a child that imports this module, under the child's config


class ScratchParameter(luigi.Parameter):
    """Prefixes a relative directory with $TEST_SCRATCH_BASE: the same text is another value where that differs
    (a normalize() that reads the environment, as some path parameters do)."""

    def normalize(self, x: Any) -> Any:
        base = os.environ.get("TEST_SCRATCH_BASE", "/master-scratch")
        return x if x is None or str(x).startswith(base) else f"{base}/{x}"


class Scratchy(kannon.TaskOnBullet[str]):
    scratch = ScratchParameter(default="tmp", significant=False)  # not in the unique id

    def run(self) -> None:
        self.dump(f"scratch={self.scratch}")


class Source(gokart.TaskOnKart[str]):
    def run(self) -> None:
        self.dump(f"source@{self.workspace_directory}")


class Consumer(kannon.TaskOnBullet[str]):
    def requires(self) -> Any:
        return Source()

    def run(self) -> None:
        self.dump(f"{self.load()} consumer")


source = Source()  # the upstream built at import time too: the master's requires() gets this object back
