"""luigi's instance cache with its keys' (name, value) pairs shared: the same lookups, less memory (issue 16)."""

from __future__ import annotations

import warnings
from pathlib import Path

import luigi
import pytest

import kannon
from kannon import handoff, instcache
from kannon.plan import make_plan


class CachedLeaf(kannon.TaskOnBullet[int]):
    n = luigi.IntParameter()
    tags = luigi.ListParameter(default=["a", "b"])

    def run(self) -> None:
        self.dump(self.n)


class CachedRoot(kannon.TaskOnBullet[int]):
    count = luigi.IntParameter()

    def requires(self):  # type: ignore[no-untyped-def]
        return [CachedLeaf(n=i) for i in range(self.count)]


def _keys() -> dict[object, object]:
    return dict(getattr(luigi.task_register.Register, instcache._CACHE))


def test_luigi_still_returns_the_same_instance_for_the_same_parameters_and_pairs_are_held_once() -> None:
    with handoff.fresh_instances():
        tasks = [CachedLeaf(n=i) for i in range(30)]
        other = CachedLeaf(n=3, tags=["c"])
        assert instcache.share_key_pairs() > 0
        assert [CachedLeaf(n=i) for i in range(30)] == tasks
        assert all(CachedLeaf(n=i) is t for i, t in enumerate(tasks)), "luigi's cache finds the same instances"
        assert CachedLeaf(n=3, tags=["c"]) is other and CachedLeaf(n=3) is tasks[3]
        by_task = {id(task): dict(key[1]) for key, task in _keys().items()}  # type: ignore[index]
        pairs = {id(task): key[1] for key, task in _keys().items()}  # type: ignore[index]
        first, last = pairs[id(tasks[0])], pairs[id(tasks[-1])]
        shared = [i for i, pair in enumerate(first) if pair[0] != "n"]
        assert len(shared) > 15 and all(first[i] is last[i] for i in shared), "one copy of each equal pair"
        assert by_task[id(other)]["tags"] == ("c",) and by_task[id(tasks[0])]["n"] == 0
        later = CachedLeaf(n=99)  # the cache goes on working for tasks constructed afterwards
        assert CachedLeaf(n=99) is later


class _ConstructsOnHash:
    """A parameter value whose ``__hash__`` constructs a task once armed: the cache changes during the rebuild, as
    when another thread constructs one."""

    armed = False
    made: list[luigi.Task] = []

    def __hash__(self) -> int:
        if _ConstructsOnHash.armed:
            _ConstructsOnHash.armed = False
            _ConstructsOnHash.made.append(CachedLeaf(n=12345))
        return 7

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _ConstructsOnHash)


class CachedAny(kannon.TaskOnBullet[int]):
    value = luigi.Parameter()


def test_a_cache_that_changes_while_it_is_rebuilt_is_left_as_it_is() -> None:
    with handoff.fresh_instances(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # luigi warns that the value is not a string
        odd = CachedAny(value=_ConstructsOnHash())
        tasks = [CachedLeaf(n=i) for i in range(5)]
        _ConstructsOnHash.armed = True
        assert instcache.share_key_pairs() == 0
        assert _ConstructsOnHash.made, "the value's __hash__ ran during the rebuild"
        assert CachedLeaf(n=12345) is _ConstructsOnHash.made[0], "the task constructed meanwhile is still cached"
        assert CachedAny(value=_ConstructsOnHash()) is odd and CachedLeaf(n=2) is tasks[2]


def test_a_disabled_or_empty_cache_is_left_alone() -> None:
    with handoff.fresh_instances():
        assert instcache.share_key_pairs() == 0
        luigi.task_register.Register.disable_instance_cache()
        assert instcache.share_key_pairs() == 0
        assert getattr(luigi.task_register.Register, instcache._CACHE) is None


def test_planning_shares_the_pairs_of_every_task_it_constructed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with handoff.fresh_instances():
        root = CachedRoot(count=20)
        make_plan(root)
        pairs = [key[1] for key, task in _keys().items() if isinstance(task, CachedLeaf)]  # type: ignore[index]
        assert len(pairs) == 20
        ws = [next(p for p in ps if p[0] == "workspace_directory") for ps in pairs]
        assert all(p is ws[0] for p in ws)
        assert CachedRoot(count=20) is root
