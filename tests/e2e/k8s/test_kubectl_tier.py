"""The real kubectl (on PATH on every machine of this project) against the emulator: apply with its default
server-side strict validation (needs the OpenAPI v3 discovery), explain, get with the server's tables, wait, logs,
describe, delete. Expected outputs are what kubectl prints against upstream v1.33.13 (tests/e2e/upstream)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kannon.testing import KubeEmulator
from kannon.testing.upstream.versions import KUBERNETES
from tests.e2e.k8s.test_k8s_backend import launch_of, make, wait_flag
from tests.support.procs import wait_until

__all__ = ["make"]  # the executor fixture of the backend tests, used here by name

pytestmark = [
    pytest.mark.k8s,
    pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not on PATH"),
]


@pytest.fixture
def kubectl(kube: KubeEmulator, tmp_path: Path) -> Any:
    config = kube.write_kubeconfig(tmp_path / "kubeconfig")

    def run(*args: str, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
        # A cache directory per test: kubectl caches discovery and OpenAPI per host:port, and ports are reused.
        cmd = ["kubectl", "--kubeconfig", str(config), "--cache-dir", str(tmp_path / "cache"), *args]
        out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, timeout=120)
        if check and out.returncode != 0:
            raise AssertionError(f"{cmd} exited {out.returncode}: {out.stderr}")
        return out

    return run


def manifest(name: str, code: str = "print('hello from the pod')", **spec: Any) -> str:
    ctr = {"name": "main", "image": "python:3.11-slim", "command": [sys.executable, "-S", "-c", code]}
    job = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [ctr]}}, **spec},
    }
    return yaml.safe_dump(job)


def test_apply_creates_then_unchanged_then_configured_and_refuses_a_misspelt_field(kubectl: Any) -> None:
    assert kubectl("apply", "-f", "-", stdin=manifest("applied", suspend=True)).stdout.strip() == (
        "job.batch/applied created")  # fmt: skip
    assert kubectl("apply", "-f", "-", stdin=manifest("applied", suspend=True)).stdout.strip() == (
        "job.batch/applied unchanged")  # fmt: skip
    assert kubectl("apply", "-f", "-", stdin=manifest("applied", suspend=False)).stdout.strip() == (
        "job.batch/applied configured")  # fmt: skip
    bad = yaml.safe_load(manifest("misspelt"))
    bad["spec"]["template"]["spec"]["restartPolicyy"] = "Never"
    refused = kubectl("apply", "-f", "-", stdin=yaml.safe_dump(bad), check=False)
    assert refused.returncode != 0
    assert 'unknown field "spec.template.spec.restartPolicyy"' in refused.stderr
    assert "misspelt" not in kubectl("get", "jobs", "-o", "name").stdout


def test_explain_reads_field_docs_from_the_emulator(kubectl: Any) -> None:
    out = kubectl("explain", "job.spec.suspend").stdout
    assert "FIELD: suspend <boolean>" in out and "Job controller should create Pods" in out


def test_get_wait_logs_describe_delete_a_job(kubectl: Any) -> None:
    kubectl("apply", "-f", "-", stdin=manifest("hello"))
    kubectl("apply", "-f", "-", stdin=manifest("parked", suspend=True))
    kubectl("wait", "--for=condition=complete", "job/hello", "--timeout=120s")
    kubectl("wait", "--for=condition=suspended", "job/parked", "--timeout=120s")

    jobs = kubectl("get", "jobs").stdout.splitlines()
    assert jobs[0].split() == ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]
    rows = {line.split()[0]: line.split() for line in jobs[1:]}
    assert rows["hello"][1:3] == ["Complete", "1/1"]
    assert rows["parked"][1:3] == ["Suspended", "0/1"] and len(rows["parked"]) == 4  # no DURATION before a start
    pods = kubectl("get", "pods", "-l", "job-name=hello").stdout.splitlines()
    assert pods[0].split() == ["NAME", "READY", "STATUS", "RESTARTS", "AGE"]
    (pod_row,) = pods[1:]
    assert pod_row.split()[1:4] == ["0/1", "Completed", "0"]
    wide = kubectl("get", "pods", "-o", "wide").stdout.splitlines()[0].split()
    assert wide[5:7] == ["IP", "NODE"]

    assert kubectl("logs", "job/hello").stdout == "hello from the pod\n"
    described = kubectl("describe", "job", "hello").stdout
    assert "Pods Statuses:    0 Active (0 Ready) / 1 Succeeded / 0 Failed" in described

    out = kubectl("delete", "job", "hello").stdout  # kubectl deletes in the background and waits for the Job
    assert out.strip() == 'job.batch "hello" deleted'
    kubectl("wait", "--for=delete", "pod", "-l", "job-name=hello", "--timeout=120s")
    assert kubectl("get", "pods", "-l", "job-name=hello").stderr.strip() == "No resources found in default namespace."


def test_kubectl_sees_a_kannon_bullet_while_it_runs(kube: KubeEmulator, make: Any, kubectl: Any,
                                                    tmp_path: Path) -> None:  # fmt: skip
    executor, rec = make()
    flag = tmp_path / "go"
    launch = launch_of(tmp_path, 1, "print('bullet says hi', flush=True)\n" + wait_flag(flag, "print('done')"))
    executor.launch(launch)
    rec.wait_started(launch.key)
    (name,) = wait_until(lambda: list(kube.jobs()), 120, "the bullet's Job", max_delay=0.2)
    wait_until(lambda: "bullet says hi" in kubectl("logs", f"job/{name}", check=False).stdout, 120,
               "the bullet's first line through kubectl logs", max_delay=0.2)  # fmt: skip
    row = kubectl("get", "job", name).stdout.splitlines()[1].split()
    assert row[:3] == [name, "Running", "0/1"]
    pod_row = kubectl("get", "pods", "-l", f"job-name={name}").stdout.splitlines()[1].split()
    assert pod_row[1:4] == ["1/1", "Running", "0"]
    described = kubectl("describe", "job", name).stdout  # the column width depends on the longest label
    assert re.search(r"Pods Statuses:\s+1 Active \(1 Ready\) / 0 Succeeded / 0 Failed", described)
    flag.touch()
    fin = rec.wait_finished(launch.key)
    assert fin.ok and "done" in fin.log_tail


def test_the_emulator_reports_the_release_it_is_checked_against(kubectl: Any) -> None:
    # The emulator's behaviour is compared with upstream KUBERNETES (tests/e2e/upstream); /version and the OpenAPI
    # documents must name that release, or kubectl's version-skew rules judge the wrong server.
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    server = versions["serverVersion"]
    major, minor, _ = KUBERNETES.removeprefix("v").split(".")
    assert (server["major"], server["minor"]) == (major, minor)
    assert server["gitVersion"].startswith(KUBERNETES + "-")
    client_minor = int(versions["clientVersion"]["minor"].rstrip("+"))
    assert abs(client_minor - int(minor)) <= 1, "kubectl is outside the supported skew of the emulated release"


def test_kubectl_verifies_the_emulator_and_sends_its_token(kube: KubeEmulator, kubectl: Any, tmp_path: Path) -> None:
    """client-go sends the kubeconfig's token only over TLS, and a wrong one is refused: kubectl's own message for a
    401 is "You must be logged in to the server (...)"."""
    assert json.loads(kubectl("get", "--raw", "/api/v1/namespaces/default/secrets").stdout)["kind"] == "SecretList"
    wrong = yaml.safe_load(kube.write_kubeconfig(tmp_path / "wrong").read_text())
    wrong["users"][0]["user"]["token"] = "not-the-token"
    (tmp_path / "wrong").write_text(yaml.safe_dump(wrong))
    out = subprocess.run(["kubectl", "--kubeconfig", str(tmp_path / "wrong"), "--cache-dir", str(tmp_path / "c2"),
                          "get", "secrets"], capture_output=True, text=True, timeout=120)  # fmt: skip
    assert out.returncode != 0 and "error: You must be logged in to the server" in out.stderr
