"""What measuring an attempt costs a bullet (issue 17: under 5 ms): the child's Meter, the usage read at the end and
the child-result record written atomically, as kannon.child does it, plus importing the two modules.

Each case runs in a fresh interpreter that has imported kannon.child (what every child imports anyway):

* ``rusage``: the child shares a large cgroup (this machine's, with every process on it), so the membership check
  reads that cgroup's process list before falling back to getrusage: the costliest path.
* ``cgroup``: the child joins a memory cgroup of its own first (as under a local memory hint; needs root and a
  usable memory controller), so the peak is read from the cgroup.

Prints one JSON row per case: median / max of ``--reps`` measurements in milliseconds, and the target."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

TARGET_MS = 5.0

CASE = r"""
import json, os, statistics, sys, tempfile, time
from kannon import child  # every child imports it: not part of the cost
t = time.perf_counter()
from kannon import childresult, measure
imported = (time.perf_counter() - t) * 1000
cgroup = sys.argv[2]
if cgroup:
    with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
        f.write(str(os.getpid()))
out = tempfile.mkdtemp()
output = os.path.join(out, "output.pkl")
with open(output, "wb") as f:
    f.write(b"x" * 100_000)
times, source = [], ""
for i in range(int(sys.argv[1])):
    t = time.perf_counter()
    meter = measure.Meter()
    usage = meter.usage([output])
    record = childresult.ChildResult(task="a" * 32, spec_sha256="b" * 64, attempt=1, outcome="ok", exit_code=0,
                                     usage=usage)
    childresult.write_atomic(os.path.join(out, "results", f"r-{i}.json"), record,
                             max_bytes=childresult.TERMINATION_MESSAGE_MAX)
    times.append((time.perf_counter() - t) * 1000)
    source = usage.peak_source
print(json.dumps({"import_ms": round(imported, 2), "median_ms": round(statistics.median(times), 3),
                  "max_ms": round(max(times), 3), "peak_source": source}))
"""


def _own_cgroup() -> str | None:
    from kannon.backends import _memlimit

    mech = _memlimit.mechanism()
    if mech.base is None:
        return None
    limit = _memlimit.ChildLimit(mech, f"bench-{os.getpid()}", 1 << 30)
    return str(limit.path)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=200)
    args = p.parse_args()
    with open("/proc/loadavg") as f:
        load = f.read().split()[0]
    cases = {"rusage": ""}
    cgroup = _own_cgroup()
    if cgroup is not None:
        cases["cgroup"] = cgroup
    with tempfile.TemporaryDirectory() as tmp:
        for name, path in cases.items():
            out = subprocess.run([sys.executable, "-c", CASE, str(args.reps), path], capture_output=True, text=True,
                                 cwd=tmp, check=True)  # fmt: skip
            row = json.loads(out.stdout)
            total = row["median_ms"] + row["import_ms"]
            print(json.dumps({"case": name, **row, "reps": args.reps, "load": load, "target_ms": TARGET_MS,
                              "meets_target": total < TARGET_MS}))  # fmt: skip
    if cgroup is not None:
        os.rmdir(cgroup)


if __name__ == "__main__":
    main()
