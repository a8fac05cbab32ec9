"""The contract tier (test_contract.py) run against the emulator's Docker runtime, as if it were a cluster.

The contract tier only runs with a cluster at hand (KANNON_TEST_KUBECONFIG); the suite runs the very same module in
a separate pytest against the upstream control plane (tests/e2e/upstream/test_contract_upstream.py) and, here,
against an emulator through a kubeconfig, with real containers (real images, memory limits, hostPath mounts): the
same scenarios, the same assertions, on both implementations.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kannon.testing import KubeEmulator
from tests.support.services import TEST_IMAGE

pytestmark = [pytest.mark.k8s, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[3]


@pytest.mark.timeout(900)
def test_contract_tier_passes_against_the_emulator(kube_docker: Any, tmp_path: Path) -> None:
    kube: KubeEmulator = kube_docker
    shared = tmp_path / "shared"
    shared.mkdir()
    env = {**os.environ, "KANNON_TEST_KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
           "KANNON_TEST_K8S_SHARED": str(shared), "KANNON_TEST_K8S_IMAGE": TEST_IMAGE,
           "KANNON_TEST_K8S_MOUNT_HOST_PYTHON": "1", "KANNON_TEST_K8S_PENDING": "8",
           "KANNON_TEST_K8S_TIMEOUT": "300"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", "tests/e2e/k8s/test_contract.py"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=850,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-8000:]
    assert "5 passed" in out and "skipped" not in out, out[-3000:]
