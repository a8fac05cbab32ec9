"""Requested against used, on the master's side (issue 17): what goes into events, BuildResult and the summary.

The child measures itself (kannon.measure) and reports in its child-result record (kannon.childresult); a backend
hands the record over in ``Finished.result``. An OOM-killed child is killed before it can write one: the master
then fills in what it knows, the limit the attempt hit (``oom_limit_bytes``, also as its peak, ``peak_source``
"oom-limit") and the attempt's wall time; its CPU time is unknown and reported as 0.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from kannon.backends.base import Finished
from kannon.childresult import Usage
from kannon.hints import Hints

_OUTCOME_KINDS = frozenset({"succeeded", "failed", "retried"})


def requested_resources(hints: Hints | None) -> dict[str, str]:
    """The task's effective resource hints as written, only those set: ``{"cpu": "500m", "memory": "1Gi"}``."""
    if hints is None:
        return {}
    out: dict[str, str] = {}
    for name in ("cpu", "memory", "memory_limit"):  # memory_limit: if Hints grows one (issue 17's growth on OOM)
        value = getattr(hints, name, None)
        if value is not None:
            out[name] = str(value)
    return out


def attempt_usage(fin: Finished, hints: Hints | None, wall_seconds: float | None) -> Usage | None:
    """What an attempt used: the child's record, with the limit filled in when the attempt was OOM-killed."""
    usage = fin.result.usage if fin.result is not None else None
    if fin.failure_class != "OOMKilled":
        return usage
    limit = (hints or Hints()).memory_bytes
    if limit is None:
        return usage
    if usage is not None:
        return usage if usage.oom_limit_bytes is not None else dataclasses.replace(usage, oom_limit_bytes=limit)
    return Usage(peak_rss_bytes=limit, peak_source="oom-limit", cpu_seconds=0.0, wall_seconds=wall_seconds or 0.0,
                 output_bytes=0, oom_limit_bytes=limit)  # fmt: skip


def event_fields(kind: str, usage: Usage | None, requested: dict[str, str]) -> dict[str, Any]:
    """The optional ``usage`` / ``requested_resources`` keys of a succeeded, failed or retried event."""
    if kind not in _OUTCOME_KINDS:
        return {}
    out: dict[str, Any] = {}
    if usage is not None:
        out["usage"] = dataclasses.asdict(usage)
    if requested:
        out["requested_resources"] = dict(requested)
    return out


def fmt_bytes(n: float) -> str:
    """312 MiB, 1.5 GiB, 900 KiB: binary units, as Kubernetes quantities use them."""
    for unit in ("B", "KiB", "MiB"):
        if n < 1024:
            return f"{n:.0f} {unit}"
        n /= 1024
    return f"{n:.1f} GiB".replace(".0 ", " ")


def summary_text(usage: Usage | None, requested: dict[str, str]) -> str:
    """``mem 312 MiB / 1Gi req, cpu 0.5 s``: used against requested, short, for the end-of-run summary."""
    if usage is None:
        return ""
    parts = []
    if usage.peak_rss_bytes is not None:
        mem = f"mem {fmt_bytes(usage.peak_rss_bytes)}"
        if usage.oom_limit_bytes is not None:
            mem = f"mem over {fmt_bytes(usage.oom_limit_bytes)} limit (OOM)"
        elif "memory" in requested:
            mem += f" / {requested['memory']} req"
        parts.append(mem)
    if usage.peak_source != "oom-limit":
        cpu = f"cpu {usage.cpu_seconds:.1f} s"
        if "cpu" in requested and usage.wall_seconds > 0:
            cpu += f" ({usage.cpu_seconds / usage.wall_seconds:.2f} of {requested['cpu']} req)"
        parts.append(cpu)
    return ", ".join(parts)
