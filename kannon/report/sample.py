"""A realistic, deterministic event stream of a small run, for demos, documentation and tests of the views.

It covers every task event kind: an already complete task, a bullet queued for a slot, bullets that wait before
starting, a bullet that is out of memory once and succeeds on retry, one that fails for good with a traceback, a
dependent that is therefore not run, and master tasks.
"""

from __future__ import annotations

import hashlib

from kannon.events import Event

START = 1_760_000_000.0


def task_id(name: str) -> str:
    return hashlib.md5(name.encode(), usedforsecurity=False).hexdigest()


def sample_events(
    run_id: str = "run-sample",
    *,
    fail: bool = True,
    params_extra: str = "",
    start: float = START,
    backend: str = "local",
) -> list[Event]:
    """Events of a 9-task run. ``fail=False`` gives the all-green version; ``params_extra`` is appended to the
    params of TaskC(c0) (tests put markup there)."""
    evs: list[Event] = []

    def ev(kind: str, t: float, tid: str | None = None, **kw: object) -> None:
        evs.append(Event(kind=kind, run_id=run_id, time=start + t, task_id=tid, **kw))  # type: ignore[arg-type]

    a = task_id("TaskA")
    bs = [task_id(f"TaskB{i}") for i in range(4)]
    c0, c1 = task_id("TaskC0"), task_id("TaskC1")
    d = task_id("TaskD")
    root = task_id("Report")
    c0_params = "param=c0" + params_extra
    where_of = {}

    ev("run_started", 0.0, backend=backend)
    ev("planned", 0.01, root, family="Report", params="", placement="master", deps=(d,))
    ev("planned", 0.01, d, family="TaskD", params="n=2", placement="master", deps=(c0, c1))
    ev("planned", 0.01, c0, family="TaskC", params=c0_params, placement="bullet", deps=(bs[0], bs[1]))
    ev("planned", 0.01, c1, family="TaskC", params="param=c1", placement="bullet", deps=(bs[2], bs[3]))
    for i, b in enumerate(bs):
        ev("planned", 0.01, b, family="TaskB", params=f"param=b{i}", placement="bullet", deps=(a,))
    ev("skipped_complete", 0.02, a, family="TaskA", params="", placement="complete")

    # four B bullets ready together, three slots: b3 is queued until a slot frees (here: shortly after, so the
    # timings of the rest stay as they were); each waits a little before its process is up
    ev("queued", 0.05, bs[3], family="TaskB", params="param=b3", placement="bullet", attempt=1)
    for i, b in enumerate(bs):
        where_of[b] = f"pid {4100 + i}"
        ev(
            "launched",
            0.10 + 0.01 * i,
            b,
            family="TaskB",
            params=f"param=b{i}",
            placement="bullet",
            attempt=1,
            backend=backend,
        )
    for i, b in enumerate(bs):
        ev(
            "started",
            0.40 + 0.05 * i,
            b,
            family="TaskB",
            params=f"param=b{i}",
            placement="bullet",
            attempt=1,
            backend=backend,
            where=where_of[b],
        )
    ev("succeeded", 1.60, bs[0], family="TaskB", params="param=b0", placement="bullet", attempt=1, where="pid 4100")
    ev("succeeded", 1.90, bs[1], family="TaskB", params="param=b1", placement="bullet", attempt=1, where="pid 4101")
    # b2 is killed for memory once and succeeds on its second attempt
    ev(
        "retried",
        1.20,
        bs[2],
        family="TaskB",
        params="param=b2",
        placement="bullet",
        attempt=1,
        where="pid 4102",
        exit_code=137,
        failure_class="OOMKilled",
        reason="killed: out of memory (exit 137); raise TaskB's memory hint",
        log_tail=("loading 2 GB of features", "Killed"),
    )
    ev("launched", 1.25, bs[2], family="TaskB", params="param=b2", placement="bullet", attempt=2, backend=backend)
    ev("started", 1.40, bs[2], family="TaskB", params="param=b2", placement="bullet", attempt=2, where="pid 4110")
    ev("succeeded", 2.70, bs[2], family="TaskB", params="param=b2", placement="bullet", attempt=2, where="pid 4110")
    ev("succeeded", 2.10, bs[3], family="TaskB", params="param=b3", placement="bullet", attempt=1, where="pid 4103")

    ev("launched", 1.95, c0, family="TaskC", params=c0_params, placement="bullet", attempt=1, backend=backend)
    ev("started", 2.05, c0, family="TaskC", params=c0_params, placement="bullet", attempt=1, where="pid 4120")
    ev("succeeded", 3.30, c0, family="TaskC", params=c0_params, placement="bullet", attempt=1, where="pid 4120")
    ev("launched", 2.75, c1, family="TaskC", params="param=c1", placement="bullet", attempt=1, backend=backend)
    ev("started", 2.90, c1, family="TaskC", params="param=c1", placement="bullet", attempt=1, where="pid 4121")
    if fail:
        ev(
            "failed",
            3.60,
            c1,
            family="TaskC",
            params="param=c1",
            placement="bullet",
            attempt=1,
            where="pid 4121",
            exit_code=6,
            failure_class="TaskFailed",
            reason="TaskC.run raised ValueError: column 'c1' is empty",
            log_tail=(
                "Traceback (most recent call last):",
                '  File "pipeline.py", line 42, in run',
                "    raise ValueError(\"column 'c1' is empty\")",
                "ValueError: column 'c1' is empty",
            ),
        )
        ev(
            "upstream_failed",
            3.61,
            d,
            family="TaskD",
            params="n=2",
            placement="master",
            reason=f"needs TaskC {c1[:8]}, which failed",
        )
        ev(
            "upstream_failed",
            3.61,
            root,
            family="Report",
            params="",
            placement="master",
            reason=f"needs TaskD {d[:8]}, which was not run",
        )
        ev(
            "run_finished",
            3.70,
            reason="failed",
            counts={"succeeded": 5, "failed": 1, "upstream_failed": 2, "complete": 1},
        )
    else:
        ev("succeeded", 3.80, c1, family="TaskC", params="param=c1", placement="bullet", attempt=1, where="pid 4121")
        ev("launched", 3.82, d, family="TaskD", params="n=2", placement="master", attempt=1, backend="master")
        ev("started", 3.82, d, family="TaskD", params="n=2", placement="master", attempt=1, where="master")
        ev("succeeded", 4.30, d, family="TaskD", params="n=2", placement="master", attempt=1, where="master")
        ev("launched", 4.31, root, family="Report", params="", placement="master", attempt=1, backend="master")
        ev("started", 4.31, root, family="Report", params="", placement="master", attempt=1, where="master")
        ev("succeeded", 4.50, root, family="Report", params="", placement="master", attempt=1, where="master")
        ev("run_finished", 4.55, reason="ok", counts={"succeeded": 8, "complete": 1})
    evs.sort(key=lambda e: e.time)  # as a log would have them
    return evs


MIB = 2**20


def resources_events(run_id: str = "run-resources", start: float = START) -> list[Event]:
    """A measured run for the resources view (issue 17): three bullet classes and a master task.

    Load x3 asks for 4Gi and peaks near 300 MiB (over-provisioned); Train x4 asks for 1Gi, one fold peaks at
    960 MiB (at risk: above 90 % of its limit); Featurize asks for 512Mi: one day is OOM-killed (at its limit, cpu
    unknown), the other uses 0.2 of its 0.5 cores (cpu over-provisioned)."""
    evs: list[Event] = []
    root = task_id("Summary")

    def ev(kind: str, t: float, tid: str | None = None, **kw: object) -> None:
        evs.append(Event(kind=kind, run_id=run_id, time=start + t, task_id=tid, **kw))  # type: ignore[arg-type]

    def usage(peak_mib: float, cores: float, wall: float, oom: bool = False) -> dict[str, object]:
        peak = int(peak_mib * MIB)
        return {"peak_rss_bytes": peak, "peak_source": "oom-limit" if oom else "cgroup-v1",
                "cpu_seconds": round(cores * wall, 3), "wall_seconds": wall, "output_bytes": 4096,
                **({"oom_limit_bytes": peak} if oom else {})}  # fmt: skip

    bullets = [("Load", f"part={i}", {"cpu": "1", "memory": "4Gi"}, peak, cores)
               for i, (peak, cores) in enumerate([(280, 0.85), (300, 0.9), (310, 0.95)])]  # fmt: skip
    bullets += [("Train", f"fold={i}", {"cpu": "2", "memory": "1Gi"}, peak, cores)
                for i, (peak, cores) in enumerate([(610, 1.6), (650, 1.7), (700, 1.8), (960, 1.9)])]  # fmt: skip
    bullets += [("Featurize", "day=2", {"cpu": "500m", "memory": "512Mi"}, 380, 0.2)]
    ids = [task_id(f"{f}({p})") for f, p, *_ in bullets]
    oom_id = task_id("Featurize(day=1)")
    ev("run_started", 0.0, backend="local")
    ev("planned", 0.01, root, family="Summary", params="", placement="master", deps=(*ids, oom_id))
    for tid, (family, params, *_) in zip(ids, bullets, strict=True):
        ev("planned", 0.01, tid, family=family, params=params, placement="bullet")
    ev("planned", 0.01, oom_id, family="Featurize", params="day=1", placement="bullet")
    for i, (tid, (family, params, req, peak, cores)) in enumerate(zip(ids, bullets, strict=True)):
        t0, wall = 0.1 + 0.2 * i, 2.0 + 0.5 * (i % 3)
        common: dict[str, object] = {"family": family, "params": params, "placement": "bullet", "attempt": 1}
        ev("launched", t0, tid, backend="local", **common)
        ev("started", t0 + 0.1, tid, where=f"pid {4200 + i}", **common)
        ev("succeeded", t0 + 0.1 + wall, tid, where=f"pid {4200 + i}", usage=usage(peak, cores, wall),
           requested_resources=req, **common)  # fmt: skip
    oom = {"family": "Featurize", "params": "day=1", "placement": "bullet", "attempt": 1}
    ev("launched", 0.3, oom_id, backend="local", **oom)
    ev("started", 0.4, oom_id, where="pid 4290", **oom)
    ev("failed", 3.4, oom_id, where="pid 4290", exit_code=137, failure_class="OOMKilled",
       reason="out of memory: the task was killed at its memory limit of 512Mi by its memory cgroup (exit 137); "
              "raise `memory` in the task's hints", usage=usage(512, 0.0, 3.0, oom=True),
       requested_resources={"cpu": "500m", "memory": "512Mi"}, **oom)  # fmt: skip
    ev("upstream_failed", 3.5, root, family="Summary", params="", placement="master",
       reason=f"needs Featurize {oom_id[:8]}, which failed")  # fmt: skip
    ev("run_finished", 3.6, reason="failed", counts={"succeeded": 8, "failed": 1, "upstream_failed": 1})
    evs.sort(key=lambda e: e.time)
    return evs
