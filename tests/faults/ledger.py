"""Ledger-writing tasks for the fault suite. Children import this module by name, so it is a real module.

"Exactly once", as this suite defines and checks it
----------------------------------------------------
A task's output is a single gokart target, written atomically (luigi writes a temporary file and renames it), that
carries a ``nonce`` drawn fresh by each run() call. Each run() appends to a shared ledger file (O_APPEND, one
write per line, so concurrent processes never interleave):

* ``start <label> <nonce> <existed> <pid>`` first thing in run(), where ``existed`` says whether the task's output
  already existed when run() began, and
* ``done <label> <nonce>`` right after the dump.

A kill can land anywhere, including between the dump and the ``done`` line, so a ``done`` line is evidence of a
commit but its absence is not evidence of none; the output's nonce is. The guarantee checked is: **once a task's
output exists, its run() never executes again** (``existed`` is never 1, the output's nonce never changes once
seen, no ``start`` of a task after its output was seen, at most one ``done`` per task), and every task ends with
exactly one committed output, written by one of its ``start`` lines. Runs that were started and killed before their
dump are legitimate re-executions (their output never existed) and are counted as "interrupted", not as duplicates.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gokart
import luigi

import kannon
from tests.support.procs import die_by_sigkill, node_pid

LEDGER_ENV = "KANNON_FAULTS_LEDGER"
NAP_ENV = "KANNON_FAULTS_NAP"
SIZE_ENV = "KANNON_FAULTS_SIZE"
MASTER_EVERY_ENV = "KANNON_FAULTS_MASTER_EVERY"


def append_line(path: str, line: str) -> None:
    """One write() on an O_APPEND descriptor: concurrent writers' lines never interleave (lines are < PIPE_BUF)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
    finally:
        os.close(fd)


def step_value(label: str, upstream: Sequence[str]) -> str:
    """What a node computes from its parents' values: the test recomputes it to check every final output."""
    return hashlib.sha256("|".join([label, *upstream]).encode()).hexdigest()[:16]


class _Ledgered:
    """A node of the campaign DAG. Its parents follow from (label, size, master_every, structure_seed) through
    shape(), so every parameter is flat text: constructing a node (in the master or in a child) stays cheap."""

    label = luigi.Parameter()
    size = luigi.IntParameter(default=100)
    master_every = luigi.IntParameter(default=4)
    structure_seed = luigi.IntParameter(default=6)
    ledger = luigi.Parameter(significant=False)
    nap = luigi.FloatParameter(default=0.1, significant=False)

    def _shape(self) -> Shape:
        return shape(self.size, self.master_every, self.structure_seed)

    def requires(self):  # type: ignore[no-untyped-def]
        sh = self._shape()
        return [node(sh, p, self.ledger, self.nap) for p in sh.parents[self.label]]

    def run(self) -> None:
        task: Any = self
        nonce = uuid.uuid4().hex
        existed = int(bool(task.output().exists()))
        append_line(self.ledger, f"start {self.label} {nonce} {existed} {node_pid()}")
        upstream = [task.load(p)["value"] for p in task.requires()]
        nap = self.nap * self._shape().nap_factor[self.label]
        if nap:
            time.sleep(nap)  # the task's "work": gives kills a chance to land while it runs
        task.dump({"label": self.label, "value": step_value(self.label, upstream), "nonce": nonce})
        append_line(self.ledger, f"done {self.label} {nonce}")


class Step(_Ledgered, kannon.TaskOnBullet[dict[str, str]]):
    """A campaign node that runs as a bullet."""


class MasterStep(_Ledgered, gokart.TaskOnKart[dict[str, str]]):  # type: ignore[misc]
    """A campaign node that runs in the master."""


@dataclass(frozen=True)
class Shape:
    """The DAG's structure: label -> parent labels, in topological order (the sink last)."""

    size: int
    master_every: int
    structure_seed: int
    parents: dict[str, tuple[str, ...]]
    on_master: frozenset[str]
    nap_factor: dict[str, float]

    def expected_values(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for label, parents in self.parents.items():
            values[label] = step_value(label, [values[p] for p in parents])
        return values


@functools.lru_cache(maxsize=16)
def shape(size: int = 100, master_every: int = 4, structure_seed: int = 6) -> Shape:
    """``size`` tasks: ``size - 1`` steps, each needing up to 3 of the 12 steps before it, and a sink (in the master)
    needing every step nothing else needs. Every ``master_every``-th step runs in the master (0: none), the rest
    are bullets. ``structure_seed`` fixes the structure: every master of a campaign builds the very same DAG."""
    rng = random.Random(structure_seed)
    parents: dict[str, tuple[str, ...]] = {}
    labels = [f"n{i:03d}" for i in range(size - 1)]
    for i, label in enumerate(labels):
        window = labels[max(0, i - 12) : i]
        k = min(len(window), rng.choice([0, 1, 1, 2, 2, 3])) if i else 0
        parents[label] = tuple(sorted(rng.sample(window, k)))
    used = {p for ps in parents.values() for p in ps}
    parents["sink"] = tuple(label for label in labels if label not in used)
    on_master = frozenset({"sink", *(label for i, label in enumerate(labels)
                                     if master_every and i % master_every == master_every - 1)})  # fmt: skip
    # Bullets nap 0.5-1.5 naps, one in ten 15 naps (long enough to still run when a killed master's successor
    # starts: re-attach); master steps nap a tenth (they run one at a time, in the master).
    factor = {label: round(rng.uniform(0.5, 1.5) * (0.1 if label in on_master else 15 if rng.random() < 0.1 else 1), 3)
              for label in parents}  # fmt: skip
    factor["sink"] = 0.0
    return Shape(size, master_every, structure_seed, parents, on_master, factor)


def node(sh: Shape, label: str, ledger: str, nap: float) -> gokart.TaskOnKart[Any]:
    cls = MasterStep if label in sh.on_master else Step
    return cls(label=label, size=sh.size, master_every=sh.master_every, structure_seed=sh.structure_seed,
               ledger=ledger, nap=nap)  # fmt: skip


def build(sh: Shape, ledger: str, nap: float = 0.1) -> dict[str, gokart.TaskOnKart[Any]]:
    return {label: node(sh, label, ledger, nap) for label in sh.parents}


def shape_from_env() -> Shape:
    return shape(int(os.environ.get(SIZE_ENV, "100")), int(os.environ.get(MASTER_EVERY_ENV, "4")))


def dag() -> gokart.TaskOnKart[Any]:
    """`kannon build tests.faults.ledger:dag` — the campaign's DAG, configured through the environment."""
    return node(shape_from_env(), "sink", os.environ[LEDGER_ENV], float(os.environ.get(NAP_ENV, "0.1")))


# -- tasks for the partial-output and child-fault tests -----------------------------------------------------------
class _TwoOutputs:
    """Writes output ``a``, then — while ``fail_flag`` exists, in its first ``fail_attempts`` attempts — fails:
    raising, or SIGKILLing its own process."""

    name = luigi.Parameter()
    fail_flag = luigi.Parameter(significant=False)
    fail_attempts = luigi.IntParameter(default=99, significant=False)
    how = luigi.ChoiceParameter(choices=["raise", "sigkill"], default="raise", significant=False)
    ledger = luigi.Parameter(significant=False)

    def output(self):  # type: ignore[no-untyped-def]
        task: Any = self
        return {"a": task.make_target(f"faults/{self.name}_a.pkl"), "b": task.make_target(f"faults/{self.name}_b.pkl")}

    def run(self) -> None:
        task: Any = self
        nonce = uuid.uuid4().hex
        append_line(self.ledger, f"start {self.name} {nonce} {int(task.output()['a'].exists())} {node_pid()}")
        task.dump({"nonce": nonce, "part": "a"}, "a")
        if Path(self.fail_flag).exists() and attempt_number() <= self.fail_attempts:
            if self.how == "sigkill":
                die_by_sigkill()
            raise RuntimeError(f"{self.name}: failing after writing only output a")
        task.dump({"nonce": nonce, "part": "b"}, "b")
        append_line(self.ledger, f"done {self.name} {nonce}")


class TwoOutputs(_TwoOutputs, kannon.TaskOnBullet[dict[str, str]]):
    """A bullet with two outputs that can fail between them."""


class MasterTwoOutputs(_TwoOutputs, gokart.TaskOnKart[dict[str, str]]):  # type: ignore[misc]
    """The same, run in the master."""


class _Blocker:
    """A list element whose str() — called by the text dump, line by line — announces the process and then blocks
    while ``hold`` exists: the dump stops part-way with megabytes already in luigi's temporary file."""

    def __init__(self, hold: str, announce_dir: str, name: str) -> None:
        self.hold, self.announce_dir, self.name = hold, announce_dir, name

    def __str__(self) -> str:
        if os.path.exists(self.hold):
            announce(self.announce_dir, self.name, attempt_number())
            while os.path.exists(self.hold):
                time.sleep(0.02)  # held until the test kills this process
        return "end"


class BigDump(kannon.TaskOnBullet[list[str]]):
    """A large single text output (``lines`` lines) whose dump is held mid-way while ``hold`` exists."""

    name = luigi.Parameter()
    lines = luigi.IntParameter(default=200_000)
    hold = luigi.Parameter(significant=False)
    announce_dir = luigi.Parameter(significant=False)

    def output(self):  # type: ignore[no-untyped-def]
        return self.make_target(f"faults/{self.name}.txt")

    def run(self) -> None:
        body: list[Any] = [f"line {i:07d} of {self.name}" for i in range(self.lines)]
        body.append(_Blocker(self.hold, self.announce_dir, self.name))
        self.dump(body)


def announce(directory: str, name: str, attempt: int) -> None:
    """``<name>.<attempt>.pid`` holding this process's pid, written whole (a reader never sees it half-written)."""
    final = Path(directory, f"{name}.{attempt}.pid")
    tmp = final.with_suffix(".tmp")
    tmp.write_text(str(node_pid()))  # the node's pid: the test signals it from outside the pod
    tmp.rename(final)


def attempt_number() -> int:
    return int(os.environ.get("KANNON_ATTEMPT", "1"))


class Sleeper(kannon.TaskOnBullet[str]):
    """Announces itself (announce()), then — in its first ``block_attempts`` attempts — runs for ``seconds``: long
    enough to be killed, cancelled or deleted by a test. Later attempts finish at once."""

    name = luigi.Parameter()
    announce_dir = luigi.Parameter(significant=False)
    block_attempts = luigi.IntParameter(default=1, significant=False)
    seconds = luigi.FloatParameter(default=600.0, significant=False)
    parents = gokart.ListTaskInstanceParameter(default=[])
    hog_mb = luigi.IntParameter(default=0, significant=False)

    def requires(self):  # type: ignore[no-untyped-def]
        return self.parents

    def run(self) -> None:
        attempt = attempt_number()
        announce(self.announce_dir, self.name, attempt)
        if self.hog_mb:
            hog = b"\x01" * (self.hog_mb << 20)  # written, not just reserved: a cgroup limit counts touched pages
            print(f"holding {len(hog)} bytes", flush=True)
        if attempt <= self.block_attempts:
            deadline = time.monotonic() + self.seconds
            while time.monotonic() < deadline:
                time.sleep(0.05)  # the task's "work"
        self.dump(f"{self.name}:" + ",".join(self.load(p) for p in self.parents))


class LedgerHog(Sleeper):
    """A Sleeper of its own family (so faults can target its Jobs by name) that is meant to run out of memory."""


class Doomed(Sleeper):
    """A Sleeper whose Job a test deletes from outside."""


class Stuck(Sleeper):
    """A Sleeper whose pods never get scheduled."""


class Pull(Sleeper):
    """A Sleeper whose first pod cannot pull its image."""


def partial_master() -> Collect:
    """`kannon build tests.faults.ledger:partial_master` — a master task that SIGKILLs the master between its two
    dumps while KANNON_FAULTS_FAIL_FLAG exists."""
    return Collect(parents=[MasterTwoOutputs(name="pm", how="sigkill", fail_flag=os.environ["KANNON_FAULTS_FAIL_FLAG"],
                                             ledger=os.environ[LEDGER_ENV])])  # fmt: skip


def sleepers() -> Collect:
    """`kannon build tests.faults.ledger:sleepers` — KANNON_FAULTS_SLEEPERS bullets that run until cancelled."""
    directory = os.environ["KANNON_FAULTS_ANNOUNCE"]
    count = int(os.environ.get("KANNON_FAULTS_SLEEPERS", "3"))
    return Collect(parents=[Sleeper(name=f"s{i}", announce_dir=directory, block_attempts=99) for i in range(count)])


class Collect(gokart.TaskOnKart[list[str]]):  # type: ignore[misc]
    """Master-side join."""

    parents = gokart.ListTaskInstanceParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return self.parents

    def run(self) -> None:
        self.dump([self.load(p) for p in self.parents])


class Echo(kannon.TaskOnBullet[dict[str, str]]):
    """Writes its parameters back as the child received them (for hostile-input tests)."""

    value = luigi.Parameter()
    note = luigi.Parameter(default="", significant=False)

    def run(self) -> None:
        self.dump({"value": self.value, "note": self.note, "run_id": os.environ.get("KANNON_RUN_ID", "")})
