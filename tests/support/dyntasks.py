"""Pipelines with dynamic dependencies (a ``yield`` in run()), for the tests of issue 13.

Every task records the pid it ran in, in its output (where it ran) and in a per-task file of ``runs_dir`` (how often
its run() body started), so a test can say where each task ran and how often, without timing."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import gokart
import luigi

import kannon


def note_run(runs_dir: str, name: str) -> None:
    if runs_dir:
        with open(Path(runs_dir) / f"{name}.runs", "a", encoding="utf-8") as f:
            f.write(f"{os.getpid()}\n")


def runs(runs_dir: str | Path, name: str) -> list[int]:
    """The pids of every start of ``name``'s run() body, in order."""
    path = Path(runs_dir) / f"{name}.runs"
    return [int(line) for line in path.read_text().split()] if path.exists() else []


class PidBullet(kannon.TaskOnBullet):
    """Dumps {"name", "pid"}; fails while ``fail_times`` is more than the runs so far; waits for ``hold_file``."""

    name = luigi.Parameter()
    runs_dir = luigi.Parameter(default="", significant=False)
    fail_times = luigi.IntParameter(default=0, significant=False)
    hold_file = luigi.Parameter(default="", significant=False)

    def run(self) -> None:
        note_run(self.runs_dir, self.name)
        if self.hold_file:
            Path(self.hold_file + ".started").write_text(str(os.getpid()))
            while not Path(self.hold_file).exists():
                time.sleep(0.05)
        if self.fail_times and len(runs(self.runs_dir, self.name)) <= self.fail_times:
            raise RuntimeError(f"planned failure of {self.name}")
        self.dump({"name": self.name, "pid": os.getpid()})


class PidMaster(gokart.TaskOnKart):
    """A master task yielded like a bullet: runs in the master."""

    name = luigi.Parameter()
    runs_dir = luigi.Parameter(default="", significant=False)

    def run(self) -> None:
        note_run(self.runs_dir, self.name)
        self.dump({"name": self.name, "pid": os.getpid()})


class Yielder(gokart.TaskOnKart):
    """Yields one bullet per name (and master tasks for ``masters``), then dumps what the yield returned."""

    names = luigi.ListParameter()
    masters = luigi.ListParameter(default=[])
    runs_dir = luigi.Parameter(default="", significant=False)
    fail_times = luigi.IntParameter(default=0, significant=False)
    hold_dir = luigi.Parameter(default="", significant=False)

    def run(self) -> Any:
        note_run(self.runs_dir, "yielder")
        bullets = [PidBullet(name=n, runs_dir=self.runs_dir, fail_times=self.fail_times if n == self.names[0] else 0,
                             hold_file=str(Path(self.hold_dir) / n) if self.hold_dir else "")
                   for n in self.names]  # fmt: skip
        masters = [PidMaster(name=n, runs_dir=self.runs_dir) for n in self.masters]
        targets = yield [*bullets, *masters]
        self.dump({"pid": os.getpid(), "values": [t.load() for t in targets]})


class TwoYields(gokart.TaskOnKart):
    """Two yields in a row: the second is reached only once the first is complete."""

    runs_dir = luigi.Parameter(default="", significant=False)

    def run(self) -> Any:
        note_run(self.runs_dir, "two")
        first = yield PidBullet(name="first", runs_dir=self.runs_dir)
        second = yield {"x": PidBullet(name="second", runs_dir=self.runs_dir)}
        self.dump([first.load()["name"], second["x"].load()["name"]])


class YieldAndSide(gokart.TaskOnKart):
    names = luigi.ListParameter()
    runs_dir = luigi.Parameter(default="", significant=False)
    hold_dir = luigi.Parameter(default="", significant=False)

    def requires(self) -> Any:
        return {"y": Yielder(names=self.names, runs_dir=self.runs_dir, hold_dir=self.hold_dir),
                "side": SideAfter(hold_dir=self.hold_dir)}  # fmt: skip

    def run(self) -> None:
        self.dump(self.load("y"))


class SideAfter(kannon.TaskOnBullet):
    """Starts only after the master's yield stopped it — it needs a master task that runs after the yielder."""

    hold_dir = luigi.Parameter(significant=False)

    def requires(self) -> Any:
        return Plain(hold_dir=self.hold_dir)

    def run(self) -> None:
        Path(self.hold_dir, "side.started").write_text(str(os.getpid()))
        self.dump("side")


class Plain(gokart.TaskOnKart):
    hold_dir = luigi.Parameter(significant=False)

    def run(self) -> None:
        self.dump("plain")


class InMemoryBullet(kannon.TaskOnBullet):
    def output(self) -> Any:
        from gokart.conflict_prevention_lock.task_lock import make_task_lock_params
        from gokart.in_memory.target import make_in_memory_target

        return make_in_memory_target("dyn-in-memory", make_task_lock_params(file_path="dyn-in-memory",
                                                                           unique_id=self.make_unique_id()))

    def run(self) -> None:
        self.dump("x")


class YieldsInMemory(gokart.TaskOnKart):
    def run(self) -> Any:
        yield InMemoryBullet()
        self.dump("never")


class InMemoryMaster(gokart.TaskOnKart):
    """A master task with gokart's process-local target: fine for master consumers, not for a bullet."""

    def output(self) -> Any:
        from gokart.conflict_prevention_lock.task_lock import make_task_lock_params
        from gokart.in_memory.target import make_in_memory_target

        return make_in_memory_target("dyn-in-memory-master", make_task_lock_params(
            file_path="dyn-in-memory-master", unique_id=self.make_unique_id()))  # fmt: skip

    def run(self) -> None:
        self.dump("in memory")


class ConsumesInMemory(kannon.TaskOnBullet):
    def requires(self) -> Any:
        return InMemoryMaster()

    def run(self) -> None:
        self.dump(self.load())


class MasterConsumesInMemory(gokart.TaskOnKart):
    def requires(self) -> Any:
        return InMemoryMaster()

    def run(self) -> None:
        self.dump(self.load())


class BulletYielder(kannon.TaskOnBullet):
    """A bullet whose run() yields bullets: its child reports them to the master and exits; it runs again after."""

    names = luigi.ListParameter()
    runs_dir = luigi.Parameter(default="", significant=False)

    def run(self) -> Any:
        note_run(self.runs_dir, "byielder")
        targets = yield [PidBullet(name=n, runs_dir=self.runs_dir) for n in self.names]
        self.dump({"pid": os.getpid(), "values": [t.load() for t in targets]})


class DumpsThenHolds(kannon.TaskOnBullet):
    """Dumps its output, says so (``<hold_file>.dumped``), then waits for ``hold_file`` before returning: a master
    killed meanwhile leaves a committed output behind a run() that never returned."""

    name = luigi.Parameter()
    runs_dir = luigi.Parameter(significant=False)
    hold_file = luigi.Parameter(significant=False)

    def run(self) -> None:
        note_run(self.runs_dir, self.name)
        self.dump({"name": self.name, "pid": os.getpid()})
        Path(self.hold_file + ".dumped").write_text(str(os.getpid()))
        while not Path(self.hold_file).exists():
            time.sleep(0.05)


class YieldsHeld(gokart.TaskOnKart):
    runs_dir = luigi.Parameter(significant=False)
    hold_file = luigi.Parameter(significant=False)

    def run(self) -> Any:
        note_run(self.runs_dir, "yielder")
        target = yield DumpsThenHolds(name="held", runs_dir=self.runs_dir, hold_file=self.hold_file)
        self.dump({"pid": os.getpid(), "value": target.load()})


class HeldBulletYielder(kannon.TaskOnBullet):
    """A bullet that waits for ``hold_file`` before it yields: a master killed meanwhile leaves a child that then
    stops at its yield (exit 10) with no master to read its request."""

    names = luigi.ListParameter()
    runs_dir = luigi.Parameter(significant=False)
    hold_file = luigi.Parameter(significant=False)

    def run(self) -> Any:
        note_run(self.runs_dir, "hyielder")
        Path(self.hold_file + ".started").write_text(str(os.getpid()))
        while not Path(self.hold_file).exists():
            time.sleep(0.05)
        targets = yield [PidBullet(name=n, runs_dir=self.runs_dir) for n in self.names]
        self.dump({"pid": os.getpid(), "values": [t.load() for t in targets]})


class NestedYielder(gokart.TaskOnKart):
    """A master task that yields a bullet which itself yields bullets (issue 13's nested case): the master task gets
    the inner yielder's output, which holds what its own yield returned."""

    names = luigi.ListParameter()
    runs_dir = luigi.Parameter(default="", significant=False)

    def run(self) -> Any:
        note_run(self.runs_dir, "nested")
        target = yield BulletYielder(names=self.names, runs_dir=self.runs_dir)
        self.dump({"pid": os.getpid(), "value": target.load()})
