"""Issue 10 §1 on the Kubernetes backend (emulator, pods as local processes): a pod child rebuilds the master's
task, not the object the pipeline module builds at import time under the config the master changed afterwards; a
differing constructor value is refused by name (exit 4)."""

from __future__ import annotations

from pathlib import Path

import pytest

import kannon
from kannon import exitcodes
from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_k8s_backend_build import executor
from tests.e2e.test_child_rebuild import check_import_time_pipeline
from tests.e2e.test_child_rebuild import configured_after_import as configured_after_import  # the fixture

pytestmark = pytest.mark.k8s


def test_pod_child_rebuilds_the_masters_task(configured_after_import: tuple[object, Path], tmp_path: Path,
                                             kube: KubeEmulator) -> None:  # fmt: skip
    mod, ws = configured_after_import
    check_import_time_pipeline(mod, ws, tmp_path, executor(kube, tmp_path))


def test_pod_child_refuses_a_differing_constructor_value(tmp_path: Path, kube: KubeEmulator) -> None:
    from tests.e2e.rebuildtasks import Scratchy

    task = Scratchy().with_hints(env={"TEST_SCRATCH_BASE": "/in-the-pod"})
    with pytest.raises(kannon.KannonBuildError) as e:
        kannon.Kannon(executor=executor(kube, tmp_path)).build(task)
    (rec,) = e.value.result.failed
    assert rec.last is not None and rec.last.exit_code == exitcodes.ID_MISMATCH
    assert "parameter scratch is" in (rec.reason or "") and task.make_unique_id() in (rec.reason or "")
