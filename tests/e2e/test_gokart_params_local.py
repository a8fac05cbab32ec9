"""gokart's own failure and lock parameters on bullets (issue 13), on the local backend.

* ``fail_on_empty_dump``: gokart's dump() raises ``EmptyDumpError`` (an ``AssertionError``) inside run(). luigi treats
  it like any exception of run() — the task FAILED, retried by the worker's retry policy like any other failure — so
  in kannon it is the task's own failure (``TaskFailed``): it spends the task's retries, and never the free
  infrastructure budget (``infra_retries``), which is for evictions and the like.
* The redis lock parameters (``redis_host``, ``redis_port``, ``redis_timeout``, ``should_lock_run`` in gokart 1.x)
  are insignificant parameters: the child must rebuild the bullet with the master's values, not the defaults.
"""

from __future__ import annotations

import os
from pathlib import Path

import luigi
import pytest

import kannon
from kannon.backends.local import LocalExecutor
from kannon.result import KannonBuildError, Status
from tests.support import gokarttasks as gt


@pytest.fixture(autouse=True)
def workspace(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # ./resources of this test only
    luigi.task_register.Register.clear_instance_cache()


@pytest.mark.parametrize("retries", [0, 2])
def test_empty_dump_error_in_a_bullet_spends_its_retries_and_never_the_infrastructure_budget(retries: int) -> None:
    task = gt.EmptyFrame(fail_on_empty_dump=True)
    with pytest.raises(KannonBuildError) as info:
        kannon.Kannon(executor=LocalExecutor(), retries=retries, retry_delay=0.0, infra_retries=3).build(task)
    (rec,) = info.value.result.tasks.values()
    assert rec.status is Status.FAILED
    assert len(rec.attempts) == retries + 1  # exactly the task's retries: no free infrastructure attempts on top
    for attempt in rec.attempts:
        assert attempt.failure_class == "TaskFailed" and attempt.infra is False
        assert "EmptyDumpError" in (attempt.reason or ""), attempt.reason
    assert not task.output().exists()


def test_without_fail_on_empty_dump_the_same_bullet_succeeds() -> None:
    task = gt.EmptyFrame(tag="allowed")
    result = kannon.Kannon(executor=LocalExecutor(), retries=0).build(task)
    assert [r.status for r in result.tasks.values()] == [Status.SUCCEEDED]
    assert task.output().load().empty


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_redis_lock_parameters_reach_the_child_unchanged(mode: str) -> None:
    task = gt.LockParams(redis_host="redis.example.internal", redis_port=6380, redis_timeout=77)
    result = kannon.Kannon(executor=LocalExecutor(mode=mode), retries=0).build(task)
    assert [r.status for r in result.tasks.values()] == [Status.SUCCEEDED]
    out = task.output().load()
    assert out["pid"] != os.getpid()  # rebuilt and run in a child
    expected = {"redis_host": "redis.example.internal", "redis_port": 6380, "redis_timeout": 77,
                "should_lock_run": False}  # fmt: skip
    assert {k: v for k, v in out.items() if k != "pid"} == expected
