"""The report's resources view (issue 17): per task class the spread of peak memory and busy cores over every
measured attempt, against the request, with over-provisioned (< 50 % of the request) and at-risk (> 90 % of the
memory limit, or OOM-killed) attempts counted."""

from __future__ import annotations

import json
import re

from kannon.events import Event
from kannon.report import render_report
from kannon.report.sample import MIB, resources_events, sample_events
from kannon.report.usageview import resources_view


def test_spread_requests_and_flags_per_class() -> None:
    view = {c["family"]: c for c in resources_view(resources_events())}
    assert list(view) == ["Featurize", "Load", "Train"]  # the master task Summary is not measured
    load, train, feat = view["Load"], view["Train"], view["Featurize"]
    assert load["samples"] == 3 and load["instances"] == 3
    assert load["memory"] == {"min": 280 * MIB, "median": 300 * MIB, "max": 310 * MIB}
    assert load["cpu"] == {"min": 0.85, "median": 0.9, "max": 0.95}
    assert (load["memory_request"], load["cpu_request"]) == (4 * 1024 * MIB, 1.0)
    assert (load["over_provisioned"], load["at_risk"]) == (3, 0)  # ~300 MiB of 4Gi: below half, all three
    assert train["memory"] == {"min": 610 * MIB, "median": 675 * MIB, "max": 960 * MIB}
    assert (train["over_provisioned"], train["at_risk"]) == (0, 1)  # 960 MiB > 0.9 x 1Gi = 921.6 MiB
    assert [a["params"] for a in train["attempts"] if a["at_risk"]] == ["fold=3"]
    # Featurize: the OOM-killed day is at risk and adds no cpu figure (unknown, not 0); the other uses 0.2 of 0.5
    assert feat["samples"] == 2 and feat["cpu"] == {"min": 0.2, "median": 0.2, "max": 0.2}
    assert (feat["over_provisioned"], feat["at_risk"]) == (1, 1)
    assert [(a["params"], a["over"], a["oom"]) for a in feat["attempts"]] == [("day=1", [], True),
                                                                              ("day=2", ["cpu"], False)]


def test_a_memory_limit_above_the_request_is_what_at_risk_is_measured_against() -> None:
    def one(peak_mib: int, requested: dict[str, str]) -> dict[str, object]:
        e = Event("succeeded", "r", task_id="t" * 32, family="A", placement="bullet", attempt=1,
                  usage={"peak_rss_bytes": peak_mib * MIB, "cpu_seconds": 1.0, "wall_seconds": 1.0},
                  requested_resources=requested)  # fmt: skip
        return resources_view([e])[0]

    assert one(950, {"memory": "1Gi"})["at_risk"] == 1
    assert one(950, {"memory": "1Gi", "memory_limit": "2Gi"})["at_risk"] == 0
    assert one(920, {"memory": "1Gi"})["at_risk"] == 0  # 920 < 921.6
    assert one(511, {"memory": "1Gi"})["over_provisioned"] == 1 and one(512, {"memory": "1Gi"})["over_provisioned"] == 0
    assert one(100, {})["over_provisioned"] == 0  # no request, nothing to compare with
    assert one(100, {"memory": "a lot"})["memory_request"] is None  # untrusted log: a bad figure is left out


def test_the_report_carries_the_view_and_a_run_without_usage_has_none() -> None:
    def data(html: str) -> dict[str, object]:
        m = re.search(r'<script type="application/json" id="kannon-data">(.*?)</script>', html, re.S)
        assert m is not None
        return dict(json.loads(m.group(1)))

    with_usage = data(render_report(resources_events()))
    assert [c["family"] for c in with_usage["resources"]] == ["Featurize", "Load", "Train"]  # type: ignore[index,union-attr]
    assert data(render_report(sample_events()))["resources"] == []


def test_a_class_of_thousands_lists_100_attempts_flagged_first_and_its_spread_covers_all():
    """Issue 16: 10,000 measured bullets; the page lists 100 attempts of a class (at risk, then over-provisioned,
    then the rest), while the samples, the flags' counts and the spread are over every attempt."""
    from kannon.report.scale_sample import scale_events

    view = {c["family"]: c for c in resources_view(scale_events(10_000, "lattice"))}
    layer0 = view["Layer0"]
    assert layer0["samples"] > 3_333 and len(layer0["attempts"]) == 100  # + its retried and yielding attempts
    flags = [0 if a["at_risk"] else 1 if a["over"] else 2 for a in layer0["attempts"]]
    assert flags == sorted(flags) and flags[0] == 0
    assert layer0["at_risk"] > 100 and layer0["memory"]["max"] == 1000 * 2**20  # over all of them, not the listed
    assert len(view["Extra"]["attempts"]) == view["Extra"]["samples"] == 20  # a small class lists every attempt
