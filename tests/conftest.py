from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest
from hypothesis import settings

from tests.support import properties

REPO = Path(__file__).resolve().parents[1]

# A runner started in the background by a non-interactive shell (`nohup .ci/run &`) ignores SIGINT, and an ignored
# signal stays ignored across exec: every kannon the tests start would then shrug off Ctrl-C. A terminal gives the
# default; so do the tests, however their runner was started.
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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
