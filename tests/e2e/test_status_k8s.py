"""A bullet's ``set_status_message`` / ``set_progress_percentage`` reach the master from a Kubernetes pod (issue 18
point 7): the pod's log is the only channel, so the master follows it even without follow_logs. Emulator, official
client over HTTP, pods as local processes sharing the test's workspace."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from kannon.backends.kubernetes import K8sJobExecutor
from kannon.testing import KubeEmulator
from tests.e2e.test_status_messages import build_with_status
from tests.parity.statustasks import MESSAGE, PERCENTAGE

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    with KubeEmulator(runtime="process", namespace="default", bookmark_interval=0.3) as emulator:
        yield emulator


@pytest.mark.parametrize("follow", [False, True])
def test_status_from_a_pod_reaches_the_live_view_and_the_event_log(kube: KubeEmulator, tmp_path: Path,
                                                                   follow: bool) -> None:  # fmt: skip
    template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "main", "image": "kannon-test:latest", "workingDir": str(Path.cwd()),
                    "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}}}  # fmt: skip
    executor = K8sJobExecutor(template, api_client=kube.api_client(), retry_backoff=0.05, python=sys.executable)
    progress, events, live = build_with_status(executor, tmp_path, follow, f"k8s-{follow}")
    row = next(line for line in live.splitlines() if "StatusBullet" in line)
    assert f"{PERCENTAGE}% {MESSAGE}" in row, live
    text = events.read_text()
    assert '"kind": "status"' in text and MESSAGE in text and f'"progress_percentage": {PERCENTAGE}' in text, text
