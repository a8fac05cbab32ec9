"""How big a pack's pod is (kannon.pack on Kubernetes): which bullets may share one, how many, and the resources
the pod then requests -- the members' summed, as the scheduler must see them to place k bullets at once."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

from kannon.backends.base import BackendError
from kannon.backends.kubernetes import K8sJobExecutor, build_job
from kannon.hints import Hints
from kannon.pack.protocol import LABEL_PACK
from tests.unit.test_k8s_naming import make_launch

SMALL = {"requests": {"cpu": "100m", "memory": "64Mi"}}


def _template(resources: dict[str, Any] | None) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": "img:1"}
    if resources is not None:
        container["resources"] = resources
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "ns"},
            "spec": {"template": {"spec": {"containers": [container]}}}}  # fmt: skip


def _ex(resources: dict[str, Any] | None, pack: int = 8) -> K8sJobExecutor:
    return K8sJobExecutor(_template(resources), pack=pack, api_client=client.ApiClient())  # never called here


def test_only_bullets_of_a_declared_small_size_are_packed_and_never_past_one_core_or_2_gib() -> None:
    assert _ex(None).pack_limit(Hints()) == 1  # neither the hints nor the template say how big: not packed
    assert _ex({"requests": {"cpu": "100m"}}).pack_limit(Hints()) == 1  # memory unknown
    assert _ex(None).pack_limit(Hints(cpu="100m", memory="64Mi")) == 8  # the hints say
    assert _ex(SMALL).pack_limit(Hints()) == 8  # the template says (as a LimitRange default would)
    assert _ex({"limits": {"cpu": "100m", "memory": "64Mi"}}).pack_limit(Hints()) == 8
    assert _ex(SMALL).pack_limit(Hints(cpu="300m")) == 3  # 1 core // 300m
    assert _ex(SMALL).pack_limit(Hints(memory="1Gi")) == 2  # 2 GiB // 1 GiB
    assert _ex(SMALL).pack_limit(Hints(cpu=2)) == 1
    assert _ex(SMALL).pack_limit(Hints(gpu=1)) == 1  # a device is not shared
    gpu = {"limits": {"cpu": "100m", "memory": "64Mi", "nvidia.com/gpu": "1"}}
    assert _ex(gpu).pack_limit(Hints()) == 1  # nor any resource but cpu, memory and ephemeral storage
    assert _ex(SMALL, pack=1).pack_limit(Hints()) == 1
    with pytest.raises(BackendError, match="--k8s-pack"):
        _ex(SMALL, pack=0)


def test_a_packs_pod_requests_its_members_resources_summed() -> None:
    template = _template({"requests": {"cpu": "100m", "memory": "64Mi", "ephemeral-storage": "1Gi"}})
    launch = make_launch(labels={LABEL_PACK: "4"})
    job = build_job(template, launch, name="n", namespace="ns", members=4)
    resources = job["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources == {"requests": {"cpu": "400m", "memory": str(4 * 64 * 2**20),
                                      "ephemeral-storage": str(4 * 2**30)}}  # fmt: skip  # no limits added
    hinted = build_job(template, make_launch(hints=Hints(cpu=0.25, memory="128Mi")), name="n", namespace="ns",
                       members=3)  # fmt: skip
    res = hinted["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert res["requests"]["cpu"] == res["limits"]["cpu"] == "750m"
    assert res["requests"]["memory"] == res["limits"]["memory"] == str(3 * 128 * 2**20)
    single = build_job(template, make_launch(), name="n", namespace="ns")
    assert single["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"] == "100m"
