"""Dynamic dependencies on the Docker backend (issue 13): a master task's yield of bullets runs each in a container."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.docker import LABEL_RUN, DockerExecutor
from kannon.result import Status
from kannon.scheduler import Kannon
from tests.e2e.docker.support import REPO, python_volumes
from tests.faults.harness import Master, docker_args
from tests.support import dynscenarios
from tests.support import dyntasks as dt

pytestmark = pytest.mark.docker


def test_a_master_yield_of_bullets_runs_them_in_containers(engine: Any, image: str, tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # ./resources is mounted into the containers at the same path
    root = dt.Yielder(names=["d1", "d2"], runs_dir=str(tmp_path))
    result = Kannon(executor=DockerExecutor(image, volumes=python_volumes()), sys_path=[str(REPO)]).build(root)
    out = root.output().load()
    assert out["pid"] == os.getpid() and [v["name"] for v in out["values"]] == ["d1", "d2"]
    bullets = [r for r in result.tasks.values() if r.family == "PidBullet"]
    assert len(bullets) == 2 and {r.requested_by for r in bullets} == {result.root_id}
    for rec in bullets:
        assert rec.status is Status.SUCCEEDED and len(rec.attempts) == 1
        assert rec.last is not None and (rec.last.where or "").startswith("container kannon-")
    yielder = result.tasks[result.root_id]
    assert [a.where for a in yielder.attempts] == ["master", "master"]
    assert [len(dt.runs(tmp_path, n)) for n in ["yielder", "d1", "d2"]] == [2, 1, 1]


def test_a_bullet_that_yields_in_its_container_runs_again_in_a_new_one(
    engine: Any, image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    root = dt.BulletYielder(names=["c1"], runs_dir=str(tmp_path))
    result = Kannon(executor=DockerExecutor(image, volumes=python_volumes()), sys_path=[str(REPO)]).build(root)
    assert [v["name"] for v in root.output().load()["values"]] == ["c1"]
    yielder = result.tasks[result.root_id]
    wheres = [a.where or "" for a in yielder.attempts]
    assert len(wheres) == 2 and all(w.startswith("container kannon-") for w in wheres) and wheres[0] != wheres[1]
    (bullet,) = [r for r in result.tasks.values() if r.family == "PidBullet"]
    assert bullet.requested_by == result.root_id
    assert bullet.last is not None and (bullet.last.where or "").startswith("container kannon-")
    assert len(dt.runs(tmp_path, "byielder")) == 2 and len(dt.runs(tmp_path, "c1")) == 1


def docker_executor(image: str) -> Callable[[], DockerExecutor]:
    return lambda: DockerExecutor(image, volumes=python_volumes())


SYS_PATH = {"sys_path": [str(REPO)]}


def test_a_yielded_bullet_that_itself_yields_runs_each_level_in_its_own_container(
    engine: Any, image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dynscenarios.nested_yield(docker_executor(image), tmp_path, "container kannon-", **SYS_PATH)


def test_a_yield_of_complete_tasks_launches_no_container(engine: Any, image: str, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    dynscenarios.yield_of_complete_tasks(docker_executor(image), tmp_path, "container kannon-", **SYS_PATH)


def test_a_yielded_bullet_that_fails_in_its_container_marks_the_yielder_upstream_failed(
    engine: Any, image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dynscenarios.yielded_bullet_fails(docker_executor(image), tmp_path, "container kannon-", 0, **SYS_PATH)


def test_a_yielded_bullet_that_fails_once_in_its_container_is_retried_and_the_yielder_finishes(
    engine: Any, image: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    dynscenarios.yielded_bullet_fails_once(docker_executor(image), tmp_path, "container kannon-", **SYS_PATH)


def test_sigterm_while_yielded_bullets_run_in_containers_leaves_no_container(engine: Any, image: str,
                                                                             tmp_path: Path) -> None:  # fmt: skip
    def containers(master: Master) -> list[str]:
        found = engine.containers.list(all=True, sparse=True, filters={"label": f"{LABEL_RUN}={master.tail.run_id}"})
        return [f"container {c.id[:12]}" for c in found]

    dynscenarios.sigterm_while_yielded_bullets_run(tmp_path, docker_args(image), None, containers)
