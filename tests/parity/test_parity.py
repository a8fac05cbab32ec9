"""The parity tier (issue 18): the same pipelines run with plain ``gokart.build`` (tasks as ``TaskOnKart``) and with
``kannon.build`` (the same tasks as bullets) on the local backend in both modes; root unique id, success, the loaded
root value, the error class, the exceptions per task and the workspace's files (kannon's run directory aside) must
agree — or differ exactly as docs/design.md ("gokart features under kannon") states.

One process per engine runs every scenario (tests/parity/run.py); the three run at once, the tests compare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.parity.run import NAMES

REPO = Path(__file__).resolve().parents[2]
MODES = ("fork", "spawn")
COMPARED = ("root_id", "ok", "value", "error", "raised", "files")

#: scenarios where kannon deliberately differs from gokart.build (each checked by its own test below)
DIFFERENT = {"missing_external_input", "modification_time_check", "sys_path_edit_unreachable_helper"}


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, dict[str, Any]]]:
    top = tmp_path_factory.mktemp("parity")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    started = time.monotonic()
    procs = {engine: subprocess.Popen([sys.executable, "-m", "tests.parity.run", engine, f"{engine}.json"], cwd=top,
                                      env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for engine in ("gokart", *MODES)}  # fmt: skip
    out = {}
    for engine, proc in procs.items():
        log, _ = proc.communicate(timeout=600)
        assert proc.returncode == 0, f"{engine} runner failed:\n{log[-5000:]}"
        out[engine] = json.loads((top / f"{engine}.json").read_text())
    print(f"parity tier: {len(out['gokart'])} scenarios x 3 engines in {time.monotonic() - started:.1f} s")
    yield out


def same(results: dict[str, dict[str, Any]], scenario: str, mode: str) -> None:
    ref, got = results["gokart"][scenario], results[mode][scenario]
    for key in COMPARED:
        assert got[key] == ref[key], (f"{scenario}: {key} differs under kannon ({mode}) from gokart.build\n"
                                      f"gokart: {ref[key]!r:.1500}\nkannon: {got[key]!r:.1500}\n"
                                      f"{got.get('message') or ''}{got.get('traceback') or ''}")  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("scenario", sorted(set(NAMES) - DIFFERENT))
def test_same_as_gokart_build(results: dict[str, dict[str, Any]], scenario: str, mode: str) -> None:
    same(results, scenario, mode)


@pytest.mark.parametrize("mode", MODES)
def test_a_failing_bullet_raises_a_gokart_build_error_with_the_remote_exception(
    results: dict[str, dict[str, Any]], mode: str
) -> None:
    got = results[mode]["task_raises"]
    assert got["error"] == "GokartBuildError" and list(got["raised"].values()) == [["ValueError"]]
    ((module, text, tb),) = next(iter(got["remote"].values()))
    assert (module, text) == ("builtins", "ValueError: broken on purpose")
    assert 'raise ValueError("broken on purpose")' in tb and "pipelines.py" in tb  # the child's traceback, as text


@pytest.mark.parametrize("mode", MODES)
def test_a_missing_external_input_is_named_by_its_path(results: dict[str, dict[str, Any]], mode: str) -> None:
    # gokart.build does not raise for a missing external input (its return value fails to load); kannon reports it
    assert results["gokart"]["missing_external_input"]["error"] == "FileNotFoundError"
    got = results[mode]["missing_external_input"]
    assert got["error"] == "GokartBuildError"
    assert "is an external input that does not exist: resources/not-there.pkl" in got["message"]
    assert "bound method" not in got["message"]


@pytest.mark.parametrize("mode", MODES)
def test_a_modification_time_check_failure_is_reported_as_such(results: dict[str, dict[str, Any]], mode: str) -> None:
    # gokart.build returns the value although the task is not complete afterwards (a rerun would run it again);
    # kannon confirms completion, and says why it is not
    assert results["gokart"]["modification_time_check"]["ok"]
    got = results[mode]["modification_time_check"]
    assert got["error"] == "GokartBuildError" and "modification_time_check=True" in got["message"]
    assert "does not exist" not in got["message"]


def test_a_module_a_spawned_child_cannot_import_is_refused_before_anything_runs(
    results: dict[str, dict[str, Any]],
) -> None:
    same(results, "sys_path_edit_unreachable_helper", "fork")  # a forked child has the master's sys.path
    got = results["spawn"]["sys_path_edit_unreachable_helper"]
    assert got["error"] == "PlanError" and got["files"] == []  # not even the master task ran
    assert "NeedsHelper" in got["message"] and "module parity_needs_helper cannot be imported" in got["message"]
    assert "No module named 'parity_helper'" in got["message"]
