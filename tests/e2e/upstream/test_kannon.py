"""kannon itself on the real control plane: ``Kannon(executor=K8sJobExecutor(...))`` runs the quick-start's bullets
as Jobs that the real Job controller and kube-scheduler handle and kannon's node runs (warm process pods), as
tests/e2e/k8s/test_k8s_backend_build.py does against the emulator.

Pods are local processes in the test's directory (``workingDir``), so the gokart workspace ./resources is shared with
the master as a PersistentVolume would be in a cluster.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.kubernetes import K8sJobExecutor
from kannon.cli import load_target
from kannon.result import Status
from kannon.scheduler import Kannon

pytestmark = pytest.mark.upstream

REPO = Path(__file__).resolve().parents[3]


def test_quickstart_runs_on_the_real_control_plane(upstream: Any, batch: Any, namespace: str, kannon_node: str,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.1")
    template = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": namespace},
        "spec": {"template": {"spec": {
            "nodeSelector": {"kubernetes.io/hostname": kannon_node},
            "containers": [{"name": "main", "image": "kannon-process", "workingDir": str(tmp_path),
                            "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}},
    }  # fmt: skip
    executor = K8sJobExecutor(template, api_client=upstream.api_client(), python=sys.executable, retry_backoff=0.05)
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
