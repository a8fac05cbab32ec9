"""Each task's ``requires()`` computed once per build, however many times luigi, gokart and kannon ask for it.

In one build the master asks a task for its requirements a dozen times: the plan's walk, gokart's unique id,
:func:`kannon.runner.missing_requirements`, luigi's worker (``deps()`` when scheduling and again when running),
``input()``, and gokart's ``dump()`` (its ``required_task_outputs``), which runs once in ``run()`` and once per
START/SUCCESS event handler. Each call constructs every required task again, and luigi resolves every parameter of
each through its config before its instance cache returns the same object (``Register.__call__``): for a task with
1,000 requirements that was a third of the master's CPU.

kannon already holds ``requires()`` to be deterministic within a build: the plan ships what it returned to each
bullet's child, which refuses to run when its own ``requires()`` differs (``handoff.check_requirements``). So, inside
:func:`once_per_build`, the first call's result is kept on the task instance and later calls get a copy of it (its
lists and dicts copied, the same task objects, as luigi's instance cache would give). Outside a build nothing is
kept: the next build, ``kannon plan`` and the children call ``requires()`` afresh.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import luigi

_lock = threading.Lock()
#: the tasks given a memo in the active build (None: no build active, nothing is memoised)
_memoised: list[luigi.Task] | None = None


def _forget_in_child() -> None:
    """A process forked during a build (the local fork server, its children) is not part of that build."""
    global _lock, _memoised
    _lock, _memoised = threading.Lock(), None


os.register_at_fork(after_in_child=_forget_in_child)


@contextmanager
def once_per_build() -> Iterator[None]:
    """Memoise ``requires()`` of the tasks :func:`requires` sees until the block ends (re-entrant: an inner block
    leaves the memo to the outer one)."""
    global _memoised
    with _lock:
        outer = _memoised is not None
        if not outer:
            _memoised = []
    try:
        yield
    finally:
        if not outer:
            with _lock:
                tasks, _memoised = _memoised or [], None
            for task in tasks:
                if getattr(task.__dict__.get("requires"), "_kannon_memo", False):
                    del task.__dict__["requires"]


def requires(task: luigi.Task) -> Any:
    """``task.requires()``; inside :func:`once_per_build`, also what every later call of it returns."""
    result = task.requires()
    if _memoised is None or "requires" in task.__dict__ or not _reusable(result) or not _names_a_task(result):
        # no build, a memo (or the user's own instance attribute) already, a one-shot iterator, or nothing to
        # construct again (a memo per leaf of a 10,000-task fan-out would cost ~4 MB and save nothing)
        return result
    original = task.requires

    def memo() -> Any:
        return _copy(result)

    memo._kannon_memo = True  # type: ignore[attr-defined]
    # gokart's code hash (serialized_task_definition_check) reads the source of the instance's members:
    # inspect.getsource unwraps to the task's own requires(), so the hash is unchanged.
    memo.__wrapped__ = original  # type: ignore[attr-defined]
    with _lock:
        if _memoised is None:
            return result
        task.__dict__["requires"] = memo
        _memoised.append(task)
    return _copy(result)


def _reusable(value: Any) -> bool:
    """Tasks in (nested) lists, tuples and dicts; not generators or other iterables, which one call consumes."""
    if isinstance(value, luigi.Task):
        return True
    if type(value) in (list, tuple):
        return all(_reusable(v) for v in value)
    if type(value) is dict:
        return all(_reusable(v) for v in value.values())
    return False


def _names_a_task(value: Any) -> bool:
    if isinstance(value, luigi.Task):
        return True
    items = value.values() if type(value) is dict else value
    return any(_names_a_task(v) for v in items)


def _copy(value: Any) -> Any:
    """A fresh container per call, as each call of ``requires()`` returns: a caller may change what it gets."""
    if type(value) is list:
        return [_copy(v) for v in value]
    if type(value) is tuple:
        return tuple(_copy(v) for v in value)
    if type(value) is dict:
        return {k: _copy(v) for k, v in value.items()}
    return value
