"""The emulator's Kueue-like admission and ResourceQuota, read through the official client over HTTP.

Expected behaviour from https://kueue.sigs.k8s.io/docs/concepts/ (webhook suspend, Workload conditions, FIFO,
preemption) and https://kubernetes.io/docs/concepts/policy/resource-quotas/ (403 "exceeded quota", FailedCreate).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_emulator import NS, conditions, job_body, pods_of, wait_finished

pytestmark = pytest.mark.k8s

QUEUE = {"kueue.x-k8s.io/queue-name": "user-queue"}


def gated(name: str, gate: Path, grace: int | None = None, **kw: Any) -> dict[str, Any]:
    """A Job whose container runs until the file ``gate`` exists (the test decides when it finishes).

    ``grace``: the pod's terminationGracePeriodSeconds. Its container is a plain Python as PID 1 of its PID namespace,
    which ignores SIGTERM as init does (pid_namespaces(7)) once it runs, and dies of one that comes while it starts:
    how long a deletion takes depends on when it comes, up to the 30 s default. A test that deletes a running pod
    and then waits for what follows sets it short, so nothing depends on that timing."""
    code = f"import os,time\nwhile not os.path.exists({str(gate)!r}): time.sleep(0.05)"
    body = job_body(name, code, **kw)
    if grace is not None:
        body["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = grace
    return body


def workload(kube: KubeEmulator, job: str) -> dict[str, Any]:
    """The Job's Workload as the official client reads it (CustomObjectsApi, kueue.x-k8s.io/v1beta1)."""
    api = client.CustomObjectsApi(kube.api_client())
    uid = kube.jobs()[job]["metadata"]["uid"]
    found = api.list_namespaced_custom_object("kueue.x-k8s.io", "v1beta1", NS, "workloads",
                                              label_selector=f"kueue.x-k8s.io/job-uid={uid}")["items"]  # fmt: skip
    assert len(found) == 1, found
    out: dict[str, Any] = found[0]
    return out


def wl_cond(kube: KubeEmulator, job: str, ctype: str) -> dict[str, Any] | None:
    for c in (workload(kube, job).get("status") or {}).get("conditions") or []:
        if c["type"] == ctype:
            return dict(c)
    return None


def test_webhook_suspends_labelled_job_until_its_workload_is_admitted(kube: KubeEmulator, batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job_body("q1", labels=QUEUE))
    batch_api.create_namespaced_job(NS, job_body("plain"))
    assert batch_api.read_namespaced_job("q1", NS).spec.suspend is True
    assert not batch_api.read_namespaced_job("plain", NS).spec.suspend
    wait_finished(kube, "plain")
    # no ClusterQueue behind the LocalQueue yet: Pending, with why, and no pod
    kube.wait_for(lambda: (wl_cond(kube, "q1", "QuotaReserved") or {}).get("reason") == "Pending")
    assert "user-queue" in (wl_cond(kube, "q1", "QuotaReserved") or {})["message"]
    assert "Suspended" in conditions(kube.jobs()["q1"]) and not pods_of(kube, "q1")
    assert "startTime" not in kube.jobs()["q1"]["status"]
    kube.kueue.add_cluster_queue("cq", pods=1)
    kube.kueue.add_local_queue(NS, "user-queue", "cq")
    job = wait_finished(kube, "q1")
    assert "Complete" in conditions(job)
    assert (wl_cond(kube, "q1", "Admitted") or {})["status"] == "True"
    assert (wl_cond(kube, "q1", "QuotaReserved") or {})["status"] == "True"
    assert (wl_cond(kube, "q1", "Finished") or {})["status"] == "True"


def test_fifo_admission_one_at_a_time(kube: KubeEmulator, batch_api: Any, tmp_path: Path) -> None:
    kube.kueue.add_cluster_queue("cq", pods=1)
    kube.kueue.add_local_queue(NS, "user-queue", "cq")
    for name in ("a", "b", "c"):
        batch_api.create_namespaced_job(NS, gated(name, tmp_path / name, labels=QUEUE))
    kube.wait_for(lambda: pods_of(kube, "a"))
    kube.wait_for(lambda: (wl_cond(kube, "c", "QuotaReserved") or {}).get("reason") == "Pending")
    assert "insufficient unused quota for pods" in (wl_cond(kube, "b", "QuotaReserved") or {})["message"]
    assert kube.jobs()["b"]["spec"]["suspend"] and not pods_of(kube, "b") and not pods_of(kube, "c")
    order = []
    for name in ("a", "b", "c"):
        kube.wait_for(lambda n=name: pods_of(kube, n), message=f"{name} not admitted")  # type: ignore[misc]
        order.append(name)
        assert kube.kueue.admitted("cq") == 1
        (tmp_path / name).touch()
        wait_finished(kube, name)
    assert order == ["a", "b", "c"]


@pytest.mark.parametrize("backoff_limit", [0, 1])
def test_preemption_resuspends_deletes_pods_and_requeues(
    kube: KubeEmulator, batch_api: Any, tmp_path: Path, backoff_limit: int
) -> None:
    """Kueue suspends the preempted Job; the Job controller deletes its pod and counts it failed (upstream
    isPodFailed: a deleted pod that did not succeed), so a backoffLimit 0 Job fails; with room left it is requeued,
    re-admitted, and completes."""
    kube.kueue.add_cluster_queue("cq", pods=1)
    kube.kueue.add_local_queue(NS, "user-queue", "cq")
    batch_api.create_namespaced_job(NS, gated("p", tmp_path / "go", grace=1, labels=QUEUE, backoffLimit=backoff_limit))
    kube.wait_for(lambda: any(p["status"].get("phase") == "Running" for p in pods_of(kube, "p")))
    kube.kueue.hold("cq")
    kube.kueue.preempt("p")
    evicted = wl_cond(kube, "p", "Evicted") or {}
    assert (evicted.get("status"), evicted.get("reason")) == ("True", "Preempted")
    if backoff_limit == 0:
        job = wait_finished(kube, "p")
        assert conditions(job)["Failed"]["reason"] == "BackoffLimitExceeded" and job["status"]["failed"] == 1
        assert job["spec"]["suspend"] is True
        kube.wait_for(lambda: (wl_cond(kube, "p", "Finished") or {}).get("status") == "True")
        return

    def suspended_without_pods() -> dict[str, Any] | None:
        job = kube.jobs()["p"]
        live = [x for x in pods_of(kube, "p") if x["status"].get("phase") in ("Pending", "Running")]
        return job if "Suspended" in conditions(job) and not live else None

    job = kube.wait_for(suspended_without_pods)
    assert job["spec"]["suspend"] is True and "startTime" not in job["status"]
    kube.wait_for(lambda: (wl_cond(kube, "p", "Requeued") or {}).get("status") == "True")
    assert (wl_cond(kube, "p", "QuotaReserved") or {})["status"] == "False"
    kube.kueue.hold("cq", False)
    kube.wait_for(lambda: not kube.jobs()["p"]["spec"]["suspend"])
    (tmp_path / "go").touch()
    job = wait_finished(kube, "p")
    assert "Complete" in conditions(job), job["status"]
    assert job["status"]["failed"] == 1  # the pod the suspension deleted


def test_resource_quota_refuses_pods_then_admits_when_capacity_frees(
    kube: KubeEmulator, batch_api: Any, core_api: Any, tmp_path: Path
) -> None:
    kube.quotas.set(NS, "compute", {"pods": 1})
    batch_api.create_namespaced_job(NS, gated("first", tmp_path / "first"))
    kube.wait_for(lambda: pods_of(kube, "first"))
    batch_api.create_namespaced_job(NS, job_body("second"))

    def failed_create() -> list[Any]:
        events = core_api.list_namespaced_event(NS).items
        return [e for e in events if e.involved_object.name == "second" and e.reason == "FailedCreate"]

    event = kube.wait_for(failed_create)[0]
    assert event.type == "Warning"
    assert "exceeded quota: compute, requested: pods=1, used: pods=1, limited: pods=1" in event.message
    assert event.message.startswith('Error creating: pods "second-')
    assert not pods_of(kube, "second")
    assert core_api.read_namespaced_resource_quota("compute", NS).spec.hard == {"pods": "1"}
    (tmp_path / "first").touch()
    job = wait_finished(kube, "second")
    assert "Complete" in conditions(job) and len(pods_of(kube, "second")) == 1
