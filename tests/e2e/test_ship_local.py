"""``--ship-code`` / ``ship_code=True`` on the local backend: accepted, and a no-op (its children run the master's
own files), so one pipeline script or command line can switch backends (docs/code-shipping.md)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.support.shipcode import REPO, Project

API_SCRIPT = """
import kannon
from kannon.backends.local import LocalExecutor
from shipwired.pipeline import root

executor = LocalExecutor(mode="spawn", ship_code=True)
result = kannon.Kannon(executor=executor).build(root())
print("ok", executor.ship_code, len(result.failed))
"""


def test_cli_ship_code_on_the_local_backend_runs_and_uploads_nothing(tmp_path: Path) -> None:
    project = Project(tmp_path)
    out = project.build(1, "--backend", "local", "--ship-code")
    assert out.returncode == 0, out.stdout
    assert project.output(1) == "hello v1!"
    assert project.archives() == [] and "shipped code" not in out.stdout, out.stdout


def test_local_executor_accepts_ship_code_as_a_no_op(tmp_path: Path) -> None:
    project = Project(tmp_path)
    env = {**os.environ, "SHIP_REV": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(project.src)])}
    out = subprocess.run([sys.executable, "-c", API_SCRIPT], cwd=project.work, env=env, stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, timeout=300, check=False)  # fmt: skip
    assert out.returncode == 0, out.stdout
    assert "ok True 0" in out.stdout, out.stdout  # every task succeeded; the keyword was kept, not rejected
    assert project.output(1) == "hello v1!"
    assert project.archives() == [], out.stdout
