"""Issue 12 on the local backend: a child gets a documented base of the master's environment plus env_to_inherit and
Hints.env, not the master's whole environment (as on Kubernetes); ``full_env=True`` / ``--local-full-env`` restores
the whole environment."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import kannon
from kannon.backends.local import LocalExecutor
from tests.support.secrettasks import EnvProbe

STRAY = "KANNON_TEST_NOT_INHERITED"
INHERITED = "KANNON_TEST_INHERITED_TOKEN"
SHADOWED = "KANNON_TEST_SHADOWED"


@pytest.fixture
def master_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    values = {STRAY: f"stray-{uuid.uuid4().hex}", INHERITED: f"tok-{uuid.uuid4().hex}",
              SHADOWED: f"master-{uuid.uuid4().hex}"}  # fmt: skip
    for name, value in values.items():
        monkeypatch.setenv(name, value)
    return values


def probe(mode: str, **executor_options: bool) -> dict[str, str | None]:
    task = EnvProbe(names=[STRAY, INHERITED, SHADOWED, "PATH", "HOME"], tag=uuid.uuid4().hex)
    task = task.with_hints(env={SHADOWED: "from-hints"})
    executor = LocalExecutor(mode=mode, **executor_options)  # type: ignore[arg-type]
    kannon.Kannon(executor=executor, env_to_inherit=[INHERITED, SHADOWED]).build(task)
    seen: dict[str, str | None] = task.output().load()
    return seen


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_a_master_variable_not_in_env_to_inherit_does_not_reach_a_local_child(
    mode: str, master_env: dict[str, str]
) -> None:
    seen = probe(mode)
    assert seen[STRAY] is None
    assert seen[INHERITED] == master_env[INHERITED]
    assert seen[SHADOWED] == "from-hints"  # Hints.env over an inherited name
    assert seen["PATH"] == os.environ["PATH"] and seen["HOME"] == os.environ.get("HOME")  # the documented base


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_full_env_gives_the_child_the_masters_whole_environment(mode: str, master_env: dict[str, str]) -> None:
    seen = probe(mode, full_env=True)
    assert seen[STRAY] == master_env[STRAY]
    assert seen[INHERITED] == master_env[INHERITED]
    assert seen[SHADOWED] == "from-hints"


def test_cli_local_full_env_restores_the_whole_environment(tmp_path: Path, master_env: dict[str, str]) -> None:
    seen = {}
    for full in (False, True):
        tag = uuid.uuid4().hex
        pipeline = tmp_path / f"pipeline_{full}.py"
        pipeline.write_text("from tests.support.secrettasks import EnvProbe\n"
                            f"root = EnvProbe(names=[{STRAY!r}], tag={tag!r})\n")  # fmt: skip
        argv = [sys.executable, "-m", "kannon", "build", f"{pipeline}:root", "--local-mode", "spawn",
                *(["--local-full-env"] if full else [])]  # fmt: skip
        proc = subprocess.run(argv, cwd=tmp_path, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr[-2000:]
        seen[full] = EnvProbe(names=[STRAY], tag=tag).output().load()[STRAY]
    assert seen == {False: None, True: master_env[STRAY]}
