"""A container whose interpreter cannot import kannon (wrong image or --docker-python) is named as the reason,
with the option to set, instead of a generic 'the child crashed'."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.docker import DockerExecutor
from kannon.result import KannonBuildError
from kannon.scheduler import Kannon
from tests.e2e.docker.support import python_volumes
from tests.support.tasks import Bullet

pytestmark = pytest.mark.docker


def test_an_interpreter_without_kannon_is_named(engine: Any, image: str, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    # The base interpreter is mounted into the container (python_volumes) but has no kannon: the venv does.
    bare = f"{sys.base_prefix}/bin/python3"
    executor = DockerExecutor(image, volumes=python_volumes(), python=bare)
    with pytest.raises(KannonBuildError) as err:
        Kannon(executor=executor).build(Bullet(name="nokannon"))
    (rec,) = err.value.result.failed
    assert rec.last is not None and rec.last.failure_class == "KannonNotImportable", rec.describe()
    assert f"the child's interpreter {bare!r} cannot import kannon" in (rec.reason or "")
    assert "--docker-python" in (rec.reason or "")
