"""Fold a stream of :class:`~kannon.events.Event` records back into a :class:`~kannon.result.BuildResult`.

One fold serves both the live progress display (applied event by event) and the HTML report (applied to an event
log), so the two can never disagree about what happened. It is tolerant by design: an event log may be cut short
by a crashed master, come from a newer scheduler that emits kinds in a slightly different order, or hold several
runs appended to one file.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from kannon import cliutil
from kannon.events import Event
from kannon.result import Attempt, BuildResult, Placement, Status, TaskRecord

TERMINAL = frozenset({Status.SUCCEEDED, Status.FAILED, Status.UPSTREAM_FAILED, Status.CANCELLED, Status.COMPLETE})


def _placement(value: str | None, default: Placement = Placement.BULLET) -> Placement:
    try:
        return Placement(value) if value else default
    except ValueError:
        return default


@dataclass
class RunModel:
    """The state of one run as seen through its events. ``apply`` is cheap: call it for every event live."""

    run_id: str | None = None
    backend: str | None = None
    started_at: float | None = None
    finished_at: float | None = None
    outcome: str | None = None  # run_finished's reason: ok | failed | cancelled; None while running / cut short
    tasks: dict[str, TaskRecord] = field(default_factory=dict)
    retries: int = 0
    first_time: float | None = None
    last_time: float | None = None
    _counts: dict[str, int] = field(default_factory=dict, repr=False)
    _queued: dict[str, float] = field(default_factory=dict, repr=False)  # task -> queued, not launched yet
    _admission: dict[str, float] = field(default_factory=dict, repr=False)  # task -> in the admission queue since

    def apply(self, e: Event) -> TaskRecord | None:
        """Fold one event in; returns the task it concerns (None for run-level events)."""
        if self.run_id is None:
            self.run_id = e.run_id
        self.first_time = e.time if self.first_time is None else min(self.first_time, e.time)
        self.last_time = e.time if self.last_time is None else max(self.last_time, e.time)
        # the run's backend: from run_started, else from a bullet's event ("master" names no backend)
        if e.backend and e.backend != "master" and (self.backend is None or e.kind == "run_started"):
            self.backend = e.backend
        if e.kind == "run_started":
            self.started_at = e.time
            return None
        if e.kind == "run_finished":
            self.finished_at = e.time
            self.outcome = e.reason or "finished"
            return None
        if e.task_id is None:
            return None
        rec = self.tasks.get(e.task_id)
        before = rec.status if rec is not None else None
        if rec is None:
            rec = TaskRecord(
                task_id=e.task_id,
                family=e.family or "?",
                params=e.params or "",
                placement=_placement(e.placement),
                status=Status.PENDING,
            )
            self.tasks[e.task_id] = rec
        if e.deps:
            rec.deps = tuple(e.deps)
        if e.requested_by and e.kind in ("planned", "skipped_complete"):
            rec.requested_by = e.requested_by  # planned during the run: a yield in that task's run() asked for it
        if e.kind == "requested" and e.requested_by:
            self._requested(e)
        if e.family:
            rec.family = e.family
        if e.params is not None:
            rec.params = e.params
        if e.placement:
            rec.placement = _placement(e.placement, rec.placement)
        self._task_event(rec, e)
        if rec.status != before:  # counts kept incrementally: the live view asks for them on every redraw
            if before is not None:
                self._counts[before.value] -= 1
            self._counts[rec.status.value] = self._counts.get(rec.status.value, 0) + 1
        return rec

    def _requested(self, e: Event) -> None:
        """The yielding task stopped at its yield (luigi: back to pending) and waits for what it asked for."""
        assert e.task_id is not None and e.requested_by is not None
        by = self.tasks.get(e.requested_by)
        if by is None:
            return
        by.requested = tuple(dict.fromkeys((*by.requested, e.task_id)))
        last = by.last
        if last is not None:
            if last.finished_at is None:
                last.finished_at = e.time
            last.requested = tuple(dict.fromkeys((*last.requested, e.task_id)))
        if by.status == Status.RUNNING:
            self._counts[by.status.value] -= 1
            by.status = Status.PENDING
            self._counts[by.status.value] = self._counts.get(by.status.value, 0) + 1

    def _attempt(self, rec: TaskRecord, e: Event, create: bool) -> Attempt | None:
        if e.attempt is not None:
            for a in rec.attempts:
                if a.number == e.attempt:
                    return a
        elif rec.attempts and (create or rec.attempts[-1].finished_at is None):
            # no attempt number: the event is about the latest attempt
            return rec.attempts[-1]
        if not create:
            return None
        number = e.attempt if e.attempt is not None else len(rec.attempts) + 1
        a = Attempt(number=number, launched_at=e.time)
        rec.attempts.append(a)
        rec.attempts.sort(key=lambda x: x.number)
        return a

    def _finish(self, rec: TaskRecord, e: Event, create: bool) -> None:
        a = self._attempt(rec, e, create=create)
        if a is None:
            return
        since = self._admission.pop(rec.task_id, None)
        if since is not None:  # ended while the admission queue still held it (cancelled, deadline)
            a.admission_wait += max(0.0, e.time - since)
        a.finished_at = e.time
        a.exit_code = e.exit_code if e.exit_code is not None else a.exit_code
        a.reason = e.reason or a.reason
        a.failure_class = e.failure_class or a.failure_class
        a.where = e.where or a.where
        if e.log_tail:
            a.log_tail = tuple(e.log_tail)

    def _task_event(self, rec: TaskRecord, e: Event) -> None:
        kind = e.kind
        if kind == "planned":
            if rec.status == Status.PENDING and rec.placement == Placement.COMPLETE:
                rec.status = Status.COMPLETE
        elif kind == "skipped_complete":
            rec.placement = Placement.COMPLETE
            rec.status = Status.COMPLETE
        elif kind == "queued":
            self._queued[rec.task_id] = e.time
        elif kind == "launched":
            a = self._attempt(rec, e, create=True)
            assert a is not None
            a.launched_at = e.time
            a.queued_at = self._queued.pop(rec.task_id, a.queued_at)
            a.where = e.where or a.where
            rec.status = Status.RUNNING
        elif kind == "started":
            a = self._attempt(rec, e, create=True)
            assert a is not None
            a.started_at = e.time
            a.where = e.where or a.where
            rec.status = Status.RUNNING
        elif kind == "admission_wait":
            a = self._attempt(rec, e, create=True)
            assert a is not None
            self._admission.setdefault(rec.task_id, e.time)
            a.admission_reason = e.reason or a.admission_reason
        elif kind == "admitted":
            a = self._attempt(rec, e, create=True)
            assert a is not None
            since = self._admission.pop(rec.task_id, e.time)
            a.admission_wait += e.waited if e.waited is not None else max(0.0, e.time - since)
        elif kind == "retried":
            self._finish(rec, e, create=True)
            self.retries += 1
            rec.status = Status.PENDING
        elif kind == "succeeded":
            # master tasks may report success without a separate launched/started pair
            self._finish(rec, e, create=True)
            rec.status = Status.SUCCEEDED
        elif kind == "failed":
            # a task can fail before any attempt was launched (e.g. its hand-off could not be written)
            self._finish(rec, e, create=e.attempt is not None)
            rec.status = Status.FAILED
            rec.reason = e.reason or (rec.last.reason if rec.last else None)
        elif kind == "cancelled":
            self._queued.pop(rec.task_id, None)
            if rec.last is not None and rec.last.finished_at is None:
                self._finish(rec, e, create=False)
                rec.last.failure_class = rec.last.failure_class or "Cancelled"
            rec.status = Status.CANCELLED
            rec.reason = e.reason or rec.reason
        elif kind == "upstream_failed":
            self._queued.pop(rec.task_id, None)
            rec.status = Status.UPSTREAM_FAILED
            rec.reason = e.reason or rec.reason

    # -- derived views ---------------------------------------------------------------------------------------
    @property
    def admission_waiting(self) -> int:
        """Launched bullets the cluster's admission queue holds right now (Kueue)."""
        return len(self._admission)

    @property
    def queued(self) -> int:
        """Tasks announced ``queued`` (ready, waiting for a slot) and not launched yet."""
        return len(self._queued)

    def counts(self) -> dict[str, int]:
        """Tasks per status value (only statuses that occur)."""
        return {k: n for k, n in self._counts.items() if n}

    def root_id(self) -> str:
        """The task nothing depends on (the first such in discovery order): the build's target."""
        needed = {d for t in self.tasks.values() for d in (*t.deps, *t.requested)}
        for task_id in self.tasks:
            if task_id not in needed:
                return task_id
        return next(iter(self.tasks), "")

    def result(self) -> BuildResult:
        start = self.started_at if self.started_at is not None else (self.first_time or 0.0)
        return BuildResult(
            run_id=self.run_id or "?",
            backend=self.backend or "?",
            tasks=self.tasks,
            root_id=self.root_id(),
            started_at=start,
            finished_at=self.finished_at,
            cancelled=self.outcome == "cancelled",
        )


def attempt_outcome(rec: TaskRecord, a: Attempt) -> str:
    """What became of one attempt: waiting | running | succeeded | failed | retried | cancelled | yielded."""
    if a.finished_at is None:
        if rec.status in TERMINAL and rec.status != Status.CANCELLED:
            return "lost"  # the task ended without this attempt reporting back (log cut short)
        return "running" if a.started_at is not None else "waiting"
    if a.failure_class == "Cancelled":
        return "cancelled"
    if a.requested:
        return "yielded"  # stopped at a yield of incomplete tasks (dynamic dependencies); runs again after them
    is_last = rec.attempts and rec.attempts[-1] is a
    if is_last and rec.status == Status.SUCCEEDED:
        return "succeeded"
    if is_last and rec.status == Status.FAILED:
        return "failed"
    if is_last and rec.status == Status.CANCELLED:
        return "cancelled"
    return "retried"


def last_run(events: Iterable[Event], run_id: str | None = None) -> list[Event]:
    """The events of one run: ``run_id``'s latest run if given, else the last run started in the stream.

    An event log opened in append mode may hold several runs (and a re-attached run repeats its run id); the
    report shows one: everything from the last ``run_started`` of that run id on (see :func:`runs`).
    """
    evs = list(events)
    started = [s for s in runs(evs) if s.events[0].kind == "run_started" and run_id in (None, s.run_id)]
    if started:
        return started[-1].events
    # a log cut before any run_started (of that run): all of the run's events, by default the last event's run
    wanted = run_id if run_id is not None else (evs[-1].run_id if evs else None)
    return [e for e in evs if e.run_id == wanted]


@dataclass(frozen=True)
class RunSegment:
    """One run in an event log: from a ``run_started`` up to the next ``run_started`` of the same run id (a rerun of
    the same pipeline, or a re-attach, repeats the run id and starts a new segment)."""

    index: int  # 1-based, in order of start
    run_id: str
    events: list[Event]

    @property
    def started(self) -> float:
        return self.events[0].time

    @property
    def outcome(self) -> str:
        end = next((e for e in reversed(self.events) if e.kind == "run_finished"), None)
        return (end.reason or "finished") if end is not None else "unfinished (the master stopped?)"


def runs(events: Iterable[Event]) -> list[RunSegment]:
    """Every run segment of an event log, in order of start. Events before their run's first ``run_started`` (a
    truncated log) form a segment of their own."""
    segments: list[tuple[str, list[Event]]] = []
    current: dict[str, list[Event]] = {}
    for e in events:
        if e.kind == "run_started" or e.run_id not in current:
            current[e.run_id] = []
            segments.append((e.run_id, current[e.run_id]))
        current[e.run_id].append(e)
    return [RunSegment(i, run_id, evs) for i, (run_id, evs) in enumerate(segments, 1)]


def select_run(events: Iterable[Event], which: str | None = None) -> list[Event]:
    """The events of the run ``which`` names: ``N`` (the Nth run of the log, 1-based; ``-1`` the last, ``-2`` the one
    before), or a run id or a unique prefix of one (its latest segment); None: the last run started."""
    segs = runs(events)
    if not segs:
        return []
    if which is None:
        return segs[-1].events
    listing = "; ".join(f"{s.index}: {s.run_id}" for s in segs)
    n = cliutil.position(which, lambda prefix: any(s.run_id.startswith(prefix) for s in segs))
    if n is not None:
        if n == 0 or abs(n) > len(segs):
            raise ValueError(f"the event log holds {len(segs)} run(s) ({listing}); there is no run {which}")
        return segs[n - 1 if n > 0 else n].events
    ids = sorted({s.run_id for s in segs if s.run_id.startswith(which)})
    if len(ids) != 1:
        problem = "no run id starts with" if not ids else "more than one run id starts with"
        raise ValueError(f"{problem} {which!r} in the event log (runs: {listing})")
    return [s for s in segs if s.run_id == ids[0]][-1].events


def fold(events: Iterable[Event]) -> RunModel:
    m = RunModel()
    for e in events:
        m.apply(e)
    return m
