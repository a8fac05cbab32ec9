"""Which pending tasks may run: a ready set that, unlike ``graphlib.TopologicalSorter``, takes new tasks and new
dependencies while the run goes on — a ``yield`` in run() adds both (dynamic dependencies)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kannon.result import TaskRecord


class Readiness:
    def __init__(self) -> None:
        self.finished: set[str] = set()  # succeeded in this run, or complete before it
        self._waits: dict[str, dict[str, None]] = {}  # pending task -> what it still waits for (ordered)
        self._dependents: dict[str, dict[str, None]] = {}  # task -> pending tasks waiting for it (ordered)
        self._ready: list[str] = []

    def add(self, uid: str, deps: Iterable[str]) -> None:
        """``uid`` waits for ``deps`` (those not finished); with none left it is ready at once. Adding a task
        again (run() yielded more) replaces what it waits for."""
        waits = dict.fromkeys(d for d in deps if d not in self.finished)
        for d in self._waits.pop(uid, {}):
            self._dependents.get(d, {}).pop(uid, None)
        for d in waits:
            self._dependents.setdefault(d, {})[uid] = None
        if waits:
            self._waits[uid] = waits
        else:  # ready: nothing kept for it (an empty dict per task, to the run's end, at 10,000 tasks)
            self._ready.append(uid)

    def done(self, uid: str) -> None:
        self.finished.add(uid)
        for dependent in self._dependents.pop(uid, {}):
            waits = self._waits.get(dependent)
            if waits is not None and uid in waits:
                del waits[uid]
                if not waits:
                    del self._waits[dependent]
                    self._ready.append(dependent)

    def take(self) -> list[str]:
        """The tasks that became ready since the last call, in the order they did."""
        out, self._ready = self._ready, []
        return out


def failed_upstream(records: Mapping[str, TaskRecord], uid: str, failed: set[str]) -> list[str]:
    """The failed tasks ``uid`` waits for, directly or not, through static and dynamic dependencies."""
    rec = records[uid]
    out, seen, stack = [], set(), [*rec.deps, *rec.requested]
    while stack:
        d = stack.pop()
        if d in seen:
            continue
        seen.add(d)
        if d in failed:
            out.append(d)
        else:
            stack.extend((*records[d].deps, *records[d].requested))
    return out
