"""The real kubectl (on PATH on every machine of this project) against the emulator: apply with its default
server-side strict validation (needs the OpenAPI v3 discovery), explain, get with the server's tables, wait, logs,
describe, delete. The checks are shared with the upstream tier (tests/e2e/kubectl_checks.py): expected outputs are
what kubectl prints against upstream v1.33.13."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from kannon.testing import KubeEmulator
from kannon.testing.upstream.versions import KUBERNETES
from tests.e2e.k8s.test_k8s_backend import launch_of, make
from tests.e2e.k8s.test_k8s_backend_build import cli
from tests.e2e.kubectl_checks import (
    build_pipeline,
    bullet_code,
    check_apply,
    check_bullet_of_a_running_build,
    check_explain,
    check_job_lifecycle,
    check_running_bullet,
)

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


def test_apply_creates_then_unchanged_then_configured_and_refuses_a_misspelt_field(kubectl: Any) -> None:
    check_apply(kubectl)


def test_explain_reads_field_docs_from_the_emulator(kubectl: Any) -> None:
    check_explain(kubectl)


def test_get_wait_logs_describe_delete_a_job(kubectl: Any) -> None:
    check_job_lifecycle(kubectl, "default")


def test_kubectl_sees_a_kannon_bullet_while_it_runs(make: Any, kubectl: Any, tmp_path: Path) -> None:
    executor, rec = make()
    flag = tmp_path / "go"
    launch = launch_of(tmp_path, 1, bullet_code(flag))
    executor.launch(launch)
    rec.wait_started(launch.key)
    check_running_bullet(kubectl)
    flag.touch()
    fin = rec.wait_finished(launch.key)
    assert fin.ok and "done" in fin.log_tail


def test_kubectl_sees_the_bullet_of_a_running_kannon_build(kube: KubeEmulator, kubectl: Any, tmp_path: Path) -> None:
    (tmp_path / "waitpipe.py").write_text(build_pipeline(tmp_path / "go"))
    build = cli(kube, tmp_path, tmp_path / "events.jsonl")
    try:
        check_bullet_of_a_running_build(kubectl, build, tmp_path / "go")
    finally:
        if build.poll() is None:
            os.killpg(build.pid, signal.SIGKILL)
            build.communicate()


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
