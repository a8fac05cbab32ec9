"""The node-cache scenario of code shipping (docs/code-shipping.md), shared by the Kubernetes and Docker tests.

The observable: the first task deletes the archive from the workspace once it runs, so the second task (another pod
or container) can only succeed from a shared extraction cache; without one it fails with "does not exist" (the
control): its fetch and extract were really skipped, not just fast.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.support.shipcode import PY, REPO, Project

CACHED = '''
from pathlib import Path

import kannon
from shipwired.sub import words


class CacheA(kannon.TaskOnBullet[str]):
    def run(self):
        # the archive is gone once this task runs: a later task can only get the code from the node's cache
        for archive in Path(self.workspace_directory, "kannon", "code").glob("*.tar.gz"):
            archive.unlink()
        self.dump(words.greeting())


class CacheB(kannon.TaskOnBullet[str]):
    def requires(self):
        return CacheA()

    def run(self):
        self.dump(self.load() + "!")


def root():
    return CacheB()
'''


def build(project: Project, workspace: str, *backend: str, env: dict[str, str] | None = None) -> Any:
    """``kannon build shipwired.cached:root --ship-code`` on ``backend``; its output is stdout and stderr together."""
    argv = [PY, "-m", "kannon", "build", "shipwired.cached:root", "--workspace", workspace, "--ship-code", *backend]
    env = {**os.environ, **(env or {}), "PYTHONPATH": os.pathsep.join([str(REPO), str(project.src)])}
    return subprocess.run(argv, cwd=project.work, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=300, check=False)  # fmt: skip


def check_cache(project: Project, cache: Path, run: Callable[[str, Path | None], Any]) -> None:
    """``run(workspace, cache_dir or None)``: without a shared cache the second task must fetch (and fails: the
    archive is gone); with one it succeeds from the cache, which holds one complete extraction."""
    # Control: each pod has its own cache, so the second task fetches, and the archive is gone.
    control = run(str(project.work / "ws-control"), None)
    assert control.returncode == 1, control.stdout
    assert "FAILED CacheB" in control.stdout and "does not exist" in control.stdout, control.stdout

    cache.mkdir()  # the node's directory; the test user's, as on a node set up for it
    cached = run(str(project.work / "ws-cached"), cache)
    assert cached.returncode == 0, cached.stdout
    assert "succeeded CacheA" in cached.stdout and "succeeded CacheB" in cached.stdout, cached.stdout
    (extraction,) = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert (extraction / ".kannon-complete").read_text().strip() == extraction.name
    assert (extraction / "shipwired" / "cached.py").is_file()
