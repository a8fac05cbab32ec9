"""The real kubectl against the real API server: discovery, OpenAPI-backed apply and explain, server-side tables."""

from __future__ import annotations

import json
from typing import Any

import pytest
import yaml
from kubernetes import client

from kannon.testing.upstream import KUBERNETES
from tests.e2e.upstream.kube import condition, job_manifest, kubectl
from tests.support.procs import wait_until

pytestmark = pytest.mark.upstream


def test_kubectl_version_reports_the_pinned_server_release(upstream: Any) -> None:
    versions = json.loads(kubectl(upstream, "version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == KUBERNETES
    client_minor = int(versions["clientVersion"]["minor"].rstrip("+"))
    # kubectl supports a server one minor older or newer: the pin must stay inside that skew.
    assert abs(int(versions["serverVersion"]["minor"]) - client_minor) <= 1


def test_api_resources_lists_jobs_leases_and_pod_subresources(upstream: Any) -> None:
    out = kubectl(upstream, "api-resources", "-o", "wide").stdout
    rows = {line.split()[0]: line for line in out.splitlines()[1:]}
    assert "batch/v1" in rows["jobs"] and "Job" in rows["jobs"]
    assert "coordination.k8s.io/v1" in rows["leases"]
    assert "rbac.authorization.k8s.io/v1" in rows["rolebindings"]
    raw = json.loads(kubectl(upstream, "get", "--raw", "/api/v1").stdout)
    subresources = {r["name"] for r in raw["resources"] if r["name"].startswith("pods/")}
    assert {"pods/status", "pods/binding", "pods/log", "pods/eviction"} <= subresources


def test_apply_validates_a_job_against_the_openapi_schema(upstream: Any, namespace: str) -> None:
    manifest = yaml.safe_dump(job_manifest("applied", suspend=True))
    first = kubectl(upstream, "apply", "-n", namespace, "-f", "-", stdin=manifest)
    assert first.stdout.strip() == "job.batch/applied created"
    again = kubectl(upstream, "apply", "-n", namespace, "-f", "-", stdin=manifest)
    assert again.stdout.strip() == "job.batch/applied unchanged"

    bad = job_manifest("misspelled", suspend=True, pod_spec={"restartPolicyy": "Never"})
    refused = kubectl(upstream, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert refused.returncode != 0
    # kubectl's default --validate=strict is the server's strict field validation, which names the field.
    assert 'unknown field "spec.template.spec.restartPolicyy"' in refused.stderr


def test_explain_reads_field_docs_from_the_server(upstream: Any) -> None:
    out = kubectl(upstream, "explain", "job.spec.suspend").stdout
    assert "FIELD: suspend <boolean>" in out


def test_get_jobs_prints_the_server_side_table(upstream: Any, namespace: str, api_client: Any) -> None:
    kubectl(upstream, "apply", "-n", namespace, "-f", "-", stdin=yaml.safe_dump(job_manifest("tabled", suspend=True)))
    # The STATUS column reads the Job's conditions: wait for the controller's Suspended (until then it says Running).
    jobs = client.BatchV1Api(api_client)
    wait_until(lambda: condition(jobs.read_namespaced_job("tabled", namespace), "Suspended"), 120,
               "the Suspended condition", max_delay=0.5)  # fmt: skip
    lines = kubectl(upstream, "get", "jobs", "-n", namespace).stdout.splitlines()
    assert lines[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    assert lines[1].split()[:3] == ["tabled", "Suspended", "0/1"]

    # The same table through the client: the columns come from the server, not from kubectl.
    table = api_client.call_api(
        f"/apis/batch/v1/namespaces/{namespace}/jobs", "GET",
        header_params={"Accept": "application/json;as=Table;g=meta.k8s.io;v=v1"},
        response_types_map={200: "object"}, auth_settings=["BearerToken"], _return_http_data_only=True,
    )  # fmt: skip
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:5] == ["Name", "Status", "Completions", "Duration", "Age"]
    assert table["rows"][0]["cells"][:3] == ["tabled", "Suspended", "0/1"]
