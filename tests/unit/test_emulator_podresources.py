"""The emulator's effective pod requests (kannon/testing/kube/podresources.py), which its scheduler check, its
ResourceQuota and its Kueue charge; worked examples from upstream's "Resource sharing within containers" rules
(init-containers and sidecar-containers docs). The scheduler's use is checked against the real kube-scheduler in
tests/e2e/podresource_checks.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kannon.testing.kube import kueue, podresources, quota


def c(memory: str | None = None, *, sidecar: bool = False, limit: str | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {}
    if memory:
        res["requests"] = {"memory": memory}
    if limit:
        res["limits"] = {"memory": limit}
    return {"name": "x", "resources": res, **({"restartPolicy": "Always"} if sidecar else {})}


def mi(spec: dict[str, Any], which: str = "requests") -> Decimal:
    return podresources.effective(spec, which)["memory"] / (1024 * 1024)


def test_init_containers_count_by_their_highest_and_apps_by_their_sum() -> None:
    # Two init containers 200Mi and 150Mi, two app containers 120Mi and 140Mi: max(200, 260) = 260Mi.
    assert mi({"initContainers": [c("200Mi"), c("150Mi")], "containers": [c("120Mi"), c("140Mi")]}) == 260
    # The same with init containers of 300Mi and 500Mi: max(500, 260) = 500Mi.
    assert mi({"initContainers": [c("300Mi"), c("500Mi")], "containers": [c("120Mi"), c("140Mi")]}) == 500


def test_a_sidecar_adds_to_the_apps_and_to_the_init_containers_after_it() -> None:
    # A regular init container before the sidecar runs alone; the one after it runs beside it.
    before = {"initContainers": [c("400Mi"), c("100Mi", sidecar=True)], "containers": [c("50Mi")]}
    assert mi(before) == 400  # max(400, 100 + 50)
    after = {"initContainers": [c("100Mi", sidecar=True), c("400Mi")], "containers": [c("50Mi")]}
    assert mi(after) == 500  # the init container starts beside the sidecar: 100 + 400
    assert mi({"initContainers": [c("300Mi", sidecar=True)], "containers": [c("300Mi")]}) == 600


def test_an_unset_request_is_its_limit_and_limits_follow_the_same_rules() -> None:
    spec = {"initContainers": [c(limit="1Gi")], "containers": [c("100Mi", limit="200Mi")]}
    assert mi(spec) == 1024 and mi(spec, "limits") == 1024


def test_resource_quota_and_kueue_charge_the_effective_requests() -> None:
    spec = {"initContainers": [c("2Gi")], "containers": [c("100Mi")]}
    assert quota._usage({"spec": spec}, "requests.memory") == 2 * 1024**3
    job = {"spec": {"parallelism": 3, "template": {"spec": spec}}}
    assert kueue.pod_set_requests(job)["memory"] == 3 * 2 * 1024**3
