from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import luigi
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Each test runs in its own directory (gokart's default workspace is ./resources) with a fresh luigi cache."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    luigi.task_register.Register.clear_instance_cache()
    yield tmp_path
    luigi.task_register.Register.clear_instance_cache()
