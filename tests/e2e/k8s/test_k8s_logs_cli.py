"""`kannon logs` prints a Kubernetes attempt's full log from the run directory (kept from the one log read kannon
makes of the pod), after the Job and its pod are gone."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes import client

from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_k8s_backend_build import executor
from tests.support.procs import kannon as run_kannon
from tests.support.tasks import Bullet

pytestmark = pytest.mark.k8s


def test_kannon_logs_prints_a_kubernetes_attempts_log(kube: KubeEmulator, tmp_path: Path) -> None:
    result = Kannon(executor=executor(kube, tmp_path)).build(Bullet(name="talk", marker="MARK-from-the-pod"))
    assert result.ok
    # nothing of the run is left in the cluster to read logs from (as after the Jobs' TTL)
    batch = client.BatchV1Api(kube.api_client())
    for name in kube.jobs():
        batch.delete_namespaced_job(name, "default", propagation_policy="Background")
    kube.wait_for(lambda: not kube.jobs() and not kube.pods(), timeout=60, message="the Jobs and pods never went")
    out = run_kannon("logs", "--run-dir", str(result.run_dir), "Bullet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "MARK-from-the-pod" in out.stdout
