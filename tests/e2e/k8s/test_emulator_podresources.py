"""Init containers and native sidecars in a pod's resources, on the emulator: the checks of
tests/e2e/podresource_checks.py, which the real kube-scheduler and kube-apiserver pass in the upstream tier."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from kannon.testing import KubeEmulator
from kannon.testing.kube.node.status import NODE_NAME
from tests.e2e import podresource_checks as checks

pytestmark = pytest.mark.k8s


@pytest.fixture
def kube16() -> Iterator[KubeEmulator]:
    # The same allocatable memory as kannon's node in the upstream tier.
    with KubeEmulator(runtime="process", node_allocatable={"memory": "16Gi"}, bookmark_interval=0.3) as kube:
        yield kube


def container(name: str) -> dict[str, Any]:
    return {"name": name, "image": "python:3.11-slim", "command": [sys.executable, "-S", "-c", "pass"]}


def test_init_containers_and_sidecars_count_as_the_scheduler_counts_them(kube16: KubeEmulator) -> None:
    api = kube16.api_client()
    checks.check_init_containers_count_in_scheduling(client.BatchV1Api(api), client.CoreV1Api(api), "default",
                                                     container, {"kubernetes.io/hostname": NODE_NAME})  # fmt: skip


def test_qos_class_covers_init_containers(kube16: KubeEmulator) -> None:
    api = kube16.api_client()
    checks.check_qos_class_covers_init_containers(client.BatchV1Api(api), client.CoreV1Api(api), "default", container)
