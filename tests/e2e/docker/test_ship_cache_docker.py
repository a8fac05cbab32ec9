"""The extraction cache for shipped code on Docker: a host directory bind-mounted into every container with
``KANNON_CODE_CACHE`` pointing at it, the recipe docs/code-shipping.md gives (tests/support/shipcache.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.docker.support import python_volumes
from tests.support.shipcache import CACHED, build, check_cache
from tests.support.shipcode import PY, Project

pytestmark = pytest.mark.docker


def test_a_second_docker_container_uses_a_cache_directory_mounted_from_the_host(image: str, tmp_path: Path) -> None:
    """On Docker the cache is a bind mount plus KANNON_CODE_CACHE, the recipe docs/code-shipping.md gives."""
    project = Project(tmp_path)
    (project.src / "shipwired" / "cached.py").write_text(CACHED)
    docker = ("--backend", "docker", "--image", image, "--docker-python", PY,
              *(a for v in python_volumes() for a in ("--volume", v)))  # fmt: skip
    check_cache(project, tmp_path / "host-cache", lambda ws, cache: build(project, ws, *docker, *(
        ("--volume", f"{cache}:/var/cache/kannon-code", "--env", "KANNON_CODE_CACHE=/var/cache/kannon-code")
        if cache else ())))  # fmt: skip
