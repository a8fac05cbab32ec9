"""Task classes used by the tests. Children import them by module name, so they live in a real module."""

from __future__ import annotations

import datetime
import enum
import os
import signal
import time
from pathlib import Path
from typing import Any

import gokart
import luigi

import kannon


class Color(enum.Enum):
    RED = 1
    GREEN = 2


class Leaf(gokart.TaskOnKart[str]):
    name = luigi.Parameter()

    def run(self) -> None:
        self.dump(f"leaf-{self.name}")


class Bullet(kannon.TaskOnBullet[str]):
    """A bullet with knobs: sleep, fail a number of times (counted in a file), print a marker, skip its output."""

    name = luigi.Parameter()
    parents = gokart.ListTaskInstanceParameter(default=[])
    sleep = luigi.FloatParameter(default=0.0, significant=False)
    fail_times = luigi.IntParameter(default=0, significant=False)
    counter_dir = luigi.Parameter(default="", significant=False)
    marker = luigi.Parameter(default="", significant=False)
    skip_output = luigi.BoolParameter(default=False, significant=False)
    # Ordering between bullets without fixed sleeps: create `started_file` on start; wait for `wait_file` first.
    started_file = luigi.Parameter(default="", significant=False)
    wait_file = luigi.Parameter(default="", significant=False)

    def requires(self):  # type: ignore[no-untyped-def]
        return self.parents

    def run(self) -> None:
        if self.started_file:
            Path(self.started_file).touch()
        if self.wait_file:
            deadline = time.monotonic() + 120
            while not Path(self.wait_file).exists():
                assert time.monotonic() < deadline, f"{self.wait_file} never appeared"
                time.sleep(0.02)  # polls a file (no change notification); the deadline bounds it
        if self.marker:
            print(self.marker, flush=True)
        if self.counter_dir:
            counter = Path(self.counter_dir) / f"{self.name}.attempts"
            with counter.open("a") as f:
                f.write(f"{os.getpid()}\n")
            if len(counter.read_text().splitlines()) <= self.fail_times:
                raise RuntimeError(f"planned failure of {self.name}")
        if self.sleep:
            time.sleep(self.sleep)
        if self.skip_output:
            return
        upstream = ",".join(self.load(p) for p in self.parents)
        self.dump(f"{self.name}({upstream})")


class Join(gokart.TaskOnKart[list[str]]):
    parents = gokart.ListTaskInstanceParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return self.parents

    def run(self) -> None:
        self.dump([self.load(p) for p in self.parents])


class AllTypes(kannon.TaskOnBullet[dict[str, Any]]):
    """Every common parameter type, for hand-off round trips."""

    s = luigi.Parameter(default="x")
    i = luigi.IntParameter(default=1)
    f = luigi.FloatParameter(default=0.5)
    b = luigi.BoolParameter(default=False)
    d = luigi.DateParameter(default=datetime.date(2024, 2, 29))
    dt = luigi.DateSecondParameter(default=datetime.datetime(2024, 2, 29, 12, 30, 5))
    lst = luigi.ListParameter(default=[1, 2])
    tup = luigi.TupleParameter(default=(1, "a"))
    dct = luigi.DictParameter(default={"a": 1})
    color = luigi.EnumParameter(enum=Color, default=Color.RED)
    opt = luigi.OptionalParameter(default=None)
    note = luigi.Parameter(default="n", significant=False)
    many = gokart.ListTaskInstanceParameter(default=[])

    def requires(self):  # type: ignore[no-untyped-def]
        return self.many

    def run(self) -> None:
        self.dump(
            {
                "s": self.s,
                "i": self.i,
                "f": self.f,
                "note": self.note,
                "dct": dict(self.dct),
                "lst": list(self.lst),
                "color": self.color.name,
            }
        )


class EnvDependent(kannon.TaskOnBullet[str]):
    """requires() reads the environment: a non-deterministic id that only a child with other env reveals."""

    def requires(self):  # type: ignore[no-untyped-def]
        return Leaf(name=os.environ.get("KANNON_TEST_DRIFT", "same"))

    def run(self) -> None:
        self.dump("never")


class Untyped(kannon.TaskOnBullet[str]):
    value = luigi.Parameter()

    def run(self) -> None:
        self.dump(str(self.value))


class ConfigEcho(kannon.TaskOnBullet[str]):
    """Dumps a value of the luigi config as the child sees it (interpolated there: ``${ENV}`` references resolved)."""

    section = luigi.Parameter()
    option = luigi.Parameter()

    def run(self) -> None:
        self.dump(luigi.configuration.get_config().get(self.section, self.option, "<missing in the child>"))


class Stubborn(kannon.TaskOnBullet[str]):
    """Notes a SIGTERM in ``flag_dir``/<name>.sigterm and ignores it; runs until SIGKILLed. Announces itself in
    <name>.running first, so a test knows the handler is in place."""

    name = luigi.Parameter()
    flag_dir = luigi.Parameter(significant=False)

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: Path(self.flag_dir, f"{self.name}.sigterm").touch())
        Path(self.flag_dir, f"{self.name}.running").touch()
        while True:
            time.sleep(1)  # the task's "work": only SIGKILL ends it


class AwaitsEvent(gokart.TaskOnKart[str]):
    """A master task that runs until the run's ``--events`` log records ``kind`` for a task of ``family`` (at most
    120 s): it can finish only if the loop keeps launching and reporting bullets while a master task runs."""

    events = luigi.Parameter()
    kind = luigi.Parameter(default="succeeded")
    family = luigi.Parameter(default="Bullet")

    def run(self) -> None:
        import json

        deadline = time.monotonic() + 120
        while True:
            path = Path(self.events)
            lines = path.read_text().splitlines() if path.exists() else []
            seen = [json.loads(x) for x in lines[:-1]] + [json.loads(x) for x in lines[-1:] if x.endswith("}")]
            if any(e.get("kind") == self.kind and e.get("family") == self.family for e in seen):
                break
            assert time.monotonic() < deadline, f"no {self.kind} event of a {self.family} while this master task ran"
            time.sleep(0.05)  # polls a file (no change notification); the deadline bounds it
        self.dump(f"saw {self.kind} {self.family}")


class Probe(kannon.TaskOnBullet[dict[str, Any]]):
    """Notes what its process looks like when it starts -- pid, an environment variable, ``sys.path[0]``, whether
    SIGUSR2 has its default action -- and dumps that; then leaves behind what ``leave`` says: ``dirty`` (that
    variable, a sys.path entry and a SIGUSR2 handler: what a reused process must undo), ``thread`` (a thread still
    running), ``process`` (a sleeping child process, its pid in <flag_dir>/<name>.leftover), ``fail``, ``cpu``
    (0.3 s of CPU) or ``memory`` (200 MiB touched)."""

    name = luigi.Parameter()
    leave = luigi.Parameter(default="")
    flag_dir = luigi.Parameter(default="", significant=False)
    after = gokart.ListTaskInstanceParameter(default=[])

    def requires(self):  # type: ignore[no-untyped-def]
        return self.after

    def run(self) -> None:
        import subprocess
        import sys
        import threading

        seen = {"pid": os.getpid(), "env": os.environ.get("KANNON_PROBE_LEAK"), "path0": sys.path[0],
                "sigusr2_default": signal.getsignal(signal.SIGUSR2) is signal.SIG_DFL}  # fmt: skip
        if self.leave == "dirty":
            os.environ["KANNON_PROBE_LEAK"] = "1"
            sys.path.insert(0, "/kannon-probe-leak")
            signal.signal(signal.SIGUSR2, lambda *_: None)
        elif self.leave == "thread":
            threading.Thread(target=time.sleep, args=(600,), daemon=True).start()
        elif self.leave == "process":
            proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
            Path(self.flag_dir, f"{self.name}.leftover").write_text(str(proc.pid))
        elif self.leave == "fail":
            raise RuntimeError("the probe fails")
        elif self.leave == "cpu":
            start = time.process_time()
            while time.process_time() - start < 0.3:
                pass
        elif self.leave == "memory":
            block = bytearray(200 << 20)
            for i in range(0, len(block), 4096):
                block[i] = 1
        self.dump(seen)
