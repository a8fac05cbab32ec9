"""Fixtures for tests against the emulated Kubernetes control plane (kannon.testing.KubeEmulator).

``kube`` yields a running emulator (process runtime, namespace "default"); ``batch_api`` / ``core_api`` are official
clients pointed at it. ``kube_docker`` runs pods on the local Docker engine: skipped without an engine or the test
image (built by .ci/docker-setup.sh), but a failure instead of a skip when CI=true.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kannon.testing import KubeEmulator
from tests.support.services import docker_engine, require_test_image


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    """A running emulator; every pod process is killed when the test ends."""
    with KubeEmulator(runtime="process", namespace="default", bookmark_interval=0.3) as emulator:
        yield emulator


@pytest.fixture
def batch_api(kube: KubeEmulator) -> Any:
    from kubernetes import client

    return client.BatchV1Api(kube.api_client())


@pytest.fixture
def core_api(kube: KubeEmulator) -> Any:
    from kubernetes import client

    return client.CoreV1Api(kube.api_client())


@pytest.fixture
def kube_docker() -> Iterator[KubeEmulator]:
    """An emulator whose pods run as containers on the local Docker engine."""
    engine = docker_engine()
    require_test_image(engine)
    with KubeEmulator(runtime="docker", docker_client=engine) as emulator:
        yield emulator
