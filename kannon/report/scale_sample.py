"""A deterministic event stream of a big run (10,000 tasks), for the report's scale test and bench/bench_report.py.

The shapes are those of bench/bench_scale.py: ``flat`` is one master task requiring N bullets; ``lattice`` is 3
layers of N/3 bullets, each requiring three tasks of the layer below, joined by one master task. The run is
simulated on ``slots`` parallel slots, so launches queue and the timeline is as wide as a real one; every 97th
bullet is retried once (evicted), one in 1,000 fails for good (its dependents are then not run), and every
500th yields a dynamic dependency from its ``run()`` (stopped, the yielded task runs, then it runs again); every
attempt that ends reports what it used against its request (the report's resources view) — the same event kinds
and order a real run writes. No randomness: the same arguments give the same events.
"""

from __future__ import annotations

import heapq
from typing import Any

from kannon.events import Event
from kannon.report.sample import START, task_id

FAIL_EVERY = 1000
REQUEST = {"cpu": "500m", "memory": "1Gi"}  # every bullet's hints; what each used varies with its index
RETRY_EVERY = 97
YIELD_EVERY = 500


def scale_events(n: int = 10_000, shape: str = "lattice", *, slots: int = 100, run_id: str = "run-scale",
                 start: float = START) -> list[Event]:  # fmt: skip
    """Events of a run of ``n`` bullets (plus the root master task and the yielded tasks), in time order."""
    if shape not in ("flat", "lattice"):
        raise ValueError(f"unknown shape {shape!r} (flat | lattice)")
    evs: list[Event] = [Event("run_started", run_id, time=start, backend="kubernetes")]
    # (family, params, deps) of every bullet, dependencies first
    layers = 1 if shape == "flat" else 3
    width = max(1, n // layers)
    nodes: list[tuple[str, str, str, tuple[str, ...]]] = []
    prev: list[str] = []
    for lv in range(layers):
        cur = []
        count = width if lv < layers - 1 else n - width * (layers - 1)
        for i in range(count):
            fam = "NoOpBullet" if shape == "flat" else f"Layer{lv}"
            tid = task_id(f"{fam}({i})")
            deps = tuple(prev[(i + k) % len(prev)] for k in range(3)) if prev else ()
            nodes.append((tid, fam, f"n={i}", deps))
            cur.append(tid)
        prev = cur
    root = task_id(f"Root-{shape}-{n}")

    def ev(kind: str, t: float, tid: str, fam: str, params: str, placement: str = "bullet", **kw: Any) -> None:
        fields = {"task_id": tid, "family": fam, "params": params, "placement": placement, **kw}
        evs.append(Event(kind, run_id, time=start + t, **fields))  # type: ignore[arg-type]

    ev("planned", 0.01, root, "Root", f"count={n}", "master", deps=tuple(prev))
    for tid, fam, params, deps in nodes:
        ev("planned", 0.01, tid, fam, params, deps=deps)
    free = [0.05] * slots  # when each slot is next free
    heapq.heapify(free)
    done: dict[str, tuple[float, bool]] = {}  # task -> when it ended, and whether it succeeded

    def used(i: int, wall: float) -> dict[str, Any]:
        """What an attempt used, as its child-result record says: 200-1000 MiB, 0.05-0.45 cores (some at risk)."""
        peak = (200 + (i * 37) % 801) * 2**20
        return {"usage": {"peak_rss_bytes": peak, "peak_source": "cgroup-v2", "wall_seconds": round(wall, 3),
                          "cpu_seconds": round(wall * (0.05 + (i % 9) * 0.05), 3), "output_bytes": 4096},
                "requested_resources": REQUEST}  # fmt: skip

    def attempt(tid: str, fam: str, params: str, n_: int, ready: float, dur: float) -> float:
        slot = heapq.heappop(free)
        launched = max(slot, ready)
        if launched > ready:  # every slot was busy when it became ready
            ev("queued", ready, tid, fam, params, attempt=n_)
        ev("launched", launched, tid, fam, params, attempt=n_, backend="kubernetes")
        began = launched + 0.4
        where = f"pod {run_id}-{tid[:8]}-{n_}"
        ev("started", began, tid, fam, params, attempt=n_, where=where)
        heapq.heappush(free, began + dur)
        return began + dur

    for i, (tid, fam, params, deps) in enumerate(nodes):
        bad = [d for d in deps if not done[d][1]]
        if bad:
            ended = min(done[d][0] for d in bad)
            ev("upstream_failed", ended, tid, fam, params, reason=f"needs {bad[0][:8]}, which failed or was not run")
            done[tid] = (ended, False)
            continue
        ready = max((done[d][0] for d in deps), default=0.05)
        dur = 1.0 + (i % 7) * 0.1
        where = f"pod {run_id}-{tid[:8]}"
        n_ = 1
        if i % YIELD_EVERY == YIELD_EVERY - 1:  # run() yields a task not in the plan: stop, run it, run again
            end = attempt(tid, fam, params, 1, ready, 0.3)
            dyn = task_id(f"Extra({tid})")
            ev("planned", end, dyn, "Extra", f"for={i}", requested_by=tid)
            ev("requested", end, dyn, "Extra", f"for={i}", requested_by=tid)
            dyn_end = attempt(dyn, "Extra", f"for={i}", 1, end, 0.5)
            ev("succeeded", dyn_end, dyn, "Extra", f"for={i}", attempt=1, where=f"pod {run_id}-{dyn[:8]}-1",
               **used(i, 0.5))  # fmt: skip
            ready, n_ = dyn_end, 2
        if i % RETRY_EVERY == RETRY_EVERY - 1:
            end = attempt(tid, fam, params, n_, ready, dur / 2)
            ev("retried", end, tid, fam, params, attempt=n_, where=f"{where}-{n_}", exit_code=137, **used(i, dur / 2),
               failure_class="Evicted", reason="pod evicted (node pressure); retried")  # fmt: skip
            ready, n_ = end, n_ + 1
        end = attempt(tid, fam, params, n_, ready, dur)
        if i % FAIL_EVERY == FAIL_EVERY // 2 + 1:  # not a yielding or retried one: one story per task
            ev("failed", end, tid, fam, params, attempt=n_, where=f"{where}-{n_}", exit_code=6, **used(i, dur),
               failure_class="TaskFailed", reason=f"{fam}.run raised ValueError: shard {i} is empty",
               log_tail=("Traceback (most recent call last):", '  File "pipeline.py", line 42, in run',
                         f"    raise ValueError('shard {i} is empty')", f"ValueError: shard {i} is empty"))  # fmt: skip
            done[tid] = (end, False)
        else:
            ev("succeeded", end, tid, fam, params, attempt=n_, where=f"{where}-{n_}", **used(i, dur))
            done[tid] = (end, True)
    last = max((t for t, _ in done.values()), default=0.5)
    failed = not all(ok for _, ok in done.values())
    if failed:
        ev("upstream_failed", last, root, "Root", f"count={n}", "master", reason="needs a task which failed")
    else:
        ev("launched", last, root, "Root", f"count={n}", "master", attempt=1, where="master")
        ev("started", last, root, "Root", f"count={n}", "master", attempt=1, where="master")
        ev("succeeded", last + 0.2, root, "Root", f"count={n}", "master", attempt=1, where="master")
    evs.append(Event("run_finished", run_id, time=start + last + 0.3, reason="failed" if failed else "ok"))
    evs.sort(key=lambda e: e.time)  # stable: same-time events keep the order they happened in
    return evs
