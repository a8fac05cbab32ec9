"""kannon's master with a Role that lacks one of the rules ``kannon k8s rbac`` prints, on the real RBAC authorizer:
the build stops before launching anything with one line naming the missing permission and the fix, never the
client's raw exception (issue 19 item 4: without the ``leases`` rule, taking the run lease was the first request
refused)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kannon.backends.base import BackendError
from kannon.backends.kubernetes import K8sJobExecutor
from kannon.cli import load_target
from kannon.scheduler import Kannon
from tests.e2e.upstream.kube import kubectl
from tests.e2e.upstream.test_kannon import REPO, template

pytestmark = pytest.mark.upstream


def master_token(upstream: Any, core: Any, namespace: str, drop: str) -> str:
    """The token of a ServiceAccount bound to kannon's Role minus the rule for ``drop``."""
    core.create_namespaced_service_account(namespace, {"metadata": {"name": "kannon-master"}})
    printed = subprocess.run([sys.executable, "-m", "kannon", "k8s", "rbac", "--namespace", namespace,
                              "--service-account", "kannon-master"], capture_output=True, text=True,
                             check=True).stdout  # fmt: skip
    docs = list(yaml.safe_load_all(printed))
    (role,) = [d for d in docs if d and d["kind"] == "Role"]
    kept = [r for r in role["rules"] if drop not in r["resources"]]
    assert len(kept) == len(role["rules"]) - 1
    role["rules"] = kept
    kubectl(upstream, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))
    return str(core.create_namespaced_service_account_token("kannon-master", namespace, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    ).status.token)  # fmt: skip


def token_client(upstream: Any, token: str) -> Any:
    from kubernetes import client

    config = client.Configuration()
    config.host, config.ssl_ca_cert = upstream.server, str(upstream.creds.ca)
    config.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(config)


def test_without_the_leases_rule_the_build_names_the_missing_permission(
    upstream: Any, core: Any, batch: Any, namespace: str, kannon_node: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    token = master_token(upstream, core, namespace, drop="leases")
    monkeypatch.chdir(tmp_path)
    executor = K8sJobExecutor(template(namespace, kannon_node, tmp_path), api_client=token_client(upstream, token),
                              python=sys.executable, retry_backoff=0.05)  # fmt: skip
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    with pytest.raises(BackendError) as refused:
        Kannon(executor=executor, sys_path=extra).build(root)
    message = str(refused.value)
    assert "may not get leases" in message and f"namespace {namespace!r}" in message, message
    assert "kannon k8s rbac" in message and "\n" not in message
    assert batch.list_namespaced_job(namespace).items == []  # stopped before launching anything

    # The CLI: exit 2 (bad setup, as for the other 403s) with that one line, no traceback.
    kubeconfig = {"apiVersion": "v1", "kind": "Config", "current-context": "sa",
                  "clusters": [{"name": "up", "cluster": {"server": upstream.server,
                                                          "certificate-authority": str(upstream.creds.ca)}}],
                  "users": [{"name": "sa", "user": {"token": token}}],
                  "contexts": [{"name": "sa", "context": {"cluster": "up", "user": "sa", "namespace": namespace}}]}
    (tmp_path / "kubeconfig").write_text(yaml.safe_dump(kubeconfig))
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(template(namespace, kannon_node, tmp_path)))
    cli = subprocess.run([sys.executable, "-m", "kannon", "build", f"{REPO}/examples/quickstart/pipeline.py:root",
                          "--backend", "kubernetes", "--job-template", str(tmp_path / "job.yaml"),
                          "--k8s-python", sys.executable], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "KUBECONFIG": str(tmp_path / "kubeconfig")})  # fmt: skip
    output = cli.stdout + cli.stderr
    assert cli.returncode == 2, output
    assert "Traceback" not in output and token not in output
    assert [ln for ln in output.splitlines() if "leases" in ln] == [ln for ln in output.splitlines()
                                                                    if "may not get leases" in ln], output  # fmt: skip
    assert any("may not get leases" in ln and "kannon k8s rbac" in ln for ln in output.splitlines()), output
    assert batch.list_namespaced_job(namespace).items == []
