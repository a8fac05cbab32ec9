"""`kannon logs` prints a Docker attempt's full log from the run directory, after the container was removed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kannon.backends.docker import DockerExecutor
from kannon.scheduler import Kannon
from tests.e2e.docker.support import python_volumes
from tests.support.procs import kannon as run_kannon
from tests.support.tasks import Bullet

pytestmark = pytest.mark.docker


def test_kannon_logs_prints_a_docker_attempts_log(engine: Any, image: str, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    executor = DockerExecutor(image, volumes=python_volumes())
    result = Kannon(executor=executor).build(Bullet(name="talk", marker="MARK-from-the-container"))
    assert result.ok
    out = run_kannon("logs", "--run-dir", str(result.run_dir), "Bullet", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert "MARK-from-the-container" in out.stdout
