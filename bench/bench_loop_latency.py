"""Latency of a cancel through kannon's loop: from the cancel request (SIGINT to the master) to ``executor.cancel``
of a running child — once with the loop idle, once while an output check (``complete()``, as on a slow object
store) is blocked until the cancel has been carried out.

    python bench/bench_loop_latency.py [--reps 50]

In-process, with a small real Executor subclass that runs nothing (no processes: only the loop is measured). Prints
one JSON row per scenario: median, p90 and max milliseconds. Before the scheduler split, complete() ran on the loop
thread, so the second scenario's cancel waited for the whole blocked check (here: forever, until released).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import gokart
import luigi

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import contextlib

import kannon
from kannon.backends.base import Executor, Finished, Launch, Started
from kannon.scheduler import Interrupted

if __name__ == "__main__":
    # The task classes below must belong to an importable module, not to __main__ (kannon's plan refuses those):
    # run this file as that module instead.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import bench_loop_latency

    bench_loop_latency.main()
    raise SystemExit(0)

BLOCK = threading.Event()
RELEASE = threading.Event()
IN_COMPLETE = threading.Event()


class Quick(kannon.TaskOnBullet[str]):
    name = luigi.Parameter()
    blocks = luigi.BoolParameter(default=False, significant=False)

    def complete(self) -> bool:
        if self.blocks and BLOCK.is_set():
            IN_COMPLETE.set()
            RELEASE.wait(60)
        return bool(super().complete())


class Root(gokart.TaskOnKart[str]):
    parents = gokart.ListTaskInstanceParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return self.parents


class Timing(Executor):
    name = "timing"

    def __init__(self, quick_ids: set[str]) -> None:
        super().__init__()
        self.quick_ids = quick_ids
        self.running = threading.Event()
        self.cancelled_at: float | None = None
        self.tasks: dict[str, Quick] = {}

    def launch(self, launch: Launch) -> None:
        self.track(launch.key)
        self.emit(Started(launch.key, "timing"))
        if launch.task_id in self.quick_ids:  # finishes at once: the master then checks its output
            self.tasks[launch.task_id].dump("x")
            BLOCK.set()
            threading.Thread(target=self.emit, args=(Finished(launch.key, 0),)).start()
        else:
            self.running.set()

    def cancel(self, key: str) -> None:
        if self.cancelled_at is None:
            self.cancelled_at = time.perf_counter()
        threading.Thread(target=self.emit, args=(Finished(key, 130, "cancelled", "Cancelled"),)).start()


def one(rep: int, blocked: bool) -> float:
    BLOCK.clear(), RELEASE.clear(), IN_COMPLETE.clear()
    quick = Quick(name=f"q{rep}-{blocked}", blocks=blocked)
    slow = Quick(name=f"s{rep}-{blocked}")
    ex = Timing({quick.make_unique_id()} if blocked else set())
    ex.tasks[quick.make_unique_id()] = quick
    sent: list[float] = []

    def operator() -> None:
        ex.running.wait(30)
        if blocked:
            IN_COMPLETE.wait(30)
        sent.append(time.perf_counter())
        os.kill(os.getpid(), signal.SIGINT)
        deadline = time.monotonic() + 30
        while ex.cancelled_at is None and time.monotonic() < deadline:
            time.sleep(0.0005)  # polling the measurement only; the loop is not involved
        RELEASE.set()

    t = threading.Thread(target=operator)
    t.start()
    with contextlib.suppress(Interrupted):
        kannon.Kannon(executor=ex, max_parallel=2).build(Root(parents=[quick, slow]) if blocked else slow)
    t.join()
    assert ex.cancelled_at is not None, "the cancel never reached the executor"
    return (ex.cancelled_at - sent[0]) * 1000


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--reps", type=int, default=50)
    ns = p.parse_args()
    os.chdir(tempfile.mkdtemp(prefix="kannon-bench-loop-"))
    for blocked in (False, True):
        ms = [one(i, blocked) for i in range(ns.reps)]
        q = statistics.quantiles(ms, n=10)
        print(json.dumps({"bench": "cancel_latency", "complete_blocked": blocked, "reps": ns.reps,
                          "median_ms": round(statistics.median(ms), 3), "p90_ms": round(q[8], 3),
                          "max_ms": round(max(ms), 3)}))  # fmt: skip

