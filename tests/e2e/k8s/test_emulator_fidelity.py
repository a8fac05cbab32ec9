"""The emulator answers as upstream v1.33.13 does (docs/upstream.md, "Differences"; tests/e2e/upstream shows the same
requests against the real kube-apiserver and job controller). Official client over HTTP, plus raw requests where the
client cannot send the request (a protobuf body) or hides the answer (a Warning header)."""

from __future__ import annotations

import json
import sys
from typing import Any

import pytest
from kubernetes.client.rest import ApiException

from kannon.testing import KubeEmulator
from tests.support.procs import wait_until

pytestmark = pytest.mark.k8s

NS = "default"
TABLE = "application/json;as=Table;g=meta.k8s.io;v=v1"


def job(name: str, *, pod_spec: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    ctr = {"name": "main", "image": "python:3.11-slim", "command": [sys.executable, "-S", "-c", "pass"]}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [ctr], **(pod_spec or {})}}, **spec},
    }


def raw(kube: KubeEmulator, method: str, path: str, body: bytes | None = None,
        headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], Any]:  # fmt: skip
    """One HTTP request; (status, headers with all Warning values joined, decoded JSON or text)."""
    conn = kube.connection(timeout=60)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k: v for k, v in resp.getheaders() if k.lower() != "warning"}
        warnings = resp.msg.get_all("Warning") or []
        if warnings:
            hdrs["Warning"] = ", ".join(warnings)
        ctype = resp.getheader("Content-Type") or ""
        return resp.status, hdrs, json.loads(data) if "json" in ctype else data.decode()
    finally:
        conn.close()


JOBS = f"/apis/batch/v1/namespaces/{NS}/jobs"


# -- 1. field validation (kubernetes.io/docs/reference/using-api/api-concepts/#field-validation) -----------------


def test_strict_field_validation_refuses_an_unknown_field_through_the_client(batch_api: Any) -> None:
    body = job("strict", backoffLimitt=1)
    with pytest.raises(ApiException) as err:
        batch_api.create_namespaced_job(NS, body, field_validation="Strict")
    assert err.value.status == 400
    status = json.loads(err.value.body)
    assert status["reason"] == "BadRequest" and status["kind"] == "Status"
    assert status["message"].endswith('strict decoding error: unknown field "spec.backoffLimitt"')
    with pytest.raises(ApiException) as gone:
        batch_api.read_namespaced_job("strict", NS)
    assert gone.value.status == 404  # nothing was created


def test_strict_names_every_unknown_field_with_its_full_path(kube: KubeEmulator) -> None:
    body = job("deep", pod_spec={"restartPolicyy": "Never"})
    body["spec"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "Always"
    code, _, status = raw(kube, "POST", JOBS + "?fieldValidation=Strict", json.dumps(body).encode(),
                          {"Content-Type": "application/json"})  # fmt: skip
    assert code == 400
    assert 'unknown field "spec.template.spec.containers[0].imagePullPolicyy"' in status["message"]
    assert 'unknown field "spec.template.spec.restartPolicyy"' in status["message"]


def test_ignore_creates_the_job_and_drops_the_unknown_field(kube: KubeEmulator, batch_api: Any) -> None:
    created = batch_api.create_namespaced_job(NS, job("ignored", backoffLimitt=1, suspend=True),
                                              field_validation="Ignore")  # fmt: skip
    assert created.metadata.name == "ignored"
    # Read back as raw JSON (the client's models would drop an unknown field themselves).
    code, _, stored = raw(kube, "GET", f"{JOBS}/ignored")
    assert code == 200
    assert "backoffLimitt" not in stored["spec"] and stored["spec"]["backoffLimit"] == 6


@pytest.mark.parametrize("query", ["", "?fieldValidation=Warn"])
def test_warn_the_default_creates_drops_and_warns_per_field(kube: KubeEmulator, query: str) -> None:
    body = job(f"warned{len(query)}", backoffLimitt=1, suspend=True)
    code, headers, stored = raw(kube, "POST", JOBS + query, json.dumps(body).encode(),
                                {"Content-Type": "application/json"})  # fmt: skip
    assert code == 201
    assert headers["Warning"] == '299 - "unknown field \\"spec.backoffLimitt\\""'
    assert "backoffLimitt" not in stored["spec"]
    _, _, again = raw(kube, "GET", f"{JOBS}/{body['metadata']['name']}")
    assert "backoffLimitt" not in again["spec"]


def test_strict_applies_to_updates_and_leases(kube: KubeEmulator, batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job("upd", suspend=True))
    patch = json.dumps({"spec": {"suspendd": False}}).encode()
    code, _, status = raw(kube, "PATCH", f"{JOBS}/upd?fieldValidation=Strict", patch,
                          {"Content-Type": "application/merge-patch+json"})  # fmt: skip
    assert code == 400 and 'unknown field "spec.suspendd"' in status["message"]
    lease = {"metadata": {"name": "l1"}, "spec": {"holderIdentityy": "x"}}
    code, _, status = raw(kube, "POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases?fieldValidation=Strict",
                          json.dumps(lease).encode(), {"Content-Type": "application/json"})  # fmt: skip
    assert code == 400 and status["message"].endswith('strict decoding error: unknown field "spec.holderIdentityy"')


# -- 2. request bodies the emulator cannot decode -----------------------------------------------------------------


def test_protobuf_body_is_415_with_a_status(kube: KubeEmulator) -> None:
    # The protobuf envelope starts with the magic "k8s\0"; the emulator has no protobuf serializer.
    code, _, status = raw(kube, "POST", JOBS, b"k8s\x00\n\x0b\n\x08batch/v1\x12\x03Job",
                          {"Content-Type": "application/vnd.kubernetes.protobuf"})  # fmt: skip
    assert code == 415
    assert status["kind"] == "Status" and status["reason"] == "UnsupportedMediaType" and status["code"] == 415
    assert "application/json" in status["message"]


def test_other_media_types_are_415_and_broken_json_is_400(kube: KubeEmulator) -> None:
    code, _, status = raw(kube, "POST", JOBS, b"name=x", {"Content-Type": "text/plain"})
    assert (code, status["reason"]) == (415, "UnsupportedMediaType")
    # Upstream's wording; its list also names application/vnd.kubernetes.protobuf, which the emulator cannot decode.
    assert status["message"] == (
        "the body of the request was in an unknown format - accepted media types include: "
        "application/json, application/yaml")  # fmt: skip
    code, _, status = raw(kube, "POST", JOBS, b"\xff\xfe{", {"Content-Type": "application/json"})
    assert (code, status["reason"], status["kind"]) == (400, "BadRequest", "Status")


def test_yaml_body_is_decoded_as_upstream_does(kube: KubeEmulator) -> None:
    import yaml

    code, _, created = raw(kube, "POST", JOBS, yaml.safe_dump(job("yamled", suspend=True)).encode(),
                           {"Content-Type": "application/yaml"})  # fmt: skip
    assert code == 201 and created["metadata"]["name"] == "yamled"


# -- 3. Job status and defaults as the v1.33 apiserver and job controller write them ------------------------------


def test_fresh_job_status_has_zero_ready_terminating_and_uncounted(kube: KubeEmulator, batch_api: Any) -> None:
    created = batch_api.create_namespaced_job(NS, job("fresh", suspend=True))
    assert created.spec.manual_selector is False  # defaulted by the apiserver, not absent
    wait_until(lambda: batch_api.read_namespaced_job("fresh", NS).status.conditions, 60, "the Suspended condition",
               max_delay=0.2)  # fmt: skip
    status = batch_api.read_namespaced_job("fresh", NS).status
    assert (status.ready, status.terminating, status.active) == (0, 0, None)
    assert status.uncounted_terminated_pods is not None
    _, _, stored = raw(kube, "GET", f"{JOBS}/fresh")
    assert stored["status"]["uncountedTerminatedPods"] == {}


# -- 4. server-side tables (kubernetes.io/docs/reference/using-api/api-concepts/#receiving-resources-as-tables) --


def test_job_and_pod_lists_as_tables(kube: KubeEmulator, batch_api: Any) -> None:
    batch_api.create_namespaced_job(NS, job("tab-suspended", suspend=True))
    batch_api.create_namespaced_job(NS, job("tab-done"))
    wait_until(lambda: (batch_api.read_namespaced_job("tab-done", NS).status.succeeded or 0) == 1, 120,
               "tab-done to succeed", max_delay=0.2)  # fmt: skip
    wait_until(lambda: batch_api.read_namespaced_job("tab-suspended", NS).status.conditions, 60, "Suspended",
               max_delay=0.2)  # fmt: skip
    wait_until(lambda: batch_api.read_namespaced_job("tab-done", NS).status.completion_time, 60, "completion",
               max_delay=0.2)  # fmt: skip
    code, _, table = raw(kube, "GET", JOBS, headers={"Accept": TABLE})
    assert code == 200 and (table["kind"], table["apiVersion"]) == ("Table", "meta.k8s.io/v1")
    cols = [(c["name"], c["priority"]) for c in table["columnDefinitions"]]
    assert [n for n, p in cols if p == 0] == ["Name", "Status", "Completions", "Duration", "Age"]
    rows = {r["cells"][0]: r for r in table["rows"]}
    assert rows["tab-suspended"]["cells"][1:4] == ["Suspended", "0/1", ""]  # no startTime: no duration
    assert rows["tab-done"]["cells"][1:3] == ["Complete", "1/1"]
    assert rows["tab-done"]["cells"][3].endswith("s")
    assert rows["tab-done"]["object"]["kind"] == "PartialObjectMetadata"

    code, _, pods = raw(kube, "GET", f"/api/v1/namespaces/{NS}/pods", headers={"Accept": TABLE})
    assert [c["name"] for c in pods["columnDefinitions"] if c["priority"] == 0] == [
        "Name", "Ready", "Status", "Restarts", "Age"]  # fmt: skip
    (row,) = pods["rows"]
    assert row["cells"][0].startswith("tab-done-") and row["cells"][1:4] == ["0/1", "Completed", "0"]

    code, _, one = raw(kube, "GET", f"{JOBS}/tab-suspended?includeObject=Object", headers={"Accept": TABLE})
    assert one["kind"] == "Table" and one["rows"][0]["object"]["kind"] == "Job"
    code, _, plain = raw(kube, "GET", JOBS, headers={"Accept": "application/json"})
    assert plain["kind"] == "JobList"


def test_lease_and_namespace_tables_have_upstream_columns(kube: KubeEmulator) -> None:
    lease = {"metadata": {"name": "holder-lease"}, "spec": {"holderIdentity": "host-1"}}
    raw(kube, "POST", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases", json.dumps(lease).encode(),
        {"Content-Type": "application/json"})  # fmt: skip
    _, _, leases = raw(kube, "GET", f"/apis/coordination.k8s.io/v1/namespaces/{NS}/leases", headers={"Accept": TABLE})
    assert [c["name"] for c in leases["columnDefinitions"]] == ["Name", "Holder", "Age"]
    assert leases["rows"][0]["cells"][:2] == ["holder-lease", "host-1"]
    _, _, namespaces = raw(kube, "GET", "/api/v1/namespaces", headers={"Accept": TABLE})
    assert [c["name"] for c in namespaces["columnDefinitions"]] == ["Name", "Status", "Age"]


# -- tolerations (ValidateTolerations, pkg/apis/core/validation) --------------------------------------------------
# What kube-apiserver v1.33.13 (built here by kannon.testing.upstream) answered for this pod spec, field by field.
UPSTREAM_TOLERATION_CAUSES = [
    ("spec.template.spec.tolerations[0].operator", 'Invalid value: "Equal": operator must be Exists when `key` is '
     'empty, which means "match all values and all keys"'),
    ("spec.template.spec.tolerations[1].operator", 'Invalid value: "v": value must be empty when `operator` is '
     "'Exists'"),
    ("spec.template.spec.tolerations[2].effect", 'Invalid value: "NoSchedule": effect must be \'NoExecute\' when '
     "`tolerationSeconds` is set"),
    ("spec.template.spec.tolerations[3].operator", 'Unsupported value: "Maybe": supported values: "Equal", "Exists"'),
    ("spec.template.spec.tolerations[4].effect", 'Unsupported value: "Sometimes": supported values: "NoSchedule", '
     '"PreferNoSchedule", "NoExecute"'),
]  # fmt: skip


def test_tolerations_are_refused_as_upstream_refuses_them(batch_api: Any) -> None:
    tolerations = [{"operator": "Equal", "value": "x"}, {"key": "a", "operator": "Exists", "value": "v"},
                   {"key": "b", "effect": "NoSchedule", "tolerationSeconds": 10}, {"key": "c", "operator": "Maybe"},
                   {"key": "d", "effect": "Sometimes"}, {"key": "e", "operator": "Exists", "effect": "NoExecute",
                                                         "tolerationSeconds": 30}]  # fmt: skip
    with pytest.raises(ApiException) as err:
        batch_api.create_namespaced_job(NS, job("tolerations", pod_spec={"tolerations": tolerations}))
    assert err.value.status == 422
    causes = [(c["field"], c["message"]) for c in json.loads(err.value.body)["details"]["causes"]]
    assert causes == UPSTREAM_TOLERATION_CAUSES  # the last toleration is valid: no cause for it
