"""Shared checks of issue 17's measurement tests: reported figures against the ones the pipeline chose."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e import usagepipe
from tests.support.procs import events

MEM_TOLERANCE = 0.15  # issue 17: peak minus the no-op's peak within 15 % of the touched amount
CPU_TOLERANCE = 0.20  # and CPU within 20 % of the burn


def usage_by_params(events_path: Path) -> dict[tuple[int, float], dict[str, Any]]:
    """The succeeded event of each Toucher, by (MiB touched, CPU seconds burned)."""
    out: dict[tuple[int, float], dict[str, Any]] = {}
    for e in events(events_path):
        if e["kind"] == "succeeded" and e.get("family") == "Toucher":
            assert "usage" in e, f"no usage in {e}"
            params = dict(p.split("=", 1) for p in e["params"].strip("()").split(", "))
            out[(int(params["mb"]), float(params["burn"]))] = e
    want = [(0, 0.0), (0, usagepipe.BURN_SECONDS), *((mb, 0.0) for mb in usagepipe.TOUCH_MB)]
    assert sorted(out) == sorted(want), out
    return out


def check_figures(events_path: Path, peak_source: str | tuple[str, ...]) -> dict[tuple[int, float], dict[str, Any]]:
    by = usage_by_params(events_path)
    sources = (peak_source,) if isinstance(peak_source, str) else peak_source
    noop = by[(0, 0.0)]["usage"]
    for mb in usagepipe.TOUCH_MB:
        u = by[(mb, 0.0)]["usage"]
        assert u["peak_source"] in sources, u
        touched = mb << 20
        extra = u["peak_rss_bytes"] - noop["peak_rss_bytes"]
        assert abs(extra - touched) <= MEM_TOLERANCE * touched, (
            f"{mb} MiB touched: peak {u['peak_rss_bytes']} - no-op {noop['peak_rss_bytes']} = {extra / 2**20:.1f} MiB")
    u = by[(0, usagepipe.BURN_SECONDS)]["usage"]
    burned = u["cpu_seconds"] - noop["cpu_seconds"]
    assert abs(burned - usagepipe.BURN_SECONDS) <= CPU_TOLERANCE * usagepipe.BURN_SECONDS, (
        f"{usagepipe.BURN_SECONDS} s burned: cpu {u['cpu_seconds']} - no-op {noop['cpu_seconds']} = {burned:.3f}")
    assert u["wall_seconds"] >= usagepipe.BURN_SECONDS  # one thread burning N CPU seconds takes N s at least
    assert all(e["usage"]["output_bytes"] > 0 for e in by.values())  # each dumped a pickle
    return by
