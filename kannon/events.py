"""Event records: every state change of a run, as one flat, JSON-friendly record.

The same records reach pluggy observers (``kannon_event`` and the specific task hooks), the progress display,
the JSON-lines event log (``--events``) and the HTML report, so they are the documented, versioned schema:

``schema`` (int, currently 1), ``kind``, ``time`` (unix seconds, float), ``run_id`` (stable across reruns of one
pipeline and workspace), ``invocation_id`` (on ``run_started``: this build() call; its attempt logs are under
``<run_dir>/logs/<invocation_id>/``); task events add ``task_id``,
``family``, ``params`` (short repr), ``placement`` (master | bullet | complete), ``attempt``, ``backend``,
``where``, ``reason``, ``failure_class``, ``exit_code``, ``log_tail`` (list of str), ``deps`` (task ids, only on
``planned``/``skipped_complete``). ``succeeded``, ``failed`` and ``retried`` events of a bullet add ``usage`` (what
the attempt used, from its child-result record: ``peak_rss_bytes``, ``peak_source``, ``cpu_seconds``,
``wall_seconds``, ``output_bytes``, ``oom_limit_bytes`` — see kannon.childresult.Usage; absent when the child wrote
no record) and ``requested_resources`` (the task's hints as strings, only those set: ``cpu``, ``memory``).
Consumers must ignore unknown keys; a breaking change bumps ``schema``.

Kinds: run_started, planned, skipped_complete, queued (ready, but waiting for a free slot, or for the master task
running before it; ``attempt`` is the one that will launch), launched (handed to the executor or the master thread),
started (really running), succeeded, failed (final), retried (this attempt failed, another follows),
cancelled, upstream_failed, run_finished (``reason`` = ok | failed | cancelled, plus ``counts``), status (a running
bullet called ``set_status_message`` and/or ``set_progress_percentage``: ``status_message``,
``progress_percentage``; it changes no state), admission_wait (a launched bullet's Job is held by the cluster's
admission queue, e.g. Kueue's suspend, or was preempted back into it; ``reason`` says why when the cluster says,
and the event repeats when it does), admitted (it left the queue; ``waited`` = seconds of that stint).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any, Literal

SCHEMA_VERSION = 1

EventKind = Literal[
    "run_started",
    "planned",
    "skipped_complete",
    "queued",
    "launched",
    "started",
    "succeeded",
    "failed",
    "retried",
    "cancelled",
    "upstream_failed",
    "run_finished",
    "status",
    "requested",
    "admission_wait",
    "admitted",
]
TASK_KINDS = frozenset(
    {"planned", "skipped_complete", "queued", "launched", "started", "succeeded", "failed", "retried", "cancelled",
     "upstream_failed", "status", "requested", "admission_wait", "admitted"}
)  # fmt: skip


@dataclass(frozen=True)
class Event:
    kind: EventKind
    run_id: str
    time: float = field(default_factory=time.time)
    task_id: str | None = None
    family: str | None = None
    params: str | None = None
    placement: str | None = None
    attempt: int | None = None
    backend: str | None = None
    where: str | None = None
    reason: str | None = None
    failure_class: str | None = None
    exit_code: int | None = None
    log_tail: tuple[str, ...] = ()
    deps: tuple[str, ...] = ()
    counts: Mapping[str, int] | None = None
    invocation_id: str | None = None
    status_message: str | None = None  # "status" events only
    progress_percentage: float | None = None  # "status" events only
    requested_by: str | None = None  # "requested" and "planned": the task whose run() yielded it (dynamic)
    waited: float | None = None  # "admitted" only: seconds this stint in the admission queue lasted
    usage: Mapping[str, Any] | None = None  # succeeded/failed/retried of a bullet: kannon.childresult.Usage fields
    requested_resources: Mapping[str, str] | None = None  # the same events: the task's hints ("cpu", "memory")
    schema: int = SCHEMA_VERSION

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["log_tail"] = list(self.log_tail)
        d["deps"] = list(self.deps)
        for name in ("counts", "usage", "requested_resources"):
            value = getattr(self, name)
            if value is not None:
                d[name] = dict(value)
        return {k: v for k, v in d.items() if v not in (None, [], ())}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in d.items() if k in known}
        values["log_tail"] = tuple(values.get("log_tail", ()))
        values["deps"] = tuple(values.get("deps", ()))
        return cls(**values)


class EventLog:
    """Writes events as JSON lines, flushed per line so a crashed run still leaves a readable log."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] = self.path.open("a", encoding="utf-8")
        self._lock = threading.Lock()

    def write(self, event: Event) -> None:
        line = json.dumps(event.to_dict(), ensure_ascii=False, sort_keys=True)
        with self._lock:
            if not self._f.closed:
                self._f.write(line + "\n")
                self._f.flush()

    def close(self) -> None:
        with self._lock:
            self._f.close()


def read_events(path: str | Path) -> Iterator[Event]:
    """Read an event log; lines from a newer schema or a torn last line are skipped."""
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                d = json.loads(line)
            except json.JSONDecodeError:
                continue  # a torn last line of a killed run
            if int(d.get("schema", 1)) > SCHEMA_VERSION:
                continue
            yield Event.from_dict(d)
