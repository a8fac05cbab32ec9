"""The contract tier (tests/e2e/k8s/test_contract.py) against the real upstream control plane: its scenarios (the
quick-start DAG, the failure classes, SIGTERM, the master SIGKILLed and rerun, the 0.1.x constructor) run on the
real API server, Job controller, garbage collector and kube-scheduler, with kannon's node running the pods.

The node uses the Docker runtime, as the contract tier's emulator self-check does: the tier checks what a cluster
does by itself (an image that cannot be pulled, the engine's real memory limit, hostPath mounts), which the process
runtime does not model (it has no images). The very same module runs, unchanged, in a pytest of its own (it reads
its cluster from the environment at import, as it does for a user's cluster), one scenario per test here: the
scenarios are the module's test functions, read from its source, so a new one runs here without an edit.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.procs import wait_until
from tests.support.services import docker_engine, require_test_image

pytestmark = [pytest.mark.upstream, pytest.mark.docker]

REPO = Path(__file__).resolve().parents[3]
CONTRACT = REPO / "tests" / "e2e" / "k8s" / "test_contract.py"
SCENARIOS = [f.name for f in ast.parse(CONTRACT.read_text()).body
             if isinstance(f, ast.FunctionDef) and f.name.startswith("test_")]  # fmt: skip


@pytest.fixture(scope="module")
def contract_node(upstream: Any) -> Iterator[str]:
    """An in-process node agent with the Docker runtime, Ready and untainted; its name (deleted afterwards)."""
    from kubernetes import client

    from kannon.testing.kube.node.docker_runtime import DockerRuntime
    from kannon.testing.node import NodeAgent

    core = client.CoreV1Api(upstream.api_client())
    engine = docker_engine()
    require_test_image(engine)
    name = f"kannon-contract-node-{uuid.uuid4().hex[:6]}"
    tls = (str(upstream.creds.serving_cert), str(upstream.creds.serving_key))
    with NodeAgent(upstream.api_client(), name, DockerRuntime(client=engine), tls=tls):
        wait_until(lambda: not core.read_node(name).spec.taints, 120, "the node to be untainted", max_delay=0.5)
        yield name
    core.delete_node(name)


def test_every_contract_scenario_is_run_here() -> None:
    assert len(SCENARIOS) >= 5 and "test_failure_classes" in SCENARIOS


@pytest.mark.timeout(600)
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_contract_scenario_on_the_upstream_control_plane(upstream: Any, namespace: str, contract_node: str,
                                                         tmp_path: Path, scenario: str) -> None:  # fmt: skip
    shared = tmp_path / "shared"
    shared.mkdir()
    env = {**os.environ, "KANNON_TEST_KUBECONFIG": str(upstream.kubeconfig), "KANNON_TEST_K8S_SHARED": str(shared),
           "KANNON_TEST_K8S_IMAGE": require_test_image(docker_engine()), "KANNON_TEST_K8S_MOUNT_HOST_PYTHON": "1",
           "KANNON_TEST_K8S_NAMESPACE": namespace,
           # only on this node: the session's process node (kannon_node) has no images, so nothing to pull
           "KANNON_TEST_K8S_NODE_SELECTOR": f"kubernetes.io/hostname={contract_node}",
           "KANNON_TEST_K8S_PENDING": "8", "KANNON_TEST_K8S_TIMEOUT": "300"}  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "-rA", f"{CONTRACT}::{scenario}"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=550,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out[-8000:]
    assert "1 passed" in out and "skipped" not in out, out[-3000:]
