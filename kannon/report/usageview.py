"""The report's resources view (issue 17): per task class, what its attempts used against what they requested.

One sample per measured attempt (a bullet's ``succeeded``, ``failed`` or ``retried`` event with ``usage``): its
peak resident memory and its busy cores (CPU seconds / wall seconds). Per class: the spread of both (min, median,
max) and the request. An attempt is

* over-provisioned when it used less than half its request (memory or cpu): the request could come down;
* at risk when its peak memory is above 90 % of its limit (an OOM-killed attempt reached it): the request should
  go up. The limit is ``memory_limit`` where one is requested, else ``memory``, which kannon's backends enforce
  as the limit too (Docker and local cgroups; Kubernetes requests = limits).

CPU is never "at risk" (over its limit a task is throttled, not killed). Computed here, drawn by report.js.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Mapping
from typing import Any

from kannon.hints import parse_cpu, parse_memory

OVER_PROVISIONED = 0.5  # used below this fraction of the request
AT_RISK = 0.9  # peak above this fraction of the memory limit
ATTEMPTS_LISTED = 100  # attempts listed per class on the page
_MEASURED = ("succeeded", "failed", "retried")


def _quantity(parse: Any, value: object) -> float | None:
    try:
        return float(parse(value)) if isinstance(value, (str, int, float)) else None
    except (ValueError, AttributeError):
        return None  # an event log is untrusted input: a bad figure is left out, not fatal


def _spread(values: list[float]) -> dict[str, float] | None:
    if not values:
        return None
    return {"min": min(values), "median": statistics.median(values), "max": max(values)}


def _number(value: object) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def resources_view(events: Iterable[Any]) -> list[dict[str, Any]]:
    """Per task class (sorted by name): samples, memory and cpu spread, requests, and its attempts — at most
    ``ATTEMPTS_LISTED``, at risk first, then over-provisioned (the spread and the counts cover them all): a class of
    10,000 measured bullets would otherwise add megabytes to the page for a list nobody reads to the end."""
    by_family: dict[str, list[dict[str, Any]]] = {}
    for e in events:
        if e.kind not in _MEASURED or e.placement not in (None, "bullet"):
            continue
        usage: Mapping[str, Any] | None = getattr(e, "usage", None)
        if not isinstance(usage, Mapping) or not e.family:
            continue
        req: Mapping[str, Any] = getattr(e, "requested_resources", None) or {}
        peak = _number(usage.get("peak_rss_bytes"))
        cpu, wall = _number(usage.get("cpu_seconds")), _number(usage.get("wall_seconds"))
        cores = cpu / wall if cpu is not None and wall else None
        if usage.get("peak_source") == "oom-limit":
            cores = None  # killed before it could report: its cpu time is unknown, not 0
        mem_req = _quantity(parse_memory, req.get("memory"))
        mem_limit = _quantity(parse_memory, req.get("memory_limit", req.get("memory")))
        cpu_req = _quantity(parse_cpu, req.get("cpu"))
        oom = usage.get("oom_limit_bytes") is not None
        over = [what for what, used, asked in (("memory", peak, mem_req), ("cpu", cores, cpu_req))
                if used is not None and asked and used < OVER_PROVISIONED * asked]  # fmt: skip
        risk = oom or (peak is not None and bool(mem_limit) and peak > AT_RISK * (mem_limit or 0))
        by_family.setdefault(e.family, []).append({
            "task_id": e.task_id, "params": e.params or "", "attempt": e.attempt, "outcome": e.kind,
            "peak": peak, "cores": None if cores is None else round(cores, 4), "memory_request": mem_req,
            "memory_limit": mem_limit, "cpu_request": cpu_req, "over": over, "at_risk": risk, "oom": oom,
            "requested": {str(k): str(v) for k, v in req.items()},
        })  # fmt: skip
    view = []
    for family in sorted(by_family):
        samples = by_family[family]
        requests = sorted({f"{k}={v}" for s in samples for k, v in s["requested"].items()})
        view.append({
            "family": family,
            "samples": len(samples),
            "instances": len({s["task_id"] for s in samples}),
            "memory": _spread([s["peak"] for s in samples if s["peak"] is not None]),
            "cpu": _spread([s["cores"] for s in samples if s["cores"] is not None]),
            "memory_request": _one([s["memory_request"] for s in samples]),
            "memory_limit": _one([s["memory_limit"] for s in samples]),
            "cpu_request": _one([s["cpu_request"] for s in samples]),
            "requested": requests,
            "over_provisioned": sum(1 for s in samples if s["over"]),
            "at_risk": sum(1 for s in samples if s["at_risk"]),
            "attempts": samples if len(samples) <= ATTEMPTS_LISTED else sorted(samples, key=_flag)[:ATTEMPTS_LISTED],
        })  # fmt: skip
    return view


def _flag(sample: Mapping[str, Any]) -> int:
    return 0 if sample["at_risk"] else 1 if sample["over"] else 2


def _one(values: list[float | None]) -> float | None:
    """The request when every attempt of the class had the same one (the usual case), else the largest."""
    known = [v for v in values if v is not None]
    return max(known) if known else None
