"""kannon.reqmemo: within a build, later calls of requires() get the first call's answer, as a fresh container."""

from __future__ import annotations

import os
from typing import Any

import gokart
import luigi

from kannon import reqmemo


class MemoUp(gokart.TaskOnKart[int]):
    n = luigi.IntParameter()


class MemoDown(gokart.TaskOnKart[int]):
    calls = 0

    def requires(self) -> dict[str, list[MemoUp]]:
        type(self).calls += 1
        return {"ups": [MemoUp(n=1), MemoUp(n=2)]}


class MemoFromGenerator(gokart.TaskOnKart[int]):
    def requires(self) -> Any:
        return (MemoUp(n=i) for i in (1, 2))


class MemoCodeChecked(gokart.TaskOnKart[int]):
    """gokart hashes the source of the task's members into its id; the id must not see the memo."""

    serialized_task_definition_check = True
    cache_unique_id = False

    def requires(self) -> MemoUp:
        return MemoUp(n=3)


def test_later_calls_reuse_the_first_answer_in_a_fresh_container() -> None:
    task, MemoDown.calls = MemoDown(), 0
    with reqmemo.once_per_build():
        first = reqmemo.requires(task)
        first["ups"].append("changed by a caller")
        again = task.requires()
        assert again == {"ups": [MemoUp(n=1), MemoUp(n=2)]} and again["ups"][0] is MemoUp(n=1)
        assert [t.path() for t in task.input()["ups"]] == [MemoUp(n=1).output().path(), MemoUp(n=2).output().path()]
        assert MemoDown.calls == 1
    assert "requires" not in vars(task)
    task.requires()
    assert MemoDown.calls == 2  # outside a build each call is the task's own


def test_outside_a_build_nothing_is_memoised() -> None:
    task, MemoDown.calls = MemoDown(), 0
    reqmemo.requires(task)
    task.requires()
    assert MemoDown.calls == 2 and "requires" not in vars(task)


def test_a_generator_is_not_memoised_each_call_gets_a_new_one() -> None:
    task = MemoFromGenerator()
    with reqmemo.once_per_build():
        assert list(reqmemo.requires(task)) == [MemoUp(n=1), MemoUp(n=2)]
        assert list(task.requires()) == [MemoUp(n=1), MemoUp(n=2)]  # a memo would hand out the consumed generator


def test_gokart_s_code_hash_is_unchanged_by_the_memo() -> None:
    task = MemoCodeChecked()
    outside = task.make_unique_id()
    with reqmemo.once_per_build():
        reqmemo.requires(task)
        assert "requires" in vars(task)
        assert task.make_unique_id() == outside


def test_a_requires_set_on_the_instance_by_the_user_is_left_alone() -> None:
    task = MemoDown()
    task.requires = lambda: [MemoUp(n=9)]  # type: ignore[method-assign]
    with reqmemo.once_per_build():
        assert reqmemo.requires(task) == [MemoUp(n=9)]
    assert task.requires() == [MemoUp(n=9)]


def test_a_process_forked_during_a_build_memoises_nothing() -> None:
    with reqmemo.once_per_build():
        pid = os.fork()
        if pid == 0:  # the child: requires() is the task's own, as in any child that rebuilds its task
            task, MemoDown.calls = MemoDown(), 0
            reqmemo.requires(task)
            os._exit(0 if "requires" not in vars(task) else 1)
        _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0


class MemoNothing(gokart.TaskOnKart[int]):
    def requires(self) -> dict[str, list[MemoUp]]:
        return {"ups": []}


def test_a_requires_that_names_no_task_is_not_memoised() -> None:
    """Nothing to construct again, so nothing to keep: a memo on each leaf of a 10,000-task fan-out held ~4 MB."""
    leaf, empty = MemoUp(n=7), MemoNothing()
    with reqmemo.once_per_build():
        assert reqmemo.requires(leaf) == [] and reqmemo.requires(empty) == {"ups": []}
        assert "requires" not in vars(leaf) and "requires" not in vars(empty)
