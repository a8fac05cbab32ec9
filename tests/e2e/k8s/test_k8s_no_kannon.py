"""A pod whose interpreter cannot import kannon (wrong image or --k8s-python) is named as the reason, with the
option to set, instead of a generic 'the child crashed'."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from kannon.result import KannonBuildError
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_k8s_backend_build import executor
from tests.support.tasks import Bullet

pytestmark = pytest.mark.k8s


def test_an_interpreter_without_kannon_is_named(kube: KubeEmulator, tmp_path: Path) -> None:
    # A real interpreter without kannon: isolated mode ignores the template's PYTHONPATH and the user site.
    bare = tmp_path / "bare-python"
    bare.write_text(f"#!/bin/sh\nexec {sys.base_prefix}/bin/python3 -I -S \"$@\"\n")
    bare.chmod(0o755)
    with pytest.raises(KannonBuildError) as err:
        Kannon(executor=executor(kube, tmp_path, python=str(bare))).build(Bullet(name="nokannon"))
    (rec,) = err.value.result.failed
    assert rec.last is not None and rec.last.failure_class == "KannonNotImportable", rec.describe()
    assert f"the child's interpreter {str(bare)!r} cannot import kannon" in (rec.reason or "")
    assert "--k8s-python" in (rec.reason or "")
