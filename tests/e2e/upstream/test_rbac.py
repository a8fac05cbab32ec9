"""kannon's master with a Role that lacks one of the rules ``kannon k8s rbac`` prints, on the real RBAC authorizer:
the build stops before launching anything with one line naming the missing permission and the fix, never the
client's raw exception (issue 19 item 4: without the ``leases`` rule, taking the run lease was the first request
refused)."""

from __future__ import annotations

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


def master_client(upstream: Any, core: Any, namespace: str, drop: str) -> Any:
    """An ApiClient with the token of a ServiceAccount bound to kannon's Role minus the rule for ``drop``."""
    from kubernetes import client

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
    token = core.create_namespaced_service_account_token("kannon-master", namespace, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    ).status.token  # fmt: skip
    config = client.Configuration()
    config.host, config.ssl_ca_cert = upstream.server, str(upstream.creds.ca)
    config.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(config)


def test_without_the_leases_rule_the_build_names_the_missing_permission(
    upstream: Any, core: Any, batch: Any, namespace: str, kannon_node: str, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    master = master_client(upstream, core, namespace, drop="leases")
    monkeypatch.chdir(tmp_path)
    executor = K8sJobExecutor(template(namespace, kannon_node, tmp_path), api_client=master, python=sys.executable,
                              retry_backoff=0.05)  # fmt: skip
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    with pytest.raises(BackendError) as refused:
        Kannon(executor=executor, sys_path=extra).build(root)
    message = str(refused.value)
    assert "may not get leases" in message and f"namespace {namespace!r}" in message, message
    assert "kannon k8s rbac" in message and "\n" not in message
    assert batch.list_namespaced_job(namespace).items == []  # stopped before launching anything
