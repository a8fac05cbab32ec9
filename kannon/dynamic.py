"""Dynamic dependencies: a ``run()`` that yields tasks, with luigi's contract and kannon's scheduling.

luigi's worker (``TaskProcess._run_get_new_deps``) drives the generator ``run()`` returns: each yielded value (a
task, a list, nested structures, or a ``DynamicRequirements``) is checked; when every task in it is complete, their
outputs (``DynamicRequirements.paths``) are sent back and run() continues; when one is not, the worker stops the
task (it goes back to *pending*), schedules the yielded tasks, and runs the task again from the start once they are
complete. Left to luigi, those yielded tasks would run inside the process that runs the yielding task.

:func:`intercept` drives the generator the same way, but stops at the first incomplete yield by raising
:class:`DynamicRequest` instead of handing the tasks to luigi, so kannon plans and schedules them like the static
DAG (bullets to the executor). It derives from ``KeyboardInterrupt`` on purpose: luigi's ``TaskProcess.run`` re-raises
that (``except KeyboardInterrupt: raise``) and turns any other exception into a failure — FAILURE event handlers,
``on_failure``, an error log — none of which luigi does for a task that merely asked for more dependencies.
"""

from __future__ import annotations

import collections.abc
import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import luigi
from luigi.task import DynamicRequirements


class DynamicRequest(KeyboardInterrupt):
    """run() yielded tasks that are not all complete; ``tasks`` are every task of that yield (luigi's
    ``flat_requirements``), complete ones included."""

    def __init__(self, tasks: list[luigi.Task]) -> None:
        super().__init__(f"run() yielded {len(tasks)} task(s) that are not all complete")
        self.tasks = tasks


def requested_location(requester: luigi.Task, run_id: str, requester_id: str, attempt: int, task_id: str) -> str:
    """Where a bullet's child writes the spec of a task its run() yielded: the requester's workspace, which master
    and child share on every backend (the master confirms the child's outputs there), whatever transport the specs
    themselves use. The master derives the same place from its own task object; it never takes a path from the
    child."""
    from kannon import storage

    base = str(getattr(requester, "workspace_directory", "./resources/"))
    if not storage.is_remote(base):
        base = os.path.abspath(base)
    return storage.join(base, "kannon", "specs", run_id, "requested", f"{requester_id}-{attempt}", f"{task_id}.json")


def _drive(gen: collections.abc.Generator[Any, Any, Any]) -> collections.abc.Generator[Any, Any, Any]:
    sent: Any = None
    while True:
        try:
            requires = gen.send(sent)  # send(None) on a fresh generator is next()
        except StopIteration as stop:
            return stop.value
        if not isinstance(requires, DynamicRequirements):  # luigi's default behaviour for a plain structure
            requires = DynamicRequirements(requires)
        if not requires.complete():
            gen.close()  # luigi drops the generator too; close() runs the user's finally blocks now
            raise DynamicRequest(list(requires.flat_requirements))
        sent = requires.paths
    yield  # never reached: makes this a generator, which luigi's worker drives (and finds empty)


@contextmanager
def intercept(task: luigi.Task) -> Iterator[None]:
    """While inside, ``task.run()`` stops with :class:`DynamicRequest` at its first yield of incomplete tasks."""
    original: Callable[..., Any] = task.run
    if not inspect.isgeneratorfunction(inspect.unwrap(original)):  # cannot yield: no wrapper frame in its traceback
        yield
        return

    def run(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        return _drive(out) if isinstance(out, collections.abc.Generator) else out

    task.run = run  # on the instance only: the class (and its code hash) stays untouched
    try:
        yield
    finally:
        del task.run
