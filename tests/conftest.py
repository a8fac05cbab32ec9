from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest
from hypothesis import settings

from tests.support import properties

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """Hypothesis draws the fixed examples of the "ci" profile unless `--hypothesis-profile explore` asks for a hunt
    (never under CI=true)."""
    profile = config.getoption("hypothesis_profile", None) or properties.CI
    if os.environ.get("CI") == "true" and profile != properties.CI:
        raise pytest.UsageError(f"--hypothesis-profile {profile} under CI=true: CI draws the fixed 'ci' examples")
    settings.load_profile(profile)


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test runs in its own directory (gokart's default workspace is ./resources) with a fresh luigi cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    luigi.task_register.Register.clear_instance_cache()
    yield tmp_path
    luigi.task_register.Register.clear_instance_cache()
