"""Issue 17 on Docker: every bullet reports what it used, its peak memory from the container's own memory cgroup
(cgroup v1 on these machines' engine), with and without a memory limit."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import usagecheck, usagepipe
from tests.e2e.docker.support import python_volumes
from tests.support.procs import kannon as run_kannon

pytestmark = pytest.mark.docker


@pytest.mark.parametrize("memory", [None, "1Gi"])
def test_usage_on_docker_is_the_containers_cgroup_peak(engine: Any, image: str, tmp_path: Path,
                                                       memory: str | None) -> None:  # fmt: skip
    shutil.copy(Path(usagepipe.__file__), tmp_path / "usagepipe.py")
    volumes = [a for v in python_volumes() for a in ("--volume", v)]
    out = run_kannon("build", "usagepipe.py:root", "--backend", "docker", "--image", image, *volumes,
                     "--docker-python", sys.executable, "--events", "ev.jsonl", cwd=tmp_path,
                     env={"USAGEPIPE_MEMORY": memory} if memory else {}, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    by = usagecheck.check_figures(tmp_path / "ev.jsonl", ("cgroup-v1", "cgroup-v2"))
    want = {"memory": memory} if memory else None
    assert all(e.get("requested_resources") == want for e in by.values())
