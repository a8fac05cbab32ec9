"""``kannon build --ship-code`` on Docker (docs/code-shipping.md): the container has the interpreter, venv and
kannon, and the working directory with the workspace, but not the project's code (tests/support/shipcode.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.e2e.docker.support import python_volumes
from tests.support.shipcode import PY, Project, check_shipping_scenario

pytestmark = pytest.mark.docker


def test_docker_runs_shipped_code_edits_without_an_image_change_and_uploads_once(
    engine: Any, image: str, tmp_path: Path
) -> None:
    project = Project(tmp_path)
    volumes = [a for v in python_volumes() for a in ("--volume", v)]
    assert not any(str(project.src) in v for v in volumes)

    def run(rev: int, *extra: str) -> Any:
        return project.build(rev, "--backend", "docker", "--image", image, "--docker-python", PY, *volumes, *extra)

    check_shipping_scenario(project, run)
