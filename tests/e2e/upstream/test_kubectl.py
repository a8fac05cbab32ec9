"""The real kubectl against the real API server: discovery, OpenAPI-backed apply and explain, server-side tables,
and the checks the emulator's kubectl tier runs (tests/e2e/kubectl_checks.py) with pods run by kannon's node: a Job's
get/wait/logs/describe/delete, and a kannon bullet seen while it runs."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kannon.testing.upstream import KUBERNETES
from tests.e2e.k8s.test_k8s_backend import launch_of
from tests.e2e.kubectl_checks import (
    Kubectl,
    build_pipeline,
    bullet_code,
    check_apply,
    check_bullet_of_a_running_build,
    check_explain,
    check_job_lifecycle,
    check_running_bullet,
)
from tests.e2e.upstream.kube import condition, job_manifest, kubectl
from tests.e2e.upstream.test_executor import make
from tests.e2e.upstream.test_master import Master, master
from tests.support.procs import wait_until

__all__ = ["make", "master"]  # fixtures of the executor and master tests (kannon's node), used here by name

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


@pytest.fixture
def kubectl_ns(upstream: Any, namespace: str) -> Kubectl:
    """The shared checks' kubectl (tests/e2e/kubectl_checks.py): the admin's, in the test's namespace."""

    def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        return kubectl(upstream, "-n", namespace, *args, stdin=stdin, check=check)

    return run


def on_node(node: str) -> dict[str, Any]:
    return {"nodeSelector": {"kubernetes.io/hostname": node}}


def test_apply_created_unchanged_configured_and_a_misspelt_field_refused(kubectl_ns: Kubectl,
                                                                          kannon_node: str) -> None:  # fmt: skip
    # kubectl's default --validate=strict is the server's strict field validation, which names the field.
    check_apply(kubectl_ns, on_node(kannon_node))


def test_explain_reads_field_docs_from_the_server(kubectl_ns: Kubectl) -> None:
    check_explain(kubectl_ns)


def test_get_wait_logs_describe_delete_a_job_run_by_kannons_node(kubectl_ns: Kubectl, namespace: str,
                                                                 kannon_node: str) -> None:  # fmt: skip
    check_job_lifecycle(kubectl_ns, namespace, on_node(kannon_node))


def test_kubectl_sees_a_kannon_bullet_while_it_runs(make: Any, kubectl_ns: Kubectl, tmp_path: Path) -> None:
    executor, rec = make()
    flag = tmp_path / "go"
    launch = launch_of(tmp_path, 1, bullet_code(flag))
    executor.launch(launch)
    rec.wait_started(launch.key)
    check_running_bullet(kubectl_ns)
    flag.touch()
    fin = rec.wait_finished(launch.key)
    assert fin.ok and "done" in fin.log_tail


def test_kubectl_sees_the_bullet_of_a_running_kannon_build(master: Master, kubectl_ns: Kubectl,
                                                          tmp_path: Path) -> None:  # fmt: skip
    (tmp_path / "seen.py").write_text(build_pipeline(tmp_path / "go"))
    build = master.start("events.jsonl", pipeline="seen.py")
    check_bullet_of_a_running_build(kubectl_ns, build, tmp_path / "go")


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
