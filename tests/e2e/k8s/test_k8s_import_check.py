"""Issue 18 point 6 on Kubernetes: a pod's image cannot be probed from the master, so with shipped code the check
runs against the archive (a bullet module found only through the master's sys.path edit, outside the code root, is
refused at plan time: nothing runs), and without it the build says in one line that the check was not possible."""

from __future__ import annotations

import importlib
import logging
import sys
from pathlib import Path
from typing import Any

import pytest

from kannon import ship
from kannon.backends.kubernetes import K8sJobExecutor
from kannon.plan import PlanError
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[3]

SIDE = '''
import gokart
import kannon


class K8sMasterFirst(gokart.TaskOnKart[str]):
    def run(self):
        self.dump("master ran")


class K8sSideBullet(kannon.TaskOnBullet[str]):
    def requires(self):
        return K8sMasterFirst()

    def run(self):
        self.dump("bullet after " + self.load())
'''


def executor(kube: KubeEmulator, workdir: Path, pythonpath: str) -> K8sJobExecutor:
    template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "main", "image": "kannon-test:latest", "workingDir": str(workdir),
                    "env": [{"name": "PYTHONPATH", "value": pythonpath}]}]}}}}  # fmt: skip
    return K8sJobExecutor(template, api_client=kube.api_client(), retry_backoff=0.05, python=sys.executable)


def load_side(side: Path, name: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    (side / f"{name}.py").write_text(SIDE)
    monkeypatch.syspath_prepend(str(side))  # the master's own sys.path edit
    return importlib.import_module(name)


def test_without_shipped_code_the_build_says_the_check_was_not_possible(
    kube: KubeEmulator, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    side = tmp_path_factory.mktemp("side")
    mod = load_side(side, "k8s_side_unchecked", monkeypatch)
    with caplog.at_level(logging.WARNING, logger="kannon"):
        result = Kannon(executor=executor(kube, tmp_path, f"{REPO}:{side}"), sys_path=[str(side)]).build(
            mod.K8sSideBullet())
    assert result.ok
    notes = [r.getMessage() for r in caplog.records if "cannot check before the run" in r.getMessage()]
    assert len(notes) == 1 and "k8s_side_unchecked" in notes[0] and "--ship-code" in notes[0], caplog.text
    assert "\n" not in notes[0]


def test_with_shipped_code_a_module_outside_the_archive_stops_the_build_before_anything_runs(
    kube: KubeEmulator, tmp_path: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    side = tmp_path_factory.mktemp("side")
    code_root = tmp_path_factory.mktemp("project")
    (code_root / "k8s_pipe_root.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(code_root))
    importlib.import_module("k8s_pipe_root")
    mod = load_side(side, "k8s_side_shipped", monkeypatch)
    archive = ship.prepare(code_root)
    k = Kannon(executor=executor(kube, tmp_path, str(REPO)), sys_path=[str(side)], ship_code=(code_root, archive))
    with pytest.raises(PlanError) as err:
        k.build(mod.K8sSideBullet())
    (problem,) = err.value.problems
    assert "K8sSideBullet" in problem and "k8s_side_shipped" in problem and str(code_root) in problem, problem
    assert not list(tmp_path.rglob("*K8sMasterFirst*"))  # the master task upstream of the bullet never ran
