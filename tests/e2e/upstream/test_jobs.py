"""Job (suspend, deadlines, pod failure policy), garbage-collector, TTL-after-finished and scheduler behaviour of
the real controllers.

No kubelet runs: a pod that must run is bound to a Node a test registers, and the test writes its status through
pods/status as a kubelet would. A pod that must stay unscheduled asks for a node label no Node has.
"""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import watch

from tests.e2e.upstream.kube import condition, job_manifest, job_pods, set_pod_phase
from tests.support.procs import wait_until

pytestmark = pytest.mark.upstream

NOWHERE = {"nodeSelector": {"kannon.test/never": "true"}}  # matches no Node: the pod stays Pending, unbound
WAIT = 120  # the controllers react in about a second; the margin is for a loaded machine


def test_suspended_job_creates_no_pods_until_resumed(batch: Any, core: Any, namespace: str) -> None:
    batch.create_namespaced_job(namespace, job_manifest("held", suspend=True, pod_spec=NOWHERE))
    job = wait_until(lambda: condition(batch.read_namespaced_job("held", namespace), "Suspended"), WAIT,
                     "the Suspended condition", max_delay=0.5)  # fmt: skip
    assert job.reason == "JobSuspended"
    status = batch.read_namespaced_job("held", namespace).status
    assert status.active is None and status.start_time is None
    assert job_pods(core, namespace, "held") == []

    batch.patch_namespaced_job("held", namespace, {"spec": {"suspend": False}})
    wait_until(lambda: job_pods(core, namespace, "held"), WAIT, "a pod of the resumed Job", max_delay=0.5)

    def resumed() -> Any:
        conditions = batch.read_namespaced_job("held", namespace).status.conditions or []
        return next((c for c in conditions if c.type == "Suspended" and c.status == "False"), None)

    # The condition stays, flipped to False (pods and status are written separately: wait for it).
    assert wait_until(resumed, WAIT, "the Suspended condition to turn False", max_delay=0.5).reason == "JobResumed"


def test_background_deletion_of_a_job_removes_its_pods(batch: Any, core: Any, namespace: str) -> None:
    job = batch.create_namespaced_job(namespace, job_manifest("gc", pod_spec=NOWHERE))
    pod = wait_until(lambda: job_pods(core, namespace, "gc"), WAIT, "the Job's pod", max_delay=0.5)[0]
    owner = pod.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Job", "gc", job.metadata.uid, True)
    assert pod.metadata.labels["job-name"] == "gc" and pod.metadata.labels["controller-uid"] == job.metadata.uid

    batch.delete_namespaced_job("gc", namespace, propagation_policy="Background")
    wait_until(lambda: not job_pods(core, namespace, "gc"), WAIT, "the garbage collector to delete the pod",
               max_delay=0.5)  # fmt: skip


def test_deleting_a_job_without_propagation_policy_orphans_its_pods(batch: Any, core: Any, namespace: str) -> None:
    batch.create_namespaced_job(namespace, job_manifest("orphaning", pod_spec=NOWHERE))
    pod = wait_until(lambda: job_pods(core, namespace, "orphaning"), WAIT, "the Job's pod", max_delay=0.5)[0]
    batch.delete_namespaced_job("orphaning", namespace)  # batch/v1 Jobs default to orphanDependents

    def orphaned() -> bool:
        current = core.read_namespaced_pod(pod.metadata.name, namespace)
        return not current.metadata.owner_references

    wait_until(orphaned, WAIT, "the pod's ownerReference to be removed", max_delay=0.5)
    assert core.read_namespaced_pod(pod.metadata.name, namespace).metadata.deletion_timestamp is None


def test_finished_job_is_deleted_after_its_ttl_with_its_pod(batch: Any, core: Any, namespace: str,
                                                            node: str) -> None:  # fmt: skip
    start = batch.list_namespaced_job(namespace).metadata.resource_version
    batch.create_namespaced_job(namespace, job_manifest("ttl", ttlSecondsAfterFinished=1,
                                                        pod_spec={"nodeName": node}))  # fmt: skip
    pod = wait_until(lambda: job_pods(core, namespace, "ttl"), WAIT, "the Job's pod", max_delay=0.5)[0]
    assert "batch.kubernetes.io/job-tracking" in pod.metadata.finalizers
    set_pod_phase(core, namespace, pod.metadata.name, "Succeeded")

    seen = []
    for event in watch.Watch().stream(batch.list_namespaced_job, namespace, resource_version=start,
                                      timeout_seconds=WAIT):  # fmt: skip
        job = event["object"]
        seen.append((event["type"], bool(condition(job, "Complete"))))
        if event["type"] == "DELETED":
            break
    assert ("MODIFIED", True) in seen, seen  # Complete first...
    assert seen[-1][0] == "DELETED", seen  # ...then deleted by the TTL controller
    wait_until(lambda: not job_pods(core, namespace, "ttl"), WAIT, "the Job's pod to be deleted", max_delay=0.5)


def test_deleted_running_pod_of_a_backoff_limit_zero_job_fails_the_job(batch: Any, core: Any, namespace: str,
                                                                      node: str) -> None:  # fmt: skip
    batch.create_namespaced_job(namespace, job_manifest("fragile", backoffLimit=0, pod_spec={"nodeName": node}))
    pod = wait_until(lambda: job_pods(core, namespace, "fragile"), WAIT, "the Job's pod", max_delay=0.5)[0]
    set_pod_phase(core, namespace, pod.metadata.name, "Running")
    wait_until(lambda: batch.read_namespaced_job("fragile", namespace).status.active == 1, WAIT, "an active pod",
               max_delay=0.5)  # fmt: skip

    core.delete_namespaced_pod(pod.metadata.name, namespace)  # graceful: the "kubelet" below must end it
    target = wait_until(lambda: condition(batch.read_namespaced_job("fragile", namespace), "FailureTarget"), WAIT,
                        "the Job to be marked for failure", max_delay=0.5)  # fmt: skip
    assert target.reason == "BackoffLimitExceeded"
    status = batch.read_namespaced_job("fragile", namespace).status
    # Counted as failed at once, not replaced; but Failed waits until the pod has really terminated.
    assert (status.failed, status.terminating, status.active) == (1, 1, None)
    assert condition(batch.read_namespaced_job("fragile", namespace), "Failed") is None

    # What the kubelet does with a deleted pod: stop the container, report it, then remove the object.
    set_pod_phase(core, namespace, pod.metadata.name, "Failed")
    core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
    failed = wait_until(lambda: condition(batch.read_namespaced_job("fragile", namespace), "Failed"), WAIT,
                        "the Job to fail", max_delay=0.5)  # fmt: skip
    assert failed.reason == "BackoffLimitExceeded"
    status = batch.read_namespaced_job("fragile", namespace).status
    assert (status.failed, status.terminating, status.active) == (1, 0, None)
    assert job_pods(core, namespace, "fragile") == []  # the deleted pod was the only one the Job ever had


def test_scheduler_binds_a_pod_to_a_registered_ready_node(batch: Any, core: Any, namespace: str, node: str) -> None:
    batch.create_namespaced_job(namespace, job_manifest("placed", pod_spec={
        "nodeSelector": {"kannon.test/node": node},
        "containers": [{"name": "main", "image": "busybox", "resources": {"requests": {"cpu": "1", "memory": "1Gi"}}}],
    }))  # fmt: skip
    pod = wait_until(lambda: [p for p in job_pods(core, namespace, "placed") if p.spec.node_name], WAIT,
                     "kube-scheduler to bind the pod", max_delay=0.5)[0]  # fmt: skip
    assert pod.spec.node_name == node
    assert condition(pod, "PodScheduled") is not None


def test_pod_that_fits_no_node_is_reported_unschedulable(batch: Any, core: Any, namespace: str, node: str) -> None:
    batch.create_namespaced_job(namespace, job_manifest("stuck", pod_spec=NOWHERE))

    def unschedulable() -> Any:
        for pod in job_pods(core, namespace, "stuck"):
            for c in pod.status.conditions or []:
                if c.type == "PodScheduled" and c.status == "False":
                    return c
        return None

    reason = wait_until(unschedulable, WAIT, "the PodScheduled=False condition", max_delay=0.5)
    assert reason.reason == "Unschedulable"
    assert "didn't match Pod's node affinity/selector" in reason.message


def test_active_deadline_fails_the_job_and_deletes_its_running_pod(batch: Any, core: Any, namespace: str,
                                                                   node: str) -> None:  # fmt: skip
    batch.create_namespaced_job(namespace, job_manifest("late", activeDeadlineSeconds=3, pod_spec={"nodeName": node}))
    pod = wait_until(lambda: job_pods(core, namespace, "late"), WAIT, "the Job's pod", max_delay=0.5)[0]
    set_pod_phase(core, namespace, pod.metadata.name, "Running")

    target = wait_until(lambda: condition(batch.read_namespaced_job("late", namespace), "FailureTarget"), WAIT,
                        "the deadline to pass", max_delay=0.5)  # fmt: skip
    assert target.reason == "DeadlineExceeded"
    deleted = wait_until(lambda: core.read_namespaced_pod(pod.metadata.name, namespace).metadata.deletion_timestamp,
                         WAIT, "the controller to delete the running pod", max_delay=0.5)  # fmt: skip
    assert deleted is not None
    assert condition(batch.read_namespaced_job("late", namespace), "Failed") is None  # the pod still terminates

    set_pod_phase(core, namespace, pod.metadata.name, "Failed")  # the kubelet's part
    core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
    failed = wait_until(lambda: condition(batch.read_namespaced_job("late", namespace), "Failed"), WAIT,
                        "the Job to fail", max_delay=0.5)  # fmt: skip
    assert failed.reason == "DeadlineExceeded"
    assert job_pods(core, namespace, "late") == []


def test_evicted_pod_matching_an_ignore_rule_is_not_counted_and_is_replaced(batch: Any, core: Any, namespace: str,
                                                                            node: str) -> None:  # fmt: skip
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    batch.create_namespaced_job(namespace, job_manifest("evicted", backoffLimit=0, podFailurePolicy=policy,
                                                        pod_spec={"nodeName": node}))  # fmt: skip
    pod = wait_until(lambda: job_pods(core, namespace, "evicted"), WAIT, "the Job's pod", max_delay=0.5)[0]
    set_pod_phase(core, namespace, pod.metadata.name, "Running")

    core.create_namespaced_pod_eviction(pod.metadata.name, namespace, {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod.metadata.name, "namespace": namespace},
    })  # fmt: skip
    evicted = core.read_namespaced_pod(pod.metadata.name, namespace)
    disruption = condition(evicted, "DisruptionTarget")
    assert disruption is not None and disruption.reason == "EvictionByEvictionAPI"
    assert evicted.metadata.deletion_timestamp is not None

    # With a podFailurePolicy the replacement waits for the pod to be terminal (podReplacementPolicy: Failed).
    assert batch.read_namespaced_job("evicted", namespace).spec.pod_replacement_policy == "Failed"
    set_pod_phase(core, namespace, pod.metadata.name, "Failed")
    core.delete_namespaced_pod(pod.metadata.name, namespace, grace_period_seconds=0)
    def others() -> list[Any]:
        return [p for p in job_pods(core, namespace, "evicted") if p.metadata.uid != pod.metadata.uid]

    replacement = wait_until(others, WAIT, "a replacement pod", max_delay=0.5)
    assert len(replacement) == 1
    job = batch.read_namespaced_job("evicted", namespace)
    assert not job.status.failed and condition(job, "Failed") is None  # ignored: backoffLimit 0 not exceeded
