"""DAG walking shared by the planner (master) and the rebuild check (child)."""

from __future__ import annotations

from dataclasses import dataclass, field

import luigi
from luigi.task import flatten

from kannon import reqmemo


class CycleError(Exception):
    def __init__(self, path: list[luigi.Task]) -> None:
        self.path = path
        super().__init__(" -> ".join(f"{type(t).__name__}({t.task_id})" for t in path))


@dataclass
class Walk:
    order: list[luigi.Task] = field(default_factory=list)  # post-order: every task after what it requires
    deps: dict[int, list[luigi.Task]] = field(default_factory=dict)  # id(task) -> its requirements
    errors: list[tuple[luigi.Task, BaseException]] = field(default_factory=list)


def walk(root: luigi.Task | list[luigi.Task]) -> Walk:
    """Visit every task reachable through requires() once, iteratively (no recursion limit), detecting cycles.

    Several roots (the tasks one ``yield`` of a dynamic dependency asked for) are walked as one graph."""
    roots = root if isinstance(root, list) else [root]
    result = Walk()
    seen: set[int] = set()
    path: list[luigi.Task] = []
    on_path: set[str] = set()
    stack: list[tuple[luigi.Task, bool]] = [(r, False) for r in reversed(roots)]
    while stack:
        task, expanded = stack.pop()
        if expanded:
            path.pop()
            on_path.discard(task.task_id)
            result.order.append(task)
            continue
        if task.task_id in on_path:  # the stack's unexpanded markers are exactly the current path
            i = next(k for k, t in enumerate(path) if t.task_id == task.task_id)
            raise CycleError([*path[i:], task])
        if id(task) in seen:
            continue
        seen.add(id(task))
        try:
            deps = list(flatten(reqmemo.requires(task)))  # the build's answer, inside Kannon.build
        except Exception as e:
            result.errors.append((task, e))
            deps = []
        result.deps[id(task)] = deps
        path.append(task)
        on_path.add(task.task_id)
        stack.append((task, True))
        stack.extend((d, False) for d in reversed(deps) if isinstance(d, luigi.Task))
    return result


def warm_unique_ids(root: luigi.Task) -> None:
    """Compute gokart unique ids leaves-first, so each later call recurses one level only (gokart caches them)."""
    from kannon.handoff import unique_id

    for task in walk(root).order:
        unique_id(task)
