"""Fixtures of the fault suite, and the figures block it prints at the end of the session.

Every test records what it injected and what it found into ``figures``; ``pytest_terminal_summary`` prints the
totals (kill points survived, faults injected per class, tasks run more than once, orphans left, bad inputs
rejected), which docs/faults.md records.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kannon.testing import KubeEmulator
from tests.e2e.docker.conftest import IMAGE, unavailable


@dataclass
class Figures:
    kill_points: int = 0  # master SIGKILLs survived (the rerun completed with every output written exactly once)
    faults: Counter[str] = field(default_factory=Counter)  # fault class -> injections that really happened
    tasks_run_more_than_once: int = 0
    orphans: int = 0  # processes / containers / Jobs / pods left behind
    bad_inputs_tried: int = 0
    bad_inputs_rejected: int = 0  # rejected cleanly: the right error, nothing run
    campaigns: list[str] = field(default_factory=list)

    def fault(self, kind: str, n: int = 1) -> None:
        assert n > 0, f"a fault of class {kind!r} was meant to be injected but was not"
        self.faults[kind] += n

    def bad_input(self, rejected: bool) -> None:
        self.bad_inputs_tried += 1
        self.bad_inputs_rejected += int(rejected)

    @property
    def used(self) -> bool:
        return bool(self.kill_points or self.faults or self.bad_inputs_tried or self.campaigns)

    def lines(self) -> list[str]:
        out = [
            f"kill points survived (master SIGKILL, then rerun): {self.kill_points}",
            f"faults injected: {sum(self.faults.values())}",
            *(f"  {kind:<42} {n}" for kind, n in sorted(self.faults.items())),
            f"tasks run more than once (must be 0): {self.tasks_run_more_than_once}",
            f"orphans left (must be 0): {self.orphans}",
            f"bad inputs tried: {self.bad_inputs_tried}, rejected cleanly: {self.bad_inputs_rejected}",
        ]
        out += [f"campaign {c}" for c in self.campaigns]
        return out


_FIGURES = Figures()


@pytest.fixture
def figures() -> Figures:
    return _FIGURES


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: Any) -> None:
    if not _FIGURES.used:
        return
    terminalreporter.section("kannon fault suite: figures")
    for line in _FIGURES.lines():
        terminalreporter.write_line(line)


@pytest.fixture
def kube() -> Iterator[KubeEmulator]:
    """An emulated control plane whose pods are local processes; nothing of it outlives the test."""
    with KubeEmulator(runtime="process", namespace="default", bookmark_interval=0.3) as emulator:
        yield emulator


@pytest.fixture(scope="session")
def docker_engine() -> Iterator[Any]:
    """A reachable Docker engine with the test image (skipped otherwise, failed when CI=true: tests/e2e/docker)."""
    import docker
    import docker.errors

    try:
        engine = docker.from_env()
        engine.ping()
    except Exception as e:
        unavailable(f"no Docker engine reachable ({type(e).__name__}: {e})")
    try:
        engine.images.get(IMAGE)
    except docker.errors.ImageNotFound:
        unavailable(f"the test image {IMAGE} is not in the engine")
    yield engine
    engine.close()
