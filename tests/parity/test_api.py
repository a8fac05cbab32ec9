"""``kannon.build`` mirrors ``gokart.build``'s call (issue 18 point 5): return value, accepted keywords, and an error
that is a ``GokartBuildError`` carrying ``raised_exceptions`` as gokart's does, plus kannon's result."""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

import gokart
import luigi
import pytest
from gokart.build import GokartBuildError

import kannon
from kannon.api import remote_error
from kannon.backends.local import LocalExecutor
from tests.support.tasks import Bullet, Leaf


class ApiMasterBoom(gokart.TaskOnKart[str]):
    def requires(self) -> Any:
        return Bullet(name="before-boom")

    def run(self) -> None:
        raise KeyError("master side")


class ApiBulletBoom(kannon.TaskOnBullet[str]):
    def run(self) -> None:
        raise RuntimeError()  # no message: its type stands in


class ApiBoth(gokart.TaskOnKart[str]):
    def requires(self) -> Any:
        return [ApiMasterBoom(), ApiBulletBoom()]


def test_returns_the_loaded_root_value_or_the_build_result() -> None:
    root = Bullet(name="api", parents=[Leaf(name="api-leaf")])
    value = kannon.build(root, reset_register=True, log_level=logging.ERROR, workers=2, detailed_summary=True)
    assert value == gokart.build(root, reset_register=False)  # the same value gokart itself loads
    result = kannon.build(root, return_value=False)
    assert isinstance(result, kannon.BuildResult) and result.ok


def test_an_unknown_keyword_is_a_type_error_naming_what_is_accepted() -> None:
    with pytest.raises(TypeError, match="Accepted: .*return_value.*workers"):
        kannon.build(Leaf(name="x"), no_such_option=1)


def test_failure_is_a_gokart_build_error_with_raised_exceptions_and_the_result() -> None:
    root = ApiBoth()
    with pytest.raises(GokartBuildError) as err:
        kannon.build(root, executor=LocalExecutor(), keep_going=True)
    e = err.value
    assert isinstance(e, kannon.KannonBuildError) and isinstance(e, kannon.BuildError)
    assert {r.family for r in e.result.failed} == {"ApiMasterBoom", "ApiBulletBoom"}
    master = e.raised_exceptions[ApiMasterBoom().make_unique_id()]
    assert [type(x) for x in master] == [KeyError] and master[0].args == ("master side",)  # the real object
    (remote,) = e.raised_exceptions[ApiBulletBoom().make_unique_id()]
    assert isinstance(remote, kannon.RemoteError)
    assert (remote.type_name, remote.module, str(remote)) == ("RuntimeError", "builtins", "RuntimeError")
    assert "raise RuntimeError()" in remote.traceback_text
    assert "ApiBulletBoom raised RuntimeError" in str(e)  # an empty message is replaced by the type's name
    # a log tail shaped for reading may leave the child's error line out: the full log in the run directory has it
    rec = e.result.tasks[ApiBulletBoom().make_unique_id()]
    assert rec.last is not None
    rec.attempts[-1] = dataclasses.replace(rec.last, log_tail=())
    again = remote_error(rec, e.result)
    assert (again.type_name, again.module) == ("RuntimeError", "builtins") and "raise RuntimeError()" in \
        again.traceback_text  # fmt: skip
    assert remote_error(rec).type_name == "TaskFailed"  # without the run directory: the failure class
    luigi.task_register.Register.clear_instance_cache()
