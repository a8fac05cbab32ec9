"""The master's own work for one master task with N requirements (issue 16), with and without ``kannon.reqmemo``.

    python bench/bench_requires.py [--count 1000] [--reps 2]

The flat shape of ``bench_scale.py`` without an executor: ``bench/_dags.py`` ``noop_root(N)`` whose N no-op bullets
were built beforehand (``gokart.build``, not measured), then ``make_plan(root)`` and ``runner.run_one(root)`` as the
master does them, in a fresh process per measurement: ``memo`` inside ``reqmemo.once_per_build()`` (as
``Kannon.build`` runs them), ``plain`` outside it (every caller asks ``requires()`` itself, as before the memo).
CPU is ``time.thread_time()`` of the one thread doing it; ``requires_calls`` counts the root's ``requires()``.
Modes alternate, so both see the same machine load."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH.parent), str(BENCH)]


def measure(count: int, memo: bool) -> dict[str, object]:
    import _dags
    import gokart

    from kannon import plan, reqmemo, runner

    runner.quiet_luigi()
    for i in range(count):
        gokart.build(_dags.NoOpBullet(n=i), reset_register=False, log_level=0, return_value=False)
    root = _dags.NoOpRoot(count=count)
    calls = [0]
    original = _dags.NoOpRoot.requires

    def counted(self):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return original(self)

    _dags.NoOpRoot.requires = counted  # type: ignore[method-assign]
    with reqmemo.once_per_build() if memo else contextlib.nullcontext():
        t0 = time.thread_time()
        plan.make_plan(root)
        t1 = time.thread_time()
        runner.run_one(root)
        t2 = time.thread_time()
    return {"bench": "master_requires", "mode": "memo" if memo else "plain", "requirements": count,
            "plan_ms": round((t1 - t0) * 1000), "run_ms": round((t2 - t1) * 1000),
            "master_ms_per_task": round((t2 - t0) * 1000 / count, 2), "requires_calls": calls[0]}  # fmt: skip


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "_one":
        os.chdir(tempfile.mkdtemp(prefix="kannon-bench-requires-"))
        print(json.dumps(measure(int(sys.argv[2]), sys.argv[3] == "memo")))
        return
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=1000)
    p.add_argument("--reps", type=int, default=2)
    ns = p.parse_args()
    print(json.dumps({"bench": "machine", "loadavg_at_start": os.getloadavg(), "cpus": os.cpu_count()}))
    for _ in range(ns.reps):
        for mode in ("plain", "memo"):
            out = subprocess.run([sys.executable, __file__, "_one", str(ns.count), mode], check=True,
                                 capture_output=True, text=True)  # fmt: skip
            print(out.stdout.strip().splitlines()[-1], flush=True)
    print(json.dumps({"bench": "machine", "loadavg_at_end": os.getloadavg()}))


if __name__ == "__main__":
    main()
