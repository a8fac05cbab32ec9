"""Fixtures of the fault suite, and the figures block it prints at the end of the session.

Every test records what it injected and what it found into ``figures``; ``pytest_terminal_summary`` prints the
totals (kill points survived, faults injected per class, tasks run more than once, orphans left, bad inputs
rejected), which docs/faults.md records.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from kannon.testing import KubeEmulator
from tests.faults.figures import FIGURES, Figures
from tests.support.services import docker_engine as reachable_docker_engine
from tests.support.services import require_test_image


@pytest.fixture
def figures() -> Figures:
    return FIGURES


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not FIGURES.used:
        return
    terminalreporter.section("kannon fault suite: figures")
    for line in FIGURES.lines():
        terminalreporter.write_line(line)


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    """An emulated control plane whose pods are local processes; nothing of it outlives the test."""
    with KubeEmulator(runtime="process", namespace="default", bookmark_interval=0.3) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A reachable Docker engine with the test image (skipped otherwise, failed when CI=true: tests/e2e/docker)."""
    engine = reachable_docker_engine()
    require_test_image(engine)
    yield engine
    engine.close()
