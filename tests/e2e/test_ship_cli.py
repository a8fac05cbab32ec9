"""``--ship-code`` at the CLI before anything runs: ``kannon plan`` says what would be shipped (and uploads
nothing); code that cannot be shipped is one ``kannon:`` line and exit 2 (docs/code-shipping.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.shipcode import REPO, Project

DOCKER = ("--backend", "docker", "--image", "kannon-test-unused:latest")  # never started: nothing may run


def run(project: Project, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SHIP_REV": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(project.src)])}
    argv = [sys.executable, "-m", "kannon", command, "shipwired.pipeline:root", "--workspace",
            str(project.resources), *args]  # fmt: skip
    return subprocess.run(argv, cwd=project.work, env=env, capture_output=True, text=True, timeout=120, check=False)


def one_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    (line,) = out.stderr.splitlines()
    assert line.startswith("kannon: "), line
    return line


def test_plan_says_what_would_be_shipped_and_uploads_nothing(tmp_path: Path) -> None:
    project = Project(tmp_path)
    out = run(project, "plan", *DOCKER, "--ship-code")
    assert out.returncode == 0, out.stderr
    assert "ShipA" in out.stdout and "ShipB" in out.stdout
    assert "kannon: would ship code: 4 files" in out.stderr and "sha256 " in out.stderr, out.stderr
    assert not (project.resources / "kannon" / "code").exists()
    assert "would ship" not in run(project, "plan", *DOCKER).stderr


def test_code_over_the_size_cap_is_one_line_naming_the_largest_file_and_exit_2(tmp_path: Path) -> None:
    project = Project(tmp_path)
    data = project.src / "shipwired" / "data"
    data.mkdir()
    (data / "big.bin").write_bytes(b"x" * (2 << 20))
    line = one_line(run(project, "build", *DOCKER, "--ship-code", "--ship-code-max-mb", "1"))
    assert "over the 1.0 MiB limit" in line and "shipwired/data/big.bin" in line, line
    assert not (project.resources / "kannon").exists()  # nothing uploaded, nothing ran


def test_a_code_root_that_is_not_a_directory_is_one_line_and_exit_2(tmp_path: Path) -> None:
    project = Project(tmp_path)
    line = one_line(run(project, "build", *DOCKER, "--ship-code", "--code-root", str(tmp_path / "nowhere")))
    assert "--code-root" in line and "nowhere" in line, line


def test_a_build_the_import_check_refuses_uploads_no_archive(tmp_path: Path) -> None:
    # The file target is imported as the top-level module `pipeline` from its own directory (a sys.path addition);
    # the code root `src` holds the package `shipwired` but cannot provide a top-level `pipeline`: the plan-time
    # import check refuses the build. Nothing may have been uploaded by then.
    project = Project(tmp_path)
    env = {**os.environ, "SHIP_REV": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(project.src)])}
    argv = [sys.executable, "-m", "kannon", "build", str(project.src / "shipwired" / "pipeline.py") + ":root",
            "--workspace", str(project.resources), *DOCKER, "--ship-code", "--code-root", str(project.src)]  # fmt: skip
    out = subprocess.run(argv, cwd=project.work, env=env, capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "not in the shipped archive" in out.stdout + out.stderr, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    assert not (project.resources / "kannon" / "code").exists()  # refused before the upload
