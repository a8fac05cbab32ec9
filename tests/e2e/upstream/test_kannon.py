"""kannon itself on the real control plane: ``Kannon(executor=K8sJobExecutor(...))`` runs the quick-start's bullets
as Jobs that the real Job controller and kube-scheduler handle and kannon's node runs (warm process pods), as
tests/e2e/k8s/test_k8s_backend_build.py does against the emulator.

Pods are local processes in the test's directory (``workingDir``), so the gokart workspace ./resources is shared with
the master as a PersistentVolume would be in a cluster.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.kubernetes import K8sJobExecutor
from kannon.cli import load_target
from kannon.result import KannonBuildError, Status
from kannon.scheduler import Kannon

pytestmark = pytest.mark.upstream

REPO = Path(__file__).resolve().parents[3]


def template(namespace: str, node: str, workdir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": namespace},
        "spec": {"template": {"spec": {
            "nodeSelector": {"kubernetes.io/hostname": node},
            "containers": [{"name": "main", "image": "kannon-process", "workingDir": str(workdir),
                            "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}},
    }  # fmt: skip


def test_quickstart_runs_on_the_real_control_plane(upstream: Any, batch: Any, namespace: str, kannon_node: str,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.1")
    executor = K8sJobExecutor(template(namespace, kannon_node, tmp_path), api_client=upstream.api_client(),
                              python=sys.executable, retry_backoff=0.05)  # fmt: skip
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    result = Kannon(executor=executor, sys_path=extra, env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)

    assert result.ok and result.backend == "kubernetes"
    bullets = [r for r in result.tasks.values() if r.placement.value == "bullet"]
    assert len(bullets) == 9
    for rec in bullets:
        assert rec.status is Status.SUCCEEDED
        assert rec.last is not None and (rec.last.where or "").startswith("pod kannon-task")
    assert root.output().load() == "G(F(E0(D0(C0(B(A(a))))), E1(D1(C1(B(A(a))))), E2(D2(C2(B(A(a)))))))"
    # Each bullet's log came through pods/log, proxied by the API server to kannon's node.
    logs = list(Path(result.run_dir or "").glob(f"logs/{result.invocation_id}/TaskC-*.log"))
    assert len(logs) == 3 and all(p.stat().st_size > 0 for p in logs)
    jobs = batch.list_namespaced_job(namespace).items
    assert len(jobs) == 9 and all(j.status.succeeded == 1 for j in jobs)


def test_ready_bullets_share_pods_on_the_real_control_plane(upstream: Any, batch: Any, core: Any, namespace: str,
                                                             kannon_node: str, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """Packs (docs/kubernetes.md) as the real Job controller, scheduler, API server log proxy and kannon's node run
    them: the quick-start's three branches, each level ready together, with a declared size (100m, 64Mi)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.1")
    body = template(namespace, kannon_node, tmp_path)
    body["spec"]["template"]["spec"]["containers"][0]["resources"] = {"requests": {"cpu": "100m", "memory": "64Mi"}}
    executor = K8sJobExecutor(body, api_client=upstream.api_client(), python=sys.executable, retry_backoff=0.05)
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    result = Kannon(executor=executor, sys_path=extra, env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)

    assert result.ok, result
    assert root.output().load() == "G(F(E0(D0(C0(B(A(a))))), E1(D1(C1(B(A(a))))), E2(D2(C2(B(A(a)))))))"
    jobs = batch.list_namespaced_job(namespace).items
    # C0-2 ready together, then D0-2 (their pack ends at once), then E0-2: three pods of three
    assert len(jobs) == 3 and all(j.metadata.labels["kannon.io/pack"] == "3" for j in jobs), jobs
    assert all(j.status.succeeded == 1 for j in jobs)
    for job in jobs:
        container = job.spec.template.spec.containers[0]
        assert container.command[-1] == "run-pack"
        assert container.resources.requests == {"cpu": "300m", "memory": str(3 * 64 * 2**20)}
    pods = core.list_namespaced_pod(namespace).items
    assert {p.spec.node_name for p in pods} == {kannon_node}
    bullets = [r for r in result.tasks.values() if r.placement.value == "bullet"]
    assert len(bullets) == 9 and len({r.last.where for r in bullets if r.last is not None}) == 3
    # each task's own log, split from its pod's log (read through the API server's proxy to the node)
    logs = Path(result.run_dir or "") / "logs" / result.invocation_id
    for rec in bullets:
        text = (logs / f"{rec.family}-{rec.task_id[:12]}-1.log").read_text()
        assert f"[{rec.task_id}]" in text and text.count("kannon.child: running") == 1, text


FAILING = """
import gokart, luigi, kannon

class RealHog(kannon.TaskOnBullet[str]):
    kannon_hints = kannon.Hints(memory="300Mi")  # above an interpreter with gokart, far below what run() takes

    def run(self) -> None:
        hoard = bytearray(1024 * 2**20)
        self.dump(str(len(hoard)))

class RealRaises(kannon.TaskOnBullet[str]):
    def run(self) -> None:
        print("about to fail", flush=True)
        raise ValueError("broken on purpose")

class RealJoin(gokart.TaskOnKart[str]):
    def requires(self):
        return [RealHog(), RealRaises()]

    def run(self) -> None:
        self.dump("never")

root = RealJoin()
"""


def test_failures_on_the_real_control_plane_are_classified(upstream: Any, namespace: str, kannon_node: str,
                                                           tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    from kannon.testing.kube.node.cgroups import _cgroup_base
    from tests.support.services import service_unavailable

    if _cgroup_base() is None:
        service_unavailable("no writable memory cgroup here: the process runtime cannot enforce memory limits",
                            "run as root on a host with cgroup v1's memory controller or a delegated cgroup v2 subtree")
    monkeypatch.chdir(tmp_path)
    path = tmp_path / f"real_failing_{uuid.uuid4().hex[:8]}.py"  # modules are imported once per process
    path.write_text(FAILING)
    root, extra = load_target(f"{path}:root")
    executor = K8sJobExecutor(template(namespace, kannon_node, tmp_path), api_client=upstream.api_client(),
                              python=sys.executable, retry_backoff=0.05)  # fmt: skip
    with pytest.raises(KannonBuildError) as err:
        Kannon(executor=executor, sys_path=extra, retries=0).build(root)
    recs = {r.family: r for r in err.value.result.tasks.values()}
    hog, raises = recs["RealHog"], recs["RealRaises"]
    assert hog.status is Status.FAILED and hog.last is not None
    assert (hog.last.exit_code, hog.last.failure_class) == (137, "OOMKilled")  # the kernel's kill, as the node saw it
    assert "300Mi" in (hog.reason or "") and "memory" in (hog.reason or "")
    assert raises.status is Status.FAILED and raises.last is not None
    assert raises.last.exit_code == 6 and "broken on purpose" in (raises.reason or "")
    assert any("ValueError: broken on purpose" in line for line in raises.last.log_tail)
    (log,) = Path(err.value.result.run_dir or "").glob(f"logs/{err.value.result.invocation_id}/RealRaises-*.log")
    assert "about to fail" in log.read_text()  # collected through pods/log
    assert recs["RealJoin"].status is Status.UPSTREAM_FAILED


def test_quickstart_as_a_service_account_with_the_rbac_kannon_prints(
    upstream: Any, core: Any, namespace: str, kannon_node: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Role of ``kannon k8s rbac`` applied with the real kubectl, kannon's master with that ServiceAccount's token:
    the real RBAC authorizer allows every request the backend makes (the token being no admin's)."""
    import subprocess

    from kubernetes import client

    from tests.e2e.upstream.kube import kubectl

    core.create_namespaced_service_account(namespace, {"metadata": {"name": "kannon-master"}})
    role = subprocess.run([sys.executable, "-m", "kannon", "k8s", "rbac", "--namespace", namespace,
                           "--service-account", "kannon-master"], capture_output=True, text=True, check=True).stdout
    kubectl(upstream, "apply", "-f", "-", stdin=role)
    token = core.create_namespaced_service_account_token("kannon-master", namespace, {
        "apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {"expirationSeconds": 3600}}
    ).status.token  # fmt: skip
    config = client.Configuration()
    config.host, config.ssl_ca_cert = upstream.server, str(upstream.creds.ca)
    config.api_key = {"authorization": f"Bearer {token}"}
    master = client.ApiClient(config)
    with pytest.raises(client.ApiException) as refused:  # the token is no admin's
        client.CoreV1Api(master).list_node()
    assert refused.value.status == 403

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.1")
    executor = K8sJobExecutor(template(namespace, kannon_node, tmp_path), api_client=master, python=sys.executable,
                              retry_backoff=0.05)  # fmt: skip
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    result = Kannon(executor=executor, sys_path=extra, env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)
    assert result.ok
    assert root.output().load() == "G(F(E0(D0(C0(B(A(a))))), E1(D1(C1(B(A(a))))), E2(D2(C2(B(A(a)))))))"
    logs = list(Path(result.run_dir or "").glob(f"logs/{result.invocation_id}/TaskC-*.log"))
    assert len(logs) == 3 and all(p.stat().st_size > 0 for p in logs)  # pods/log allowed by the Role
