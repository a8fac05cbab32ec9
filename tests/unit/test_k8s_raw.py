"""The JSON views of :mod:`kannon.backends.kubernetes.raw` answer what the official client's typed models answer.

Watch events, lists and reads by name reach the tracker as views of the API's JSON; adopted Jobs, create answers and
the unit tests' fixtures are client models. Both must read, and classify, the same. The objects below are in the
API's JSON form as an API server sends them (the field names and shapes of the Kubernetes API reference for
batch/v1 Job and core/v1 Pod); the model is the client's own deserialisation of the same JSON.
"""

from __future__ import annotations

import copy
import datetime
import json
from typing import Any

import pytest
from kubernetes.client import ApiClient

from kannon.backends.kubernetes import classify as kc
from kannon.backends.kubernetes import raw
from kannon.backends.kubernetes.manifest import spec_changes
from kannon.backends.kubernetes.names import job_of_pod, owned_by

JOB_UID = "0f3c5a4e-7b1d-4a44-9d3e-5f6a7b8c9d01"
META = {"name": "kannon-bullet-abc-1", "namespace": "default", "uid": JOB_UID, "resourceVersion": "4711",
        "creationTimestamp": "2026-12-04T17:53:53Z", "labels": {"kannon.io/run": "r1", "kannon.io/attempt": "1"},
        "annotations": {"kannon.io/task": "t1"}}  # fmt: skip

TEMPLATE = {"spec": {"restartPolicy": "Never", "containers": [{"name": "kannon", "image": "img:1"}]}}
FAILED_JOB = {
    "apiVersion": "batch/v1", "kind": "Job", "metadata": META,
    "spec": {"backoffLimit": 0, "activeDeadlineSeconds": 60, "suspend": False, "template": {"spec": {
        "restartPolicy": "Never", "containers": [{"name": "kannon", "image": "img:1"}]}}},
    "status": {"failed": 1, "startTime": "2026-12-04T17:53:53Z", "conditions": [
        {"type": "FailureTarget", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer",
         "lastProbeTime": "2026-12-04T17:54:53Z", "lastTransitionTime": "2026-12-04T17:54:53Z"},
        {"type": "Failed", "status": "True", "reason": "DeadlineExceeded", "message": "Job was active longer",
         "lastProbeTime": "2026-12-04T17:54:53Z", "lastTransitionTime": "2026-12-04T17:54:53Z"}]},
}  # fmt: skip
COMPLETE_JOB = {
    "apiVersion": "batch/v1", "kind": "Job", "metadata": META, "spec": {"suspend": True, "template": TEMPLATE},
    "status": {"succeeded": 1, "completionTime": "2026-12-04T17:54:01Z", "conditions": [
        {"type": "SuccessCriteriaMet", "status": "True", "lastTransitionTime": "2026-12-04T17:54:00Z"},
        {"type": "Complete", "status": "True", "lastTransitionTime": "2026-12-04T17:54:01Z"}]},
}  # fmt: skip
NEW_JOB = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "j", "uid": "u"},
           "spec": {"template": TEMPLATE}, "status": {}}  # fmt: skip


def _pod(status: dict[str, Any], **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "kannon-bullet-abc-1-x7k2p", "namespace": "default", "uid": "p-uid",
                     "creationTimestamp": "2026-12-04T17:53:54Z",
                     "labels": {"batch.kubernetes.io/job-name": "kannon-bullet-abc-1",
                                "job-name": "kannon-bullet-abc-1"},
                     "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": "kannon-bullet-abc-1",
                                          "uid": JOB_UID, "controller": True, "blockOwnerDeletion": True}], **meta},
        "spec": {"restartPolicy": "Never", "nodeName": "node-1",
                 "containers": [{"name": "kannon", "image": "img:1",
                                 "resources": {"limits": {"memory": "512Mi", "cpu": "1"}}}],
                 "initContainers": [{"name": "proxy", "image": "proxy:1", "restartPolicy": "Always"},
                                    {"name": "setup", "image": "setup:1"}]},
        "status": status,
    }  # fmt: skip


def _cs(name: str, state: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"name": name, "image": f"{name}:1", "imageID": "", "ready": False, "restartCount": 0, "state": state,
            **more}  # fmt: skip


TERMINATED = {"terminated": {"exitCode": 137, "signal": 9, "reason": "OOMKilled", "message": "{\"kannon\": 1}",
                             "startedAt": "2026-12-04T17:53:55Z", "finishedAt": "2026-12-04T17:53:59Z"}}  # fmt: skip
PODS = {
    "oom": _pod({"phase": "Failed", "startTime": "2026-12-04T17:53:54Z",
                 "conditions": [{"type": "PodScheduled", "status": "True",
                                 "lastTransitionTime": "2026-12-04T17:53:54Z"}],
                 "containerStatuses": [_cs("kannon", TERMINATED, lastState={})],
                 "initContainerStatuses": [_cs("proxy", {"running": {"startedAt": "2026-12-04T17:53:55Z"}}),
                                           _cs("setup", {"terminated": {"exitCode": 0, "reason": "Completed"}})]}),
    "image_pull": _pod({"phase": "Pending", "containerStatuses": [_cs("kannon", {"waiting": {
        "reason": "ImagePullBackOff", "message": "Back-off pulling image \"img:1\""}})]}),
    "init_failed": _pod({"phase": "Failed", "initContainerStatuses": [
        _cs("setup", {"terminated": {"exitCode": 3, "reason": "Error", "message": "no such file\n"}})],
        "containerStatuses": [_cs("kannon", {"waiting": {"reason": "PodInitializing"}})]}),
    "unschedulable": _pod({"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
        "reason": "Unschedulable", "message": "0/3 nodes are available: 3 Insufficient memory."}]}),
    "preempted": _pod({"phase": "Failed", "conditions": [{"type": "DisruptionTarget", "status": "True",
        "reason": "PreemptionByScheduler", "message": "Preempted by a pod on node node-1"}],
        "containerStatuses": [_cs("kannon", {"terminated": {"exitCode": 143, "reason": "Error"}})]},
        deletionTimestamp="2026-12-04T17:54:10Z", deletionGracePeriodSeconds=30,
        finalizers=["batch.kubernetes.io/job-tracking"]),
    "evicted": _pod({"phase": "Failed", "reason": "Evicted", "message": "The node was low on resource: memory."}),
    "running": _pod({"phase": "Running", "containerStatuses": [
        _cs("kannon", {"running": {"startedAt": "2026-12-04T17:53:55.123456Z"}}, ready=True)]}),
    "start_error": _pod({"phase": "Failed", "containerStatuses": [_cs("kannon", {"terminated": {
        "exitCode": 128, "reason": "StartError", "message": "exec: \"python\": not found"}})]}),
    "bare": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}},  # missing fields: None, as the client's
}  # fmt: skip
JOBS = {"failed": FAILED_JOB, "complete": COMPLETE_JOB, "new": NEW_JOB}


class _Response:
    def __init__(self, body: Any) -> None:
        self.data = json.dumps(body)

    def release_conn(self) -> None:
        pass


def _model(obj: dict[str, Any], kind: str) -> Any:
    return ApiClient().deserialize(_Response(obj), kind)


def _fields(view: raw.View) -> list[str]:
    return sorted({name for cls in type(view).__mro__ for name, attr in vars(cls).items()
                   if isinstance(attr, (raw._Field, property)) and name != "raw"})  # fmt: skip


def _same(view: Any, model: Any, path: str) -> None:
    """Every attribute the view has reads as the model's (type included), all the way down."""
    if isinstance(view, raw.View):
        assert model is not None, path
        for name in _fields(view):
            _same(getattr(view, name), getattr(model, name), f"{path}.{name}")
    elif isinstance(view, list):
        assert isinstance(model, list) and len(view) == len(model), path
        for i, (v, m) in enumerate(zip(view, model, strict=True)):
            _same(v, m, f"{path}[{i}]")
    else:
        assert (type(view), view) == (type(model), model), path


@pytest.mark.parametrize("name", sorted(PODS))
def test_pod_view_reads_as_the_model(name: str) -> None:
    _same(raw.Pod(PODS[name]), _model(PODS[name], "V1Pod"), name)


@pytest.mark.parametrize("name", sorted(JOBS))
def test_job_view_reads_as_the_model(name: str) -> None:
    _same(raw.Job(JOBS[name]), _model(JOBS[name], "V1Job"), name)


def test_missing_fields_are_none() -> None:
    pod = raw.Pod({"metadata": {"name": "p"}})
    assert (pod.status, pod.spec, pod.metadata.deletion_timestamp, pod.metadata.owner_references) == (None,) * 4
    assert raw.Pod({}).metadata.name is None  # the API always sends metadata; an empty one reads as the client's
    assert raw.Pod(PODS["running"]).status.container_statuses[0].state.terminated is None  # type: ignore[index,union-attr]


def test_timestamps_parse_as_the_client_does() -> None:
    utc = datetime.timezone.utc
    assert raw.parse_time("2026-12-04T17:53:55Z") == datetime.datetime(2026, 12, 4, 17, 53, 55, tzinfo=utc)
    assert raw.parse_time("2026-12-04T17:53:55.1Z") == datetime.datetime(2026, 12, 4, 17, 53, 55, 100000, tzinfo=utc)
    assert raw.parse_time("2026-12-04T17:53:55.123456789Z").microsecond == 123456  # as dateutil: truncated


@pytest.mark.parametrize("job_name", sorted(JOBS))
@pytest.mark.parametrize("pod_name", sorted(PODS))
@pytest.mark.parametrize("container", ["kannon", None])
def test_classification_is_the_same(job_name: str, pod_name: str, container: str | None) -> None:
    """Every reading and classification of kannon's gives the same answer for the view as for the model."""
    views = raw.Job(JOBS[job_name]), raw.Pod(PODS[pod_name])
    models = _model(JOBS[job_name], "V1Job"), _model(PODS[pod_name], "V1Pod")

    def answers(job: Any, pod: Any) -> list[Any]:
        return [
            kc.job_terminal(job), kc.pod_started(pod, container), kc.pod_final(pod, container),
            kc.main_ended(pod, container), kc.init_failure(pod), kc.created(pod), kc.disrupted(pod),
            kc.memory_limit(pod, container), kc.fail_fast(pod), kc.classify_pending(pod, 301.0),
            kc.classify_failure(job, pod, container, "python", ("Traceback", "boom")),
            kc.classify_failure(job, None, container), bool(pod.metadata.deletion_timestamp),
            job_of_pod(pod), owned_by(pod, JOB_UID), kc.culprit([pod], container) is pod, kc.succeeded([pod]) is pod,
        ]  # fmt: skip

    assert answers(*views) == answers(*models)


def test_spec_changes_reads_a_view_as_a_model() -> None:
    body = copy.deepcopy(FAILED_JOB)
    body["spec"]["template"]["spec"]["containers"][0]["image"] = "img:2"
    body["metadata"] = {**META, "annotations": {"kannon.io/spec-hash": "other"}}
    view, model = raw.Job(FAILED_JOB), _model(FAILED_JOB, "V1Job")
    assert spec_changes(view, body, "kannon") == spec_changes(model, body, "kannon") != []
