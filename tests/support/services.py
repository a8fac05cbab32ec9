"""Tests that need a service this machine may lack (a Docker engine, the local test image, headless Chromium).

Without it such a test is skipped, with the reason and how to get the service; with ``CI=true`` it fails instead,
so a CI machine that lost a service cannot pass by skipping.
"""

from __future__ import annotations

import os
from typing import Any, NoReturn

import pytest

DOCKER_SETUP = "run .ci/docker-setup.sh (as root) to start an engine and build the test image"
# The image .ci/docker-setup.sh builds; KANNON_TEST_IMAGE keeps two checkouts on one machine from rebuilding each
# other's.
TEST_IMAGE = os.environ.get("KANNON_TEST_IMAGE", "kannon-test:latest")


def service_unavailable(reason: str, hint: str = DOCKER_SETUP) -> NoReturn:
    """Skip the calling test (or fixture) because ``reason``; a failure instead when CI=true. ``hint`` says how to
    get the service."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} — and CI=true, so this is a failure, not a skip; {hint}", pytrace=False)
    pytest.skip(f"{reason}; {hint}")


def docker_engine() -> Any:
    """A docker SDK client for a reachable engine (the caller closes it); skipped, or failed under CI=true, without
    one (the SDK missing included)."""
    try:
        import docker

        engine = docker.from_env()
        engine.ping()
    except Exception as e:
        service_unavailable(f"no Docker engine reachable ({type(e).__name__}: {e})")
    return engine


def require_test_image(engine: Any) -> str:
    """TEST_IMAGE, once the engine is known to have it; skipped, or failed under CI=true, when it does not."""
    import docker.errors

    try:
        engine.images.get(TEST_IMAGE)
    except docker.errors.ImageNotFound:
        service_unavailable(f"the test image {TEST_IMAGE} is not in the engine")
    return TEST_IMAGE
