"""What the HTML report shows, computed in Python so it is unit-tested: graph layout, totals, critical path.

The page's script only draws what is here; it makes no decisions of its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kannon.logtail import shape
from kannon.report.model import RunModel, attempt_outcome
from kannon.result import Attempt, Status, TaskRecord

DATA_VERSION = 1


def layers(deps: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Layer of every node: 0 for nodes with no (known) dependency, else 1 + the deepest dependency's layer.

    Kahn's algorithm, so it is iterative (deep chains) and linear; nodes on a cycle (impossible in a real plan,
    but an event log is untrusted input) end up in layer 0 instead of looping.
    """
    known = {n: [d for d in ds if d in deps and d != n] for n, ds in deps.items()}
    dependents: dict[str, list[str]] = {n: [] for n in known}
    indeg = {n: len(ds) for n, ds in known.items()}
    for n, ds in known.items():
        for d in ds:
            dependents[d].append(n)
    layer = dict.fromkeys(known, 0)
    ready = [n for n in known if indeg[n] == 0]
    while ready:
        n = ready.pop()
        for m in dependents[n]:
            layer[m] = max(layer[m], layer[n] + 1)
            indeg[m] -= 1
            if indeg[m] == 0:
                ready.append(m)
    return layer


def order_layers(deps: Mapping[str, Sequence[str]], layer: Mapping[str, int], sweeps: int = 4) -> dict[str, int]:
    """Row of every node within its layer, by the barycenter heuristic (fewer edge crossings than input order).

    Alternates downward sweeps (place a node near the mean row of its dependencies) and upward sweeps (near its
    dependents); ties keep discovery order so the layout is deterministic.
    """
    by_layer: dict[int, list[str]] = {}
    for n in deps:  # discovery order
        by_layer.setdefault(layer[n], []).append(n)
    dependents: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            if d in dependents:
                dependents[d].append(n)
    row = {n: i for nodes in by_layer.values() for i, n in enumerate(nodes)}
    top = max(by_layer, default=0)
    for sweep in range(sweeps):
        down = sweep % 2 == 0
        for lv in range(1, top + 1) if down else range(top - 1, -1, -1):
            nodes = by_layer.get(lv, [])

            def key(n: str, down: bool = down) -> tuple[float, int]:
                nbrs = [m for m in (deps[n] if down else dependents[n]) if m in row]
                return (sum(row[m] for m in nbrs) / len(nbrs) if nbrs else float(row[n]), row[n])

            nodes.sort(key=key)
            for i, n in enumerate(nodes):
                row[n] = i
    return row


def place(deps: Mapping[str, Sequence[str]], layer: Mapping[str, int], row: Mapping[str, int]) -> dict[str, float]:
    """Vertical position of every node (in node slots): the widest layer is packed, every other layer sits
    next to its neighbours towards it, so a merge lines up with what it merges and a chain stays straight.

    Layers are placed outwards from the widest one: to its right at the mean position of their dependencies,
    to its left at the mean position of their dependents; overlaps are pushed down, keeping the row order.
    """
    by_layer: dict[int, list[str]] = {}
    for n in sorted(deps, key=lambda n: (layer[n], row[n])):
        by_layer.setdefault(layer[n], []).append(n)
    if not by_layer:
        return {}
    dependents: dict[str, list[str]] = {n: [] for n in deps}
    for n, ds in deps.items():
        for d in ds:
            if d in dependents:
                dependents[d].append(n)
    anchor = max(by_layer, key=lambda lv: (len(by_layer[lv]), -lv))
    y: dict[str, float] = {n: float(i) for i, n in enumerate(by_layer[anchor])}
    right = [lv for lv in sorted(by_layer) if lv > anchor]
    left = [lv for lv in sorted(by_layer, reverse=True) if lv < anchor]
    for lv, towards in [(lv, deps) for lv in right] + [(lv, dependents) for lv in left]:
        prev = -1.0
        for n in by_layer[lv]:
            placed = [y[m] for m in towards[n] if m in y]
            want = sum(placed) / len(placed) if placed else prev + 1
            y[n] = max(want, prev + 1)
            prev = y[n]
    return y


def task_weight(rec: TaskRecord) -> float:
    """Time a task held up its dependents in this run: first launch to last finish (waiting and retries too)."""
    if not rec.attempts:
        return 0.0
    end = max((a.finished_at for a in rec.attempts if a.finished_at is not None), default=None)
    if end is None:
        return 0.0
    return max(0.0, end - min(a.launched_at for a in rec.attempts))


def critical_path(tasks: Mapping[str, TaskRecord], layer: Mapping[str, int]) -> tuple[float, list[str]]:
    """The heaviest dependency chain (by :func:`task_weight`), dependencies first, and its total weight."""
    best: dict[str, float] = {}
    via: dict[str, str | None] = {}
    for n in sorted(tasks, key=lambda t: layer.get(t, 0)):  # dependencies come in lower layers
        prev = None
        prev_w = 0.0
        for d in tasks[n].deps:
            if d in best and best[d] > prev_w:
                prev, prev_w = d, best[d]
        best[n] = prev_w + task_weight(tasks[n])
        via[n] = prev
    if not best:
        return 0.0, []
    end = max(best, key=lambda t: best[t])
    if best[end] <= 0:
        return 0.0, []
    path: list[str] = []
    cur: str | None = end
    while cur is not None:
        path.append(cur)
        cur = via[cur]
    return best[end], path[::-1]


@dataclass(frozen=True)
class Totals:
    wall: float
    task_time: float  # sum of every attempt's running time (started -> finished), failed attempts included
    waiting_time: float  # sum of launched -> started over every attempt
    queue_time: float  # sum of queued -> launched: ready, but waiting for a free slot (or another master task)
    admission_time: float  # sum of the time launched bullets were held by the cluster's admission queue
    parallelism: float
    critical_path: float
    critical_tasks: list[str]


def _admission(a: Attempt) -> dict[str, Any]:
    """Only attempts an admission queue (Kueue) held carry these keys: the report stays small at 10,000 tasks."""
    if not a.admission_wait and not a.admission_reason:
        return {}
    return {"admission_wait": round(a.admission_wait, 3), "admission_reason": a.admission_reason}


def totals(model: RunModel) -> Totals:
    start = model.started_at if model.started_at is not None else (model.first_time or 0.0)
    end = model.finished_at if model.finished_at is not None else (model.last_time or start)
    wall = max(0.0, end - start)
    run_time = wait_time = queue_time = admission_time = 0.0
    for rec in model.tasks.values():
        for a in rec.attempts:
            if a.queued_at is not None:
                queue_time += max(0.0, a.launched_at - a.queued_at)
            admission_time += a.admission_wait
            began = a.started_at
            if began is None and a.finished_at is not None and attempt_outcome(rec, a) == "succeeded":
                began = a.launched_at  # it ran, even if no separate "started" was reported (master tasks may not)
            if began is None:
                if a.finished_at is not None:  # never got going (image pull, unschedulable): all waiting
                    wait_time += max(0.0, a.finished_at - a.launched_at)
                continue
            wait_time += max(0.0, began - a.launched_at)
            if a.finished_at is not None:
                run_time += max(0.0, a.finished_at - began)
    lay = layers({t: r.deps for t, r in model.tasks.items()})
    cp, cp_tasks = critical_path(model.tasks, lay)
    return Totals(
        wall=wall,
        task_time=run_time,
        waiting_time=wait_time,
        queue_time=queue_time,
        admission_time=admission_time,
        parallelism=run_time / wall if wall > 0 else 0.0,
        critical_path=cp,
        critical_tasks=cp_tasks,
    )


def report_data(model: RunModel) -> dict[str, Any]:
    """Everything the page draws, as plain JSON-able data; times are seconds since the run started."""
    start = model.started_at if model.started_at is not None else (model.first_time or 0.0)
    deps = {t: (*r.deps, *r.requested) for t, r in model.tasks.items()}  # dynamic edges are placed like static ones
    lay = layers(deps)
    row = order_layers(deps, lay)
    ys = place(deps, lay, row)
    tot = totals(model)
    critical = set(tot.critical_tasks)

    def rel(t: float | None) -> float | None:
        return None if t is None else round(t - start, 3)

    tasks = []
    for task_id, rec in model.tasks.items():
        tasks.append(
            {
                "id": task_id,
                "family": rec.family,
                "params": rec.params,
                "placement": rec.placement.value,
                "status": rec.status.value,
                "reason": rec.reason,
                "deps": [d for d in rec.deps if d in model.tasks],
                "requested": [d for d in rec.requested if d in model.tasks],  # dynamic: what its run() yielded
                "requested_by": rec.requested_by,
                "layer": lay[task_id],
                "row": row[task_id],
                "y": round(ys[task_id], 3),
                "critical": task_id in critical,
                "duration": round(task_weight(rec), 3) if rec.attempts else None,
                "attempts": [
                    {
                        "n": a.number,
                        "queued": rel(a.queued_at),
                        "launched": rel(a.launched_at),
                        "started": rel(a.started_at),
                        "finished": rel(a.finished_at),
                        "outcome": attempt_outcome(rec, a),
                        "where": a.where,
                        "reason": a.reason,
                        "failure_class": a.failure_class,
                        "exit_code": a.exit_code,
                        "log_tail": list(shape(a.log_tail)),
                    } | _admission(a)
                    for a in rec.attempts
                ],
            }
        )
    counts = model.counts()
    return {
        "version": DATA_VERSION,
        "run": {
            "run_id": model.run_id,
            "backend": model.backend,
            "started_at": start,
            "finished": model.finished_at is not None,
            "outcome": model.outcome or "incomplete",
            "root_id": model.root_id(),
            "wall": round(tot.wall, 3),
            "task_time": round(tot.task_time, 3),
            "waiting_time": round(tot.waiting_time, 3),
            "queue_time": round(tot.queue_time, 3),
            "admission_time": round(tot.admission_time, 3),
            "parallelism": round(tot.parallelism, 3),
            "critical_path": round(tot.critical_path, 3),
            "critical_tasks": tot.critical_tasks,
            "retries": model.retries,
            "counts": {s.value: counts.get(s.value, 0) for s in Status if counts.get(s.value)},
        },
        "tasks": tasks,
    }
