"""The emulated control plane, exercised only through the official kubernetes client over HTTP."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from kannon.testing import KubeEmulator
from tests.support.services import service_unavailable

pytestmark = pytest.mark.k8s

NS = "default"
PY = sys.executable


def job_body(
    name: str,
    code: str = "pass",
    *,
    labels: dict[str, str] | None = None,
    restart: str = "Never",
    container: dict[str, Any] | None = None,
    **spec: Any,
) -> dict[str, Any]:
    """A Job whose single container runs `python -c code` (argv list, no shell)."""
    ctr = {"name": "main", "image": "python:3.11-slim", "command": [PY, "-S", "-c", code], **(container or {})}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, **({"labels": labels} if labels else {})},
        "spec": {"template": {"spec": {"restartPolicy": restart, "containers": [ctr]}}, **spec},
    }


def conditions(job: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["type"]: c for c in (job.get("status") or {}).get("conditions") or [] if c["status"] == "True"}


def wait_finished(kube: KubeEmulator, name: str, timeout: float = 30) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = kube.jobs().get(name)
        if job and ({"Complete", "Failed"} & set(conditions(job))):
            return job
        return None

    return kube.wait_for(done, timeout=timeout, message=f"job {name} did not finish")


def pods_of(kube: KubeEmulator, job: str) -> list[dict[str, Any]]:
    return sorted(
        (p for p in kube.pods().values() if p["metadata"]["labels"].get("job-name") == job),
        key=lambda p: int(p["metadata"]["resourceVersion"]),
    )


def status_body(exc: ApiException) -> dict[str, Any]:
    return json.loads(exc.body)


def count(kube: KubeEmulator, method: str, path_part: str) -> int:
    return sum(1 for m, p, _ in list(kube.requests) if m == method and path_part in p)


# --- discovery, CRUD, error bodies ---------------------------------------------------------------------------------


def test_discovery_and_version(kube: KubeEmulator, batch_api: Any) -> None:
    info = client.VersionApi(kube.api_client()).get_code()
    assert info.major == "1" and info.git_version.startswith("v1.")
    resources = {r.name for r in batch_api.get_api_resources().resources}
    assert {"jobs", "jobs/status"} <= resources
    core = {r.name for r in client.CoreV1Api(kube.api_client()).get_api_resources().resources}
    assert {"pods", "pods/log", "namespaces"} <= core
    assert "batch" in {g.name for g in client.ApisApi(kube.api_client()).get_api_versions().groups}


def test_create_sets_server_fields_defaults_and_absent_counters(kube: KubeEmulator, batch_api: Any) -> None:
    created = batch_api.create_namespaced_job(NS, job_body("fields", suspend=True))
    meta = created.metadata
    assert meta.uid and meta.creation_timestamp is not None and int(meta.resource_version) > 0
    assert meta.generation == 1 and meta.namespace == NS
    assert created.spec.backoff_limit == 6 and created.spec.completions == 1 and created.spec.parallelism == 1
    assert created.spec.selector.match_labels == {"batch.kubernetes.io/controller-uid": meta.uid}
    tl = created.spec.template.metadata.labels
    assert tl["batch.kubernetes.io/job-name"] == tl["job-name"] == "fields"
    assert tl["batch.kubernetes.io/controller-uid"] == tl["controller-uid"] == meta.uid
    # Zero counters are omitted by the server, so the client sees None (a `> 0` on them raises).
    fresh = batch_api.read_namespaced_job("fields", NS)
    assert fresh.status.succeeded is None and fresh.status.failed is None and fresh.status.active is None
    assert batch_api.read_namespaced_job_status("fields", NS).metadata.uid == meta.uid
    listed = batch_api.list_namespaced_job(NS)
    assert [j.metadata.name for j in listed.items] == ["fields"]
    assert int(listed.metadata.resource_version) >= int(meta.resource_version)
    # Every write bumps the single global resourceVersion.
    other = batch_api.create_namespaced_job(NS, job_body("fields2", suspend=True))
    assert int(other.metadata.resource_version) > int(meta.resource_version)


def test_create_twice_is_409_already_exists(batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job_body("twice", suspend=True))
    with pytest.raises(ApiException) as err:
        batch_api.create_namespaced_job(NS, job_body("twice", suspend=True))
    body = status_body(err.value)
    assert err.value.status == 409 and body["reason"] == "AlreadyExists" and body["kind"] == "Status"
    assert body["details"] == {"name": "twice", "group": "batch", "kind": "jobs"}
    assert body["message"] == 'jobs.batch "twice" already exists'


def test_missing_job_is_404_not_found(batch_api: Any) -> None:
    with pytest.raises(ApiException) as err:
        batch_api.read_namespaced_job("nope", NS)
    body = status_body(err.value)
    assert err.value.status == 404 and body["reason"] == "NotFound" and body["code"] == 404
    assert body["details"]["name"] == "nope" and body["message"] == 'jobs.batch "nope" not found'


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda b: b["metadata"].update(name="Bad_Name"), "metadata.name"),
        (lambda b: b["metadata"].update(name="a" * 64), "spec.template.labels"),
        (lambda b: b["spec"]["template"]["spec"].update(containers=[]), "spec.template.spec.containers"),
        (lambda b: b["spec"]["template"]["spec"].pop("restartPolicy"), "spec.template.spec.restartPolicy"),
        (lambda b: b["spec"]["template"]["spec"].update(restartPolicy="Always"), "spec.template.spec.restartPolicy"),
        (lambda b: b["metadata"].update(labels={"kannon.io/task-id": "x" * 64}), "metadata.labels"),
        (lambda b: b["spec"].update(backoffLimit=-1), "spec.backoffLimit"),
        (
            lambda b: b["spec"].update(
                podFailurePolicy={"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [1]}}]}
            ),
            "spec.podFailurePolicy.rules[0].action",
        ),
    ],
    ids=[
        "not-dns1123",
        "longer-than-63",
        "no-containers",
        "no-restart-policy",
        "restart-always",
        "bad-label",
        "negative-backoff",
        "unsupported-pfp-action",
    ],
)
def test_invalid_jobs_are_422_with_causes(batch_api: Any, mutate: Any, field: str) -> None:
    body = job_body("valid-name")
    mutate(body)
    with pytest.raises(ApiException) as err:
        batch_api.create_namespaced_job(NS, body)
    status = status_body(err.value)
    assert err.value.status == 422 and status["reason"] == "Invalid"
    assert status["details"]["kind"] == "Job" and status["details"]["group"] == "batch"
    assert field in [c["field"] for c in status["details"]["causes"]], status
    assert "is invalid" in status["message"]


def test_invalid_quantity_and_namespace_mismatch_are_400(batch_api: Any) -> None:
    body = job_body("qty", container={"resources": {"limits": {"memory": "lots"}}})
    with pytest.raises(ApiException) as err:
        batch_api.create_namespaced_job(NS, body)
    assert err.value.status == 400 and status_body(err.value)["reason"] == "BadRequest"
    body = job_body("nsx")
    body["metadata"]["namespace"] = "elsewhere"
    with pytest.raises(ApiException) as err:
        batch_api.create_namespaced_job(NS, body)
    assert err.value.status == 400


def test_label_and_field_selectors(batch_api: Any) -> None:
    specs = {
        "sel-a": {"app": "k", "tier": "x", "flag": "1"},
        "sel-b": {"app": "k", "tier": "y"},
        "sel-c": {"app": "other", "tier": "z", "flag": "1"},
    }
    for name, labels in specs.items():
        batch_api.create_namespaced_job(NS, job_body(name, labels=labels, suspend=True))

    def names(**kw: Any) -> list[str]:
        return sorted(j.metadata.name for j in batch_api.list_namespaced_job(NS, **kw).items)

    assert names(label_selector="app=k") == ["sel-a", "sel-b"]
    assert names(label_selector="app==k,tier!=y") == ["sel-a"]
    assert names(label_selector="tier in (x, z)") == ["sel-a", "sel-c"]
    assert names(label_selector="tier notin (x,z)") == ["sel-b"]
    assert names(label_selector="flag") == ["sel-a", "sel-c"]
    assert names(label_selector="!flag") == ["sel-b"]
    assert names(label_selector="app=k,tier!=nope,tier in (x,y),flag") == ["sel-a"]
    assert names(label_selector="missing!=v") == ["sel-a", "sel-b", "sel-c"]  # != matches absent keys
    assert names(field_selector="metadata.name=sel-b") == ["sel-b"]
    assert names(field_selector="metadata.name!=sel-b") == ["sel-a", "sel-c"]
    for bad in ("app=k,", "tier in (x", "a b", "=x", "app=bad value!"):
        with pytest.raises(ApiException) as err:
            batch_api.list_namespaced_job(NS, label_selector=bad)
        assert err.value.status == 400 and status_body(err.value)["reason"] == "BadRequest", bad
    with pytest.raises(ApiException) as err:
        batch_api.list_namespaced_job(NS, field_selector="spec.nope=1")
    assert err.value.status == 400


def test_list_pagination_with_limit_and_continue(batch_api: Any) -> None:
    for i in range(5):
        batch_api.create_namespaced_job(NS, job_body(f"page-{i}", suspend=True))
    seen: list[str] = []
    token = None
    while True:
        page = batch_api.list_namespaced_job(NS, limit=2, **({"_continue": token} if token else {}))
        seen += [j.metadata.name for j in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"page-{i}" for i in range(5)]


def test_update_conflict_and_patch(batch_api: Any) -> None:
    job = batch_api.create_namespaced_job(NS, job_body("upd", suspend=True))
    patched = batch_api.patch_namespaced_job("upd", NS, {"metadata": {"labels": {"extra": "yes"}}})
    assert patched.metadata.labels["extra"] == "yes"
    assert int(patched.metadata.resource_version) > int(job.metadata.resource_version)
    job.metadata.labels["stale"] = "1"  # job still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        batch_api.replace_namespaced_job("upd", NS, job)
    assert err.value.status == 409 and status_body(err.value)["reason"] == "Conflict"
    fresh = batch_api.read_namespaced_job("upd", NS)
    fresh.spec.template.spec.containers[0].image = "other:1"
    with pytest.raises(ApiException) as err:
        batch_api.replace_namespaced_job("upd", NS, fresh)
    assert err.value.status == 422 and "spec.template" in [
        c["field"] for c in status_body(err.value)["details"]["causes"]
    ]


def test_fixed_namespaces_answer_404_for_unknown() -> None:
    with KubeEmulator(namespace="team", namespaces=["team"]) as kube:
        core = client.CoreV1Api(kube.api_client())
        assert core.read_namespace("team").status.phase == "Active"
        with pytest.raises(ApiException) as err:
            client.BatchV1Api(kube.api_client()).create_namespaced_job("ghost", job_body("x"))
        assert err.value.status == 404 and status_body(err.value)["message"] == 'namespaces "ghost" not found'


# --- the Job controller --------------------------------------------------------------------------------------------


def test_job_success_pod_shape_and_conditions(kube: KubeEmulator, batch_api: Any, core_api: Any) -> None:
    job = batch_api.create_namespaced_job(NS, job_body("ok", "print('hello from pod')"))
    done = wait_finished(kube, "ok")
    conds = conditions(done)
    assert set(conds) == {"SuccessCriteriaMet", "Complete"}
    assert conds["Complete"]["reason"] == "CompletionsReached"
    final = batch_api.read_namespaced_job("ok", NS)
    assert final.status.succeeded == 1 and final.status.failed is None and final.status.active is None
    assert final.status.completion_time is not None and final.status.start_time is not None
    pods = core_api.list_namespaced_pod(NS, label_selector="batch.kubernetes.io/job-name=ok").items
    assert len(pods) == 1
    pod = pods[0]
    assert pod.metadata.name.startswith("ok-") and pod.metadata.generate_name == "ok-"
    for key in ("batch.kubernetes.io/job-name", "job-name"):
        assert pod.metadata.labels[key] == "ok"
    for key in ("controller-uid", "batch.kubernetes.io/controller-uid"):
        assert pod.metadata.labels[key] == job.metadata.uid
    (owner,) = pod.metadata.owner_references
    assert (owner.kind, owner.name, owner.uid, owner.controller) == ("Job", "ok", job.metadata.uid, True)
    assert pod.status.phase == "Succeeded" and pod.spec.node_name
    term = pod.status.container_statuses[0].state.terminated
    assert term.exit_code == 0 and term.reason == "Completed"


def test_pod_phases_seen_by_a_pod_watch(kube: KubeEmulator, batch_api: Any, core_api: Any) -> None:
    # From a resourceVersion taken before the Job exists: every phase is replayed, however fast the pod ran (a watch
    # started after the create would begin with the pod's state at that moment, which the pod races).
    rv = core_api.list_namespaced_pod(NS).metadata.resource_version
    batch_api.create_namespaced_job(NS, job_body("phases", "pass"))
    seen: list[tuple[str, str | None]] = []
    w = watch.Watch()
    for ev in w.stream(core_api.list_namespaced_pod, NS, label_selector="job-name=phases", resource_version=rv,
                       timeout_seconds=20):  # fmt: skip
        pod = ev["object"]
        states = pod.status.container_statuses or []
        state = states[0].state if states else None
        detail = None
        if state is not None:
            detail = "waiting" if state.waiting else "running" if state.running else "terminated"
        seen.append((pod.status.phase, detail))
        if pod.status.phase == "Succeeded":
            w.stop()
    phases = [p for p, _ in seen]
    assert phases[0] == "Pending" and phases[-1] == "Succeeded" and "Running" in phases
    assert ("Pending", "waiting") in seen and ("Running", "running") in seen


def test_backoff_limit_replacement_pods_then_failed(kube: KubeEmulator, batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job_body("flaky", "raise SystemExit(3)", backoffLimit=2))
    done = wait_finished(kube, "flaky")
    conds = conditions(done)
    assert set(conds) == {"FailureTarget", "Failed"}
    assert conds["Failed"]["reason"] == conds["FailureTarget"]["reason"] == "BackoffLimitExceeded"
    pods = pods_of(kube, "flaky")
    assert len(pods) == 3  # the original and two replacements: failed pods exceeded backoffLimit=2
    assert all(p["status"]["phase"] == "Failed" for p in pods)
    assert {p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods} == {3}
    assert {p["status"]["containerStatuses"][0]["state"]["terminated"]["reason"] for p in pods} == {"Error"}
    final = batch_api.read_namespaced_job("flaky", NS)
    assert final.status.failed == 3 and final.status.succeeded is None and final.status.completion_time is None


def test_replacement_pod_can_succeed(kube: KubeEmulator, tmp_path: Path) -> None:
    marker = tmp_path / "tried"
    code = f"import os,sys; p={str(marker)!r}\nif os.path.exists(p): sys.exit(0)\nopen(p,'w').close(); sys.exit(1)"
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("second-time", code))
    done = wait_finished(kube, "second-time")
    assert "Complete" in conditions(done)
    assert done["status"]["failed"] == 1 and done["status"]["succeeded"] == 1
    assert [p["status"]["phase"] for p in pods_of(kube, "second-time")] == ["Failed", "Succeeded"]


def test_restart_policy_on_failure_restarts_in_place(kube: KubeEmulator, batch_api: Any, core_api: Any) -> None:
    rv = core_api.list_namespaced_pod(NS).metadata.resource_version
    batch_api.create_namespaced_job(NS, job_body("crashy", "raise SystemExit(2)", restart="OnFailure", backoffLimit=1))
    done = wait_finished(kube, "crashy")
    assert conditions(done)["Failed"]["reason"] == "BackoffLimitExceeded"
    restarts = set()
    pod_names = set()
    for ev in watch.Watch().stream(core_api.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=1):
        pod_names.add(ev["object"].metadata.name)
        for cs in ev["object"].status.container_statuses or []:
            restarts.add(cs.restart_count)
            if cs.restart_count:
                assert cs.last_state.terminated.exit_code == 2
    # One pod whose container was restarted in place; the controller deletes it when the Job fails.
    assert len(pod_names) == 1 and max(restarts) >= 1 and not pods_of(kube, "crashy")


def test_active_deadline_kills_running_pod(kube: KubeEmulator, batch_api: Any) -> None:
    # A pod's process is PID 1 (its own PID namespace): it ends on SIGTERM only if it handles it.
    code = "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\ntime.sleep(60)"
    batch_api.create_namespaced_job(NS, job_body("slow", code, activeDeadlineSeconds=1))
    done = wait_finished(kube, "slow")
    conds = conditions(done)
    assert conds["Failed"]["reason"] == "DeadlineExceeded" and conds["FailureTarget"]["reason"] == "DeadlineExceeded"
    kube.wait_for(lambda: all(p["status"]["phase"] == "Failed" for p in pods_of(kube, "slow")))
    for p in pods_of(kube, "slow"):
        assert p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 128 + signal.SIGTERM


def test_ttl_after_finished_deletes_job_and_pods(kube: KubeEmulator, batch_api: Any) -> None:
    lst = batch_api.list_namespaced_job(NS)
    batch_api.create_namespaced_job(NS, job_body("short-lived", ttlSecondsAfterFinished=0))
    events = []
    w = watch.Watch()
    for ev in w.stream(
        batch_api.list_namespaced_job, NS, resource_version=lst.metadata.resource_version, timeout_seconds=30
    ):
        events.append((ev["type"], conditions(ev["raw_object"])))
        if ev["type"] == "DELETED":
            w.stop()
    assert events[-1][0] == "DELETED" and "Complete" in events[-1][1]
    with pytest.raises(ApiException) as err:
        batch_api.read_namespaced_job("short-lived", NS)
    assert err.value.status == 404
    kube.wait_for(lambda: not pods_of(kube, "short-lived"))


def test_pod_failure_policy_fail_job_and_ignore(kube: KubeEmulator, batch_api: Any) -> None:
    pfp = {
        "rules": [
            {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
            {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
        ]
    }
    batch_api.create_namespaced_job(NS, job_body("fatal", "raise SystemExit(42)", podFailurePolicy=pfp))
    done = wait_finished(kube, "fatal")
    failed = conditions(done)["Failed"]
    assert failed["reason"] == "PodFailurePolicy" and "exit code 42" in failed["message"]
    assert len(pods_of(kube, "fatal")) == 1  # no retries despite backoffLimit 6
    # A preempted pod matches Ignore: not counted against backoffLimit 0, and the replacement succeeds.
    kube.faults.pod_behaviour("^ignored$", "Preempted", times=1)
    batch_api.create_namespaced_job(NS, job_body("ignored", backoffLimit=0, podFailurePolicy=pfp))
    done = wait_finished(kube, "ignored")
    assert "Complete" in conditions(done) and "failed" not in done["status"]


def test_parallel_completions(kube: KubeEmulator, batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job_body("par", completions=3, parallelism=2))
    done = wait_finished(kube, "par")
    assert done["status"]["succeeded"] == 3 and len(pods_of(kube, "par")) == 3


def test_container_env_field_refs_expansion_and_workdir(kube: KubeEmulator, tmp_path: Path) -> None:
    os.environ["KANNON_EMU_LEAK_CHECK"] = "leaked"
    try:
        code = (
            "import os; print(os.environ['POD'], os.environ['NSP'], os.environ['GREETING'], os.getcwd(), "
            "os.environ.get('KANNON_EMU_LEAK_CHECK', 'isolated'))"
        )
        env = [
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "NSP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
            {"name": "WHO", "value": "world"},
            {"name": "GREETING", "value": "hello-$(WHO)-$$(WHO)"},
        ]
        body = job_body("envy", code, container={"env": env, "workingDir": str(tmp_path)})
        client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, body)
        wait_finished(kube, "envy")
    finally:
        del os.environ["KANNON_EMU_LEAK_CHECK"]
    (pod,) = pods_of(kube, "envy")
    out = kube.pod_log(pod["metadata"]["name"]).split()
    assert out == [pod["metadata"]["name"], NS, "hello-world-$(WHO)", str(tmp_path), "isolated"]


def test_missing_secret_is_create_container_config_error(kube: KubeEmulator) -> None:
    env = [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "absent", "key": "t"}}}]
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("nosecret", container={"env": env}))
    pod = kube.wait_for(lambda: next((p for p in pods_of(kube, "nosecret") if _waiting(p)), None))
    assert _waiting(pod) == "CreateContainerConfigError"


def _waiting(pod: dict[str, Any]) -> str | None:
    for cs in pod["status"].get("containerStatuses") or []:
        reason = cs["state"].get("waiting", {}).get("reason")
        if reason and reason != "ContainerCreating":
            return str(reason)
    return None


# --- watch -----------------------------------------------------------------------------------------------------------


def test_watch_synthetic_added_then_live_events(kube: KubeEmulator, batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job_body("pre", suspend=True))
    events: list[tuple[str, str]] = []
    w = watch.Watch()
    for ev in w.stream(batch_api.list_namespaced_job, NS, timeout_seconds=20):
        item = (ev["type"], ev["object"].metadata.name)
        events.append(item)
        if item == ("ADDED", "pre"):
            batch_api.create_namespaced_job(NS, job_body("live", suspend=True))
        elif item == ("ADDED", "live"):
            batch_api.delete_namespaced_job("pre", NS, propagation_policy="Background")
        elif item == ("DELETED", "pre"):
            w.stop()
    assert events[0] == ("ADDED", "pre") and ("ADDED", "live") in events and events[-1] == ("DELETED", "pre")


def test_watch_resumes_from_resource_version(kube: KubeEmulator, batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job_body("old", suspend=True))
    rv = batch_api.list_namespaced_job(NS).metadata.resource_version
    batch_api.create_namespaced_job(NS, job_body("new", suspend=True))
    batch_api.patch_namespaced_job("old", NS, {"metadata": {"labels": {"touched": "yes"}}})
    events = []
    for ev in watch.Watch().stream(batch_api.list_namespaced_job, NS, resource_version=rv, timeout_seconds=1):
        events.append((ev["type"], ev["object"].metadata.name, ev["object"].metadata.labels or {}))
    # Only what happened after rv is replayed, in order: no synthetic ADDED for "old". The Job controller may write
    # either Job's status (Suspended) after rv too, so MODIFIED events without the label may come anywhere.
    created = [i for i, (kind, _, _) in enumerate(events) if kind != "MODIFIED"]
    touched = next(i for i, (_, name, labels) in enumerate(events) if name == "old" and "touched" in labels)
    assert [events[i][:2] for i in created] == [("ADDED", "new")]  # no other kind of event, no ADDED for "old"
    assert created[0] < touched  # "new" was created before "old" was patched: replayed in that order


def test_watch_with_label_selector_sees_objects_leave_the_selection(batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job_body("lab", labels={"team": "a"}, suspend=True))
    rv = batch_api.list_namespaced_job(NS).metadata.resource_version
    batch_api.patch_namespaced_job("lab", NS, {"metadata": {"labels": {"team": "b"}}})
    w = watch.Watch()
    events = []
    for e in w.stream(batch_api.list_namespaced_job, NS, label_selector="team=a", resource_version=rv,
                      timeout_seconds=20):  # fmt: skip
        events.append((e["type"], e["object"].metadata.name, e["object"].metadata.labels["team"]))
        if e["type"] == "DELETED":
            w.stop()
    # The upstream contract, whichever thread wins: events of one object arrive in order and the patch that moves
    # it out of the selection ends them with DELETED (carrying the new labels). The Job controller's own status
    # write (the Suspended condition) may land after rv and show as MODIFIED first: allowed, inside the selection.
    assert events[-1] == ("DELETED", "lab", "b")
    assert all(e == ("MODIFIED", "lab", "a") for e in events[:-1]), events


def test_watch_410_after_compaction_raises_api_exception(kube: KubeEmulator, batch_api: Any) -> None:
    rv = batch_api.list_namespaced_job(NS).metadata.resource_version
    batch_api.create_namespaced_job(NS, job_body("c1", suspend=True))
    kube.faults.compact_history()
    # Raw: a 200 response whose single event is an ERROR carrying a 410 Status.
    resp = batch_api.list_namespaced_job(NS, watch=True, resource_version=rv, _preload_content=False)
    assert resp.status == 200
    lines = [ln for ln in resp.data.decode().splitlines() if ln]
    event = json.loads(lines[0])
    assert len(lines) == 1 and event["type"] == "ERROR"
    assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
    # The client retries a 410 once by itself, then raises it.
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(batch_api.list_namespaced_job, NS, resource_version=rv))
    assert err.value.status == 410
    # Even the latest revision handed out before the compaction is gone...
    latest = batch_api.list_namespaced_job(NS).metadata.resource_version
    kube.faults.compact_history()
    with pytest.raises(ApiException) as err:
        list(watch.Watch().stream(batch_api.list_namespaced_job, NS, resource_version=latest, timeout_seconds=5))
    assert err.value.status == 410
    # ...but re-list and re-watch from the fresh resourceVersion works.
    fresh = batch_api.list_namespaced_job(NS).metadata.resource_version
    assert (
        list(watch.Watch().stream(batch_api.list_namespaced_job, NS, resource_version=fresh, timeout_seconds=1)) == []
    )


def test_watch_bookmarks_carry_only_resource_version(kube: KubeEmulator, batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job_body("bm", suspend=True))
    w = watch.Watch()
    bookmarks = []
    for ev in w.stream(batch_api.list_namespaced_job, NS, allow_watch_bookmarks=True, timeout_seconds=20):
        if ev["type"] == "BOOKMARK":
            bookmarks.append(ev["raw_object"])
            w.stop()
    (bm,) = bookmarks
    assert bm["kind"] == "Job" and set(bm["metadata"]) <= {"resourceVersion", "creationTimestamp"}
    assert int(bm["metadata"]["resourceVersion"]) >= int(batch_api.list_namespaced_job(NS).metadata.resource_version)
    assert w.resource_version == bm["metadata"]["resourceVersion"]


def test_server_side_timeout_ends_the_stream(kube: KubeEmulator, batch_api: Any) -> None:
    # timeout_seconds makes the server close the stream; the generator then ends with no client-side stop.
    events = list(watch.Watch().stream(batch_api.list_namespaced_job, NS, timeout_seconds=1))
    assert events == []
    assert any(q.get("timeoutSeconds") == "1" and q.get("watch") for m, p, q in kube.requests if p.endswith("/jobs"))


def test_end_watches_closes_open_streams(kube: KubeEmulator, batch_api: Any) -> None:
    resp = batch_api.list_namespaced_job(NS, watch=True, _preload_content=False)
    kube.wait_for(lambda: kube.faults.end_watches() > 0, timeout=10)
    assert b"".join(resp.stream(1024)) == b""  # the server ended the chunked stream: no events, clean EOF
    assert kube.faults.count("end_watches") >= 1


# --- delete propagation --------------------------------------------------------------------------------------------


HANDLES_SIGTERM = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
                   "print('ready', flush=True)\ntime.sleep(60)")


def _handling(kube: KubeEmulator, job: str) -> None:
    """Wait until a HANDLES_SIGTERM pod of ``job`` has its handler (a SIGTERM before that would be dropped)."""
    kube.wait_for(lambda: any("ready" in kube.pod_log(p["metadata"]["name"]) for p in pods_of(kube, job)))


def _running_job(kube: KubeEmulator, batch_api: Any, name: str) -> None:
    # Ends on SIGTERM: a pod's process is PID 1 (its own PID namespace), for which the kernel drops an unhandled one.
    batch_api.create_namespaced_job(NS, job_body(name, HANDLES_SIGTERM))
    _handling(kube, name)


def test_delete_without_policy_orphans_pods_with_warning(kube: KubeEmulator, batch_api: Any) -> None:
    _running_job(kube, batch_api, "orphaner")
    _, code, headers = batch_api.delete_namespaced_job_with_http_info("orphaner", NS)
    assert code == 200 and "child pods are preserved by default" in headers["Warning"]
    kube.wait_for(lambda: "orphaner" not in kube.jobs())
    pods = pods_of(kube, "orphaner")
    assert len(pods) == 1 and pods[0]["status"]["phase"] == "Running"
    assert "ownerReferences" not in pods[0]["metadata"]  # orphaned: the owner reference is gone


def test_delete_background_removes_pods_asynchronously(kube: KubeEmulator, batch_api: Any) -> None:
    _running_job(kube, batch_api, "bg")
    _, code, headers = batch_api.delete_namespaced_job_with_http_info("bg", NS, propagation_policy="Background")
    assert code == 200 and "Warning" not in headers
    with pytest.raises(ApiException) as err:
        batch_api.read_namespaced_job("bg", NS)
    assert err.value.status == 404
    kube.wait_for(lambda: not pods_of(kube, "bg"))


def test_delete_foreground_keeps_job_until_pods_are_gone(kube: KubeEmulator, batch_api: Any) -> None:
    _running_job(kube, batch_api, "fg")
    resp = batch_api.delete_namespaced_job(
        "fg", NS, body=client.V1DeleteOptions(propagation_policy="Foreground"), _preload_content=False
    )
    obj = json.loads(resp.data)
    assert obj["kind"] == "Job" and obj["metadata"]["deletionTimestamp"]
    assert "foregroundDeletion" in obj["metadata"]["finalizers"]
    kube.wait_for(lambda: "fg" not in kube.jobs())
    assert not pods_of(kube, "fg")


def test_pod_delete_is_graceful_and_job_replaces_it(kube: KubeEmulator, batch_api: Any, core_api: Any) -> None:
    _running_job(kube, batch_api, "victim")
    first = pods_of(kube, "victim")[0]["metadata"]["name"]
    deleted = core_api.delete_namespaced_pod(first, NS)
    assert deleted.metadata.deletion_timestamp is not None
    # The replacement appears as soon as the old pod is terminating (podReplacementPolicy TerminatingOrFailed); the
    # deleted pod counts as failed at once (upstream isPodFailed: a deletionTimestamp and not Succeeded).
    kube.wait_for(
        lambda: (
            first not in kube.pods()
            and len(pods_of(kube, "victim")) == 1
            and kube.jobs()["victim"]["status"].get("failed") == 1
        )
    )


def test_a_deleted_running_pod_fails_a_backoff_limit_0_job_at_once(
    kube: KubeEmulator, batch_api: Any, core_api: Any
) -> None:
    """Upstream job_controller.go isPodFailed: a terminating pod that has not succeeded counts as failed when its
    deletion starts, so with backoffLimit 0 the Job fails (failed: 1) and no replacement pod runs the task again."""
    # PID 1 without a SIGTERM handler: the pod stays terminating for the whole grace period.
    rv = core_api.list_namespaced_pod(NS).metadata.resource_version
    batch_api.create_namespaced_job(NS, job_body("once", "print('ready', flush=True)\nimport time\ntime.sleep(600)",
                                                 backoffLimit=0))  # fmt: skip
    _handling(kube, "once")
    first = pods_of(kube, "once")[0]["metadata"]["name"]
    core_api.delete_namespaced_pod(first, NS, grace_period_seconds=600)
    job = kube.wait_for(lambda: (kube.jobs()["once"].get("status") or {}).get("failed") == 1 and kube.jobs()["once"])
    assert conditions(job)["FailureTarget"]["reason"] == "BackoffLimitExceeded"
    assert job["status"]["terminating"] == 1 and job["status"]["ready"] == 0 and "active" not in job["status"]
    assert "Failed" not in conditions(job)  # the terminal condition waits for the terminating pod (1.31+)
    assert kube.pods()[first]["metadata"]["deletionTimestamp"]  # still terminating: counted failed at once
    core_api.delete_namespaced_pod(first, NS, grace_period_seconds=0)
    done = wait_finished(kube, "once")
    assert done["status"].get("failed") == 1 and conditions(done)["Failed"]["reason"] == "BackoffLimitExceeded"
    names = {ev["object"].metadata.name for ev in watch.Watch().stream(
        core_api.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=1, label_selector="job-name=once")}
    assert names == {first}  # never replaced: the user's task ran once


# --- pod logs ------------------------------------------------------------------------------------------------------


def test_pod_log_tail_lines_and_client_repr_quirk(kube: KubeEmulator, core_api: Any) -> None:
    client.BatchV1Api(kube.api_client()).create_namespaced_job(
        NS, job_body("logs", "for i in range(5): print('line', i)")
    )
    wait_finished(kube, "logs")
    pod = pods_of(kube, "logs")[0]["metadata"]["name"]
    raw = core_api.read_namespaced_pod_log(pod, NS, tail_lines=2, _preload_content=False)
    assert raw.data.decode() == "line 3\nline 4\n"
    assert core_api.read_namespaced_pod_log(pod, NS, container="main", _preload_content=False).data.count(b"\n") == 5
    text = core_api.read_namespaced_pod_log(pod, NS, tail_lines=1)
    # kubernetes 36.0.x returns the repr of the bytes (upstream #2596); 35.x returns the text. Backends must decode
    # raw responses themselves.
    assert text in ("line 4\n", "b'line 4\\n'")
    with pytest.raises(ApiException) as err:
        core_api.read_namespaced_pod_log(pod, NS, container="nope")
    assert err.value.status == 400


def test_pod_log_follow_streams_until_container_exits(kube: KubeEmulator, core_api: Any, tmp_path: Path) -> None:
    go = tmp_path / "go"
    code = (
        f"import os, time\nprint('first', flush=True)\nwhile not os.path.exists({str(go)!r}): time.sleep(0.02)\n"
        "print('second', flush=True)"
    )
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("follow", code))
    kube.wait_for(
        lambda: (
            "first" in kube.pod_log(pods_of(kube, "follow")[0]["metadata"]["name"])
            if pods_of(kube, "follow")
            else False
        )
    )
    pod = pods_of(kube, "follow")[0]["metadata"]["name"]
    resp = core_api.read_namespaced_pod_log(pod, NS, follow=True, _preload_content=False)
    received = b""
    for chunk in resp.stream(64):
        received += chunk
        if b"first" in received and not go.exists():
            go.touch()
    assert received == b"first\nsecond\n"  # the stream ended by itself when the container terminated


def test_log_of_waiting_container_is_400(kube: KubeEmulator, core_api: Any) -> None:
    kube.faults.pod_behaviour("^pull$", "ImagePullBackOff")
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("pull"))
    pod = kube.wait_for(lambda: next((p for p in pods_of(kube, "pull") if _waiting(p) == "ImagePullBackOff"), None))
    with pytest.raises(ApiException) as err:
        core_api.read_namespaced_pod_log(pod["metadata"]["name"], NS)
    body = status_body(err.value)
    assert err.value.status == 400 and body["reason"] == "BadRequest" and "is waiting to start" in body["message"]


# --- faults --------------------------------------------------------------------------------------------------------


def _raw_get(kube: KubeEmulator, path: str) -> tuple[int, dict[str, str], dict[str, Any]]:
    conn = kube.connection(timeout=10)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), json.loads(resp.read())
    finally:
        conn.close()


def test_fail_requests_statuses_and_retry_after(kube: KubeEmulator, batch_api: Any) -> None:
    kube.faults.fail_requests(1, status=429, retry_after=3)
    code, headers, body = _raw_get(kube, "/apis/batch/v1/namespaces/default/jobs")
    assert code == 429 and headers["Retry-After"] == "3"
    assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 3
    # The official client's urllib3 layer retries 429/503 answers that carry Retry-After by itself.
    kube.faults.fail_requests(1, status=429, retry_after=0)
    before = count(kube, "GET", "/jobs")
    batch_api.list_namespaced_job(NS)
    assert count(kube, "GET", "/jobs") == before + 2
    kube.faults.fail_requests(2, status=503, method="POST", path_regex=r"/jobs$")
    batch_api.list_namespaced_job(NS)  # GET does not match
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            batch_api.create_namespaced_job(NS, job_body("later", suspend=True))
        assert err.value.status == 503 and status_body(err.value)["reason"] == "ServiceUnavailable"
    batch_api.create_namespaced_job(NS, job_body("later", suspend=True))
    kube.faults.fail_requests(1, status=500)
    with pytest.raises(ApiException) as err:
        batch_api.read_namespaced_job("later", NS)
    assert err.value.status == 500 and status_body(err.value)["reason"] == "InternalError"
    assert kube.faults.count("fail_request") == 5


def test_reset_connections_closes_without_answer(kube: KubeEmulator) -> None:
    kube.faults.reset_connections(1, path_regex="/version")
    conn = kube.connection(timeout=10)
    conn.request("GET", "/version")
    with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected)):
        conn.getresponse()
    conn.close()
    assert kube.faults.count("reset_connection") == 1
    # Through the official client a POST is not retried by urllib3: the reset surfaces as an error.
    kube.faults.reset_connections(5, method="POST")
    with pytest.raises(Exception) as err:
        client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("reset", suspend=True))
    assert not isinstance(err.value, ApiException)
    assert "reset" not in kube.jobs()


def test_drop_responses_carries_out_the_write_but_never_answers(kube: KubeEmulator, batch_api: Any) -> None:
    kube.faults.drop_responses(1, method="POST", path_regex="/jobs$")
    with pytest.raises(Exception) as err:
        batch_api.create_namespaced_job(NS, job_body("landed", suspend=True))
    assert not isinstance(err.value, ApiException)
    assert "landed" in kube.jobs()  # the create happened
    with pytest.raises(ApiException) as again:
        batch_api.create_namespaced_job(NS, job_body("landed", suspend=True))
    assert again.value.status == 409 and kube.faults.count("drop_response") == 1


def test_forbid_gives_rbac_style_403(kube: KubeEmulator, batch_api: Any, core_api: Any) -> None:
    kube.faults.forbid("create", "jobs", user="system:serviceaccount:default:kannon")
    with pytest.raises(ApiException) as err:
        batch_api.create_namespaced_job(NS, job_body("denied"))
    body = status_body(err.value)
    assert err.value.status == 403 and body["reason"] == "Forbidden"
    assert body["message"] == (
        'jobs.batch is forbidden: User "system:serviceaccount:default:kannon" cannot create '
        'resource "jobs" in API group "batch" in the namespace "default"'
    )
    batch_api.list_namespaced_job(NS)  # other verbs still allowed
    kube.faults.forbid("get", "pods/log")
    with pytest.raises(ApiException) as err:
        core_api.read_namespaced_pod_log("any", NS)
    assert status_body(err.value)["message"] == (
        'pods "any" is forbidden: User "system:serviceaccount:default:default" cannot get resource "pods/log" in API '
        'group "" in the namespace "default"'
    )
    kube.faults.allow("create", "jobs")
    batch_api.create_namespaced_job(NS, job_body("allowed", suspend=True))
    assert kube.faults.count("forbid") == 2


@pytest.mark.parametrize("behaviour", ["ImagePullBackOff", "ErrImagePull", "CreateContainerConfigError"])
def test_pods_that_never_start_keep_the_job_running(kube: KubeEmulator, behaviour: str) -> None:
    kube.faults.pod_behaviour("^stuck-", behaviour)
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("stuck-1", backoffLimit=0))
    pod = kube.wait_for(lambda: next((p for p in pods_of(kube, "stuck-1") if _waiting(p) == behaviour), None))
    assert pod["status"]["phase"] == "Pending"

    # The controller's status write may trail the kubelet's: wait for it rather than racing it.
    def counted_active() -> dict[str, Any] | None:
        job = kube.jobs()["stuck-1"]
        return job if job["status"].get("active") else None

    job = kube.wait_for(counted_active)
    # Real behaviour: the Job does not fail by itself; the launcher needs its own detection.
    assert not conditions(job) and job["status"]["active"] == 1 and "failed" not in job["status"]
    assert kube.faults.count("pod_behaviour") == 1


def test_unschedulable_pod_stays_pending(kube: KubeEmulator) -> None:
    kube.faults.pod_behaviour("nowhere", "Unschedulable")
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("nowhere"))

    def scheduled_false() -> dict[str, Any] | None:
        for p in pods_of(kube, "nowhere"):
            for c in p["status"].get("conditions") or []:
                if c["type"] == "PodScheduled" and c["status"] == "False":
                    return p
        return None

    pod = kube.wait_for(scheduled_false)
    cond = next(c for c in pod["status"]["conditions"] if c["type"] == "PodScheduled")
    assert cond["reason"] == "Unschedulable" and "nodes are available" in cond["message"]
    assert pod["status"]["phase"] == "Pending" and "nodeName" not in pod["spec"]


def test_node_selector_and_gpu_requests_that_cannot_fit_are_unschedulable(kube: KubeEmulator) -> None:
    api = client.BatchV1Api(kube.api_client())
    body = job_body("gpu", container={"resources": {"limits": {"nvidia.com/gpu": "1"}}})
    api.create_namespaced_job(NS, body)
    body = job_body("picky")
    body["spec"]["template"]["spec"]["nodeSelector"] = {"pool": "big"}
    api.create_namespaced_job(NS, body)
    for name, text in (("gpu", "Insufficient nvidia.com/gpu"), ("picky", "didn't match Pod's node affinity")):
        kube.wait_for(
            lambda n=name, t=text: any(
                t in c.get("message", "") for p in pods_of(kube, n) for c in p["status"].get("conditions") or []
            )
        )


def test_oom_killed_pod(kube: KubeEmulator) -> None:
    kube.faults.pod_behaviour("oom", "OOMKilled")
    client.BatchV1Api(kube.api_client()).create_namespaced_job(
        NS, job_body("oom", "import time; time.sleep(30)", backoffLimit=0)
    )
    done = wait_finished(kube, "oom")
    assert conditions(done)["Failed"]["reason"] == "BackoffLimitExceeded"
    (pod,) = pods_of(kube, "oom")
    term = pod["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled") and pod["status"]["phase"] == "Failed"


def test_process_memory_limit_is_a_real_oom_kill(kube: KubeEmulator) -> None:
    from kannon.testing.kube.node.cgroups import _cgroup_base

    if _cgroup_base() is None:
        service_unavailable("no writable memory cgroup here: the process runtime cannot enforce memory limits",
                            "run as root on a host with cgroup v1's memory controller or a delegated cgroup v2 subtree")
    hog = "b = []\nwhile True: b.append(bytearray(16 * 1024 * 1024))"
    body = job_body("hog", hog, backoffLimit=0, container={"resources": {"limits": {"memory": "64Mi"}}})
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, body)
    wait_finished(kube, "hog")
    term = pods_of(kube, "hog")[0]["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled")


def test_evicted_pod(kube: KubeEmulator) -> None:
    kube.faults.pod_behaviour("evict", "Evicted")
    client.BatchV1Api(kube.api_client()).create_namespaced_job(
        NS, job_body("evict", "import time; time.sleep(30)", backoffLimit=0)
    )
    wait_finished(kube, "evict")
    (pod,) = pods_of(kube, "evict")
    assert pod["status"]["phase"] == "Failed" and pod["status"]["reason"] == "Evicted"
    assert "low on resource" in pod["status"]["message"]


def test_preempted_pod_gets_disruption_target_and_times_limits_the_fault(kube: KubeEmulator, core_api: Any) -> None:
    kube.faults.pod_behaviour("preempt", "Preempted", times=1)
    rv = core_api.list_namespaced_pod(NS).metadata.resource_version
    client.BatchV1Api(kube.api_client()).create_namespaced_job(
        NS, job_body("preempt", "import time; time.sleep(1)", backoffLimit=1)
    )
    done = wait_finished(kube, "preempt")
    assert "Complete" in conditions(done) and done["status"]["failed"] == 1
    disrupted = []
    for ev in watch.Watch().stream(core_api.list_namespaced_pod, NS, resource_version=rv, timeout_seconds=1):
        for c in ev["raw_object"]["status"].get("conditions") or []:
            if c["type"] == "DisruptionTarget":
                disrupted.append((ev["type"], c["reason"], ev["raw_object"]["status"]["phase"]))
    assert ("MODIFIED", "PreemptionByScheduler", "Failed") in disrupted
    assert disrupted[-1][0] == "DELETED"  # preempted pods are deleted
    assert kube.faults.count("pod_behaviour") == 1


def test_garbage_collector_deletes_dependents_of_a_deleted_pod(
    kube: KubeEmulator, batch_api: Any, core_api: Any
) -> None:
    _running_job(kube, batch_api, "master")
    master = pods_of(kube, "master")[0]["metadata"]
    child = job_body("child", HANDLES_SIGTERM)
    child["metadata"]["ownerReferences"] = [
        {"apiVersion": "v1", "kind": "Pod", "name": master["name"], "uid": master["uid"], "blockOwnerDeletion": True}
    ]
    batch_api.create_namespaced_job(NS, child)
    _handling(kube, "child")
    core_api.delete_namespaced_pod(master["name"], NS)
    # The master pod goes, then its dependent Job, then (background) the Job's pods.
    kube.wait_for(lambda: "child" not in kube.jobs() and not pods_of(kube, "child"))


def test_delete_job_externally(kube: KubeEmulator, batch_api: Any) -> None:
    _running_job(kube, batch_api, "gone")
    kube.faults.delete_job_externally("gone")
    with pytest.raises(ApiException) as err:
        batch_api.read_namespaced_job("gone", NS)
    assert err.value.status == 404
    kube.wait_for(lambda: not pods_of(kube, "gone"))
    assert kube.faults.count("delete_job") == 1


# --- process hygiene and entry points ------------------------------------------------------------------------------


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_stopping_the_emulator_kills_whole_process_groups(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    # the grandchild writes its PID on the node (/proc is the node's): the pod's PID namespace hides it
    inner = f"import os, time; open({str(pids)!r}, 'w').write(os.readlink('/proc/self')); time.sleep(120)"
    code = f"import subprocess, sys, time\nsubprocess.Popen([sys.executable, '-S', '-c', {inner!r}])\ntime.sleep(120)"
    with KubeEmulator() as kube:
        client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("sleeper", code))
        kube.wait_for(lambda: pids.exists() and pids.read_text())
        grandchild = int(pids.read_text())
    done = threading.Event()
    deadline = time.monotonic() + 10
    while not _gone(grandchild) and time.monotonic() < deadline:
        done.wait(0.05)  # polling a foreign pid: there is nothing to wait on
    assert _gone(grandchild)


def test_kubeconfig_and_standalone_entry_point(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig"
    proc = subprocess.Popen(
        [sys.executable, "-m", "kannon.testing.kube", "--port", "0", "--kubeconfig", str(kubeconfig)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        assert url.startswith("https://127.0.0.1:")
        cfg = client.Configuration()
        config.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
        assert cfg.host == url
        _, active = config.list_kube_config_contexts(config_file=str(kubeconfig))
        assert active["context"]["namespace"] == "default"
        names = [n.metadata.name for n in client.CoreV1Api(client.ApiClient(cfg)).list_namespace().items]
        assert "default" in names
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_wait_for_predicate_may_call_the_api(kube: KubeEmulator, batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job_body("api-wait"))
    job = kube.wait_for(lambda: (j := batch_api.read_namespaced_job("api-wait", NS)).status.succeeded and j)
    assert job.status.succeeded == 1
    with pytest.raises(TimeoutError, match="never"):
        kube.wait_for(lambda: False, timeout=0.2, message="never")


def test_requests_are_recorded(kube: KubeEmulator, batch_api: Any) -> None:
    before = len(kube.requests)
    batch_api.list_namespaced_job(NS, label_selector="a=b")
    method, path, query = kube.requests[before]
    assert (method, path, query) == ("GET", "/apis/batch/v1/namespaces/default/jobs", {"labelSelector": "a=b"})
    assert count(kube, "GET", "/jobs") >= 1
