"""Fixtures for tests against a real Docker engine.

Without a reachable engine (or without the local test image) these tests are skipped with the reason; with
``CI=true`` they fail instead, so a CI machine that lost its engine cannot pass silently. Prepare the engine and
the image with ``.ci/docker-setup.sh``. (The skip-or-fail rule is tests/support/services.py's.)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from kannon.backends.docker import LABEL_RUN
from tests.support.services import TEST_IMAGE, docker_engine, require_test_image

IMAGE = TEST_IMAGE


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    """A docker SDK client for a reachable engine."""
    client = docker_engine()
    yield client
    client.close()


@pytest.fixture(scope="session")
def image(engine: Any) -> str:
    """The local test image: a minimal root filesystem; the host's Python arrives by bind mounts."""
    return require_test_image(engine)


@pytest.fixture
def run_id(engine: Any) -> Iterator[str]:
    """A run id of this test's own; afterwards, nothing of it may be left in the engine."""
    rid = f"t{uuid.uuid4().hex[:12]}"
    yield rid
    left = engine.containers.list(all=True, filters={"label": f"{LABEL_RUN}={rid}"})
    for c in left:
        c.remove(force=True)
    assert not left, f"containers left behind by run {rid}: {[c.name for c in left]}"
