"""Issue 18 point 6 on Docker: a bullet whose module the container cannot import (the master found it through its
own sys.path edit, a directory the container does not mount) stops the build at plan time: exit 2, one line naming
the task and the fix, before any master task has run. A probe container that runs no task checks every bullet
module at once, once per image id, module set and sys.path."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.docker import DockerExecutor
from tests.e2e.docker.support import python_volumes

SIDE_TASKS = '''
import gokart
import kannon


class MasterFirst(gokart.TaskOnKart[str]):
    def run(self):
        self.dump("master ran")


class SideBullet(kannon.TaskOnBullet[str]):
    def requires(self):
        return MasterFirst()

    def run(self):
        self.dump("bullet ran after " + self.load())
'''


def pipeline(tmp_path: Path, side: Path) -> Path:
    (side / "side_tasks.py").write_text(SIDE_TASKS)
    script = tmp_path / "pipeline.py"
    script.write_text(f"import sys\nsys.path.insert(0, {str(side)!r})\nfrom side_tasks import SideBullet\n\n"
                      "root = SideBullet()\n")  # fmt: skip
    return script


def build(image: str, tmp_path: Path, script: Path, *volumes: str) -> subprocess.CompletedProcess[str]:
    argv = [sys.executable, "-m", "kannon", "build", f"{script}:root", "--backend", "docker", "--image", image]
    for volume in [*python_volumes(), *volumes]:
        argv += ["--volume", volume]
    return subprocess.run(argv, cwd=tmp_path, env=dict(os.environ), capture_output=True, text=True, timeout=600)


def outputs(tmp_path: Path, family: str) -> list[Path]:
    return [p for p in (tmp_path / "resources").rglob("*") if family in str(p)] if (tmp_path / "resources").exists() \
        else []


def test_a_module_only_the_masters_sys_path_edit_reaches_stops_the_build_before_anything_runs(
    engine: Any, image: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    side = tmp_path_factory.mktemp("side")  # outside tmp_path (the mounted working directory)
    script = pipeline(tmp_path, side)
    done = build(image, tmp_path, script)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    # kannon's plan-problem format: a header, then one line per problem
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("  - ")]
    assert "SideBullet" in line and "side_tasks" in line and "docker" in line, line
    assert "mount its directory" in line and "--ship-code" in line, line
    assert outputs(tmp_path, "MasterFirst") == []  # the master task upstream of the bullet never ran


def test_the_probe_passes_when_the_container_mounts_the_module(
    engine: Any, image: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    side = tmp_path_factory.mktemp("side")
    script = pipeline(tmp_path, side)
    done = build(image, tmp_path, script, f"{side}:{side}:ro")
    assert done.returncode == 0, done.stdout + done.stderr
    assert outputs(tmp_path, "MasterFirst") and outputs(tmp_path, "SideBullet")


def test_one_probe_container_per_image_module_set_and_sys_path(
    engine: Any, image: str, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    side = tmp_path_factory.mktemp("side")
    (side / "probe_a.py").write_text("X = 1\n")
    (side / "probe_b.py").write_text("import probe_a\n")
    executor = DockerExecutor(image, volumes=[*python_volumes(), f"{side}:{side}:ro"], python=sys.executable)
    since = int(time.time()) - 1
    assert executor.import_failures(["probe_a", "probe_b", "probe_missing"], [str(side)]) == {
        "probe_missing": "ModuleNotFoundError: No module named 'probe_missing'"}
    assert executor.import_failures(["probe_a", "probe_b", "probe_missing"], [str(side)])["probe_missing"]
    assert executor.import_failures(["probe_a"], [str(side)]) == {}
    creates = engine.events(since=since, until=int(time.time()) + 1, decode=True,
                            filters={"type": "container", "event": "create", "label": "kannon.io/probe=imports"})
    assert len(list(creates)) == 2  # the repeated check was answered from the cache
    assert engine.containers.list(all=True, filters={"label": "kannon.io/probe=imports"}) == []
