"""Bullets that touch a known amount of memory and burn a known amount of CPU (issue 17's measurement tests).

Every figure the tests expect comes from the constants here; a test runs ``usagepipe.py:root`` with the
environment variables below (backend-specific hints) and reads the usage from the event log."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import gokart
import luigi

import kannon

TOUCH_MB = (50, 300)  # MiB written (resident), beyond what a no-op bullet uses
# CPU seconds of busy work; the check allows 20 % of it (0.4 s) over the burning child's own CPU before the burn.
BURN_SECONDS = 2.0
SECRET = "p4ss-never-in-a-record"  # a parameter value that must appear in no child-result record
CPU_DIR = "usagepipe-cpu"  # beside the module: each Toucher's own CPU seconds before its burn


def _hints() -> kannon.Hints:
    memory = os.environ.get("USAGEPIPE_MEMORY")  # a memory hint: on the local backend, a per-attempt cgroup
    return kannon.Hints(memory=memory, cpu=os.environ.get("USAGEPIPE_CPU"))


class Toucher(kannon.TaskOnBullet[int]):
    kannon_hints = _hints()
    mb = luigi.IntParameter()
    burn = luigi.FloatParameter()
    token = luigi.Parameter(default=SECRET)

    def run(self) -> None:
        block = b"\x01" * (self.mb << 20)  # written, not just reserved: resident memory is what counts
        start = time.process_time()
        while time.process_time() - start < self.burn:  # CPU time of this process, whatever the machine's load
            pass
        _record_cpu(self.mb, self.burn, start)
        if os.environ.get("USAGEPIPE_FAIL") == str(self.mb):  # a failing attempt reports what it used as well
            raise RuntimeError(f"failing after touching {self.mb} MiB")
        self.dump(len(block) >> 20)


def _record_cpu(mb: int, burn: float, before: float) -> None:
    """This process's CPU seconds before the burn, beside this module (the test's directory, shared with
    every backend's children): the CPU a child spends before run() (interpreter, imports, rebuild) varies by half a
    second and more between two children on a loaded machine, so the check compares the reported figure with this
    very process's own, not with another child's."""
    directory = Path(__file__).parent / CPU_DIR
    directory.mkdir(exist_ok=True)
    tmp = directory / f".{mb}-{burn}.{os.getpid()}"
    tmp.write_text(json.dumps({"before": before}))
    tmp.replace(directory / f"{mb}-{burn}.json")  # whole: the attempt that succeeds writes last


class Root(gokart.TaskOnKart[int]):
    def requires(self) -> list[Toucher]:
        # Apart: touching memory costs CPU time too (page faults), which would blur the burn's figure.
        touchers = [Toucher(mb=mb, burn=0.0) for mb in TOUCH_MB]
        return [Toucher(mb=0, burn=0.0), Toucher(mb=0, burn=BURN_SECONDS), *touchers]

    def run(self) -> None:
        self.dump(sum(self.load()))


def root() -> Root:
    return Root()
