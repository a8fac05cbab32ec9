"""BuildResult: what happened to every task of a build."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from kannon import logtail
from kannon.childresult import Usage


class Status(str, enum.Enum):
    COMPLETE = "complete"  # already complete before the run: nothing to do
    SUCCEEDED = "succeeded"  # ran in this build and its output is confirmed
    FAILED = "failed"
    UPSTREAM_FAILED = "upstream_failed"  # not run because something it needs failed
    CANCELLED = "cancelled"  # stopped or never started because the run was cancelled / failed fast
    PENDING = "pending"  # still waiting (only seen in live views)
    RUNNING = "running"


class Placement(str, enum.Enum):
    MASTER = "master"
    BULLET = "bullet"
    COMPLETE = "complete"  # pruned at plan time


@dataclass(slots=True)  # one per attempt of every task, held to the end of the run
class Attempt:
    number: int
    launched_at: float
    started_at: float | None = None
    finished_at: float | None = None
    exit_code: int | None = None
    reason: str | None = None
    failure_class: str | None = None
    infra: bool = False
    where: str | None = None
    log_tail: tuple[str, ...] = ()
    queued_at: float | None = None  # ready, but waited for a free slot (or for another master task) until launched_at
    requested: tuple[str, ...] = ()  # dynamic: this attempt stopped at a yield of these incomplete tasks
    usage: Usage | None = None  # what the attempt used, from the child's record (bullets; None when it wrote none)
    admission_wait: float = 0.0  # seconds held in the cluster's admission queue (Kueue), every stint summed
    admission_reason: str | None = None  # the queue's latest word on why (the Workload's condition message)

    @property
    def duration(self) -> float | None:
        if self.finished_at is None:
            return None
        return self.finished_at - (self.started_at or self.launched_at)


@dataclass(slots=True)
class TaskRecord:
    task_id: str
    family: str
    params: str
    placement: Placement
    status: Status
    deps: tuple[str, ...] = ()
    attempts: list[Attempt] = field(default_factory=list)
    reason: str | None = None
    requested_by: str | None = None  # dynamic: planned because this task's run() yielded it (or what it needs)
    requested: tuple[str, ...] = ()  # dynamic: the tasks this task's run() yielded, in the order asked
    requested_resources: dict[str, str] = field(default_factory=dict)  # the hints' cpu/memory, as written
    memory_grown: tuple[str, ...] = ()  # OOM growth: the memory hint before the first step, then after each

    @property
    def usage(self) -> Usage | None:
        """What the last attempt that reported its use used (issue 17); None when no attempt did."""
        for a in reversed(self.attempts):
            if a.usage is not None:
                return a.usage
        return None

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None

    @property
    def duration(self) -> float | None:
        if not self.attempts or self.attempts[-1].finished_at is None:
            return None
        return self.attempts[-1].finished_at - self.attempts[0].launched_at

    def describe(self) -> str:
        return f"{self.family}({self.params}) [{self.task_id}]"


@dataclass
class BuildResult:
    run_id: str
    backend: str
    tasks: dict[str, TaskRecord]
    root_id: str
    started_at: float
    finished_at: float | None = None
    run_dir: str | None = None
    cancelled: bool = False
    invocation_id: str = ""  # this build() call (logs are under <run_dir>/logs/<invocation_id>/)

    def by_status(self, status: Status) -> list[TaskRecord]:
        return [t for t in self.tasks.values() if t.status == status]

    @property
    def failed(self) -> list[TaskRecord]:
        return self.by_status(Status.FAILED)

    @property
    def ok(self) -> bool:
        return not self.cancelled and all(t.status in (Status.COMPLETE, Status.SUCCEEDED) for t in self.tasks.values())

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for t in self.tasks.values():
            out[t.status.value] = out.get(t.status.value, 0) + 1
        return out

    @property
    def wall_time(self) -> float | None:
        return None if self.finished_at is None else self.finished_at - self.started_at


class KannonBuildError(Exception):
    """A build finished with failed (or cancelled) tasks; ``.result`` has every task's record."""

    def __init__(self, result: BuildResult) -> None:
        self.result = result
        super().__init__(format_failures(result))


def format_failures(result: BuildResult, tail: int = 20) -> str:
    failed = result.failed
    lines = []
    if result.cancelled:
        lines.append(f"kannon run {result.run_id} was cancelled.")
    if failed:
        lines.append(f"{len(failed)} task(s) failed in kannon run {result.run_id} (backend {result.backend}):")
    for rec in failed:
        last = rec.last
        where = rec.placement.value
        if last is not None and last.where:
            where += f" ({last.where})"
        lines.append("")
        lines.append(f"  {rec.family} {rec.task_id}")
        lines.append(f"    params:   {rec.params}")
        lines.append(f"    ran in:   {where}, {len(rec.attempts)} attempt(s)")
        code = f"exit code {last.exit_code}" if last is not None and last.exit_code is not None else "no exit code"
        lines.append(f"    reason:   {rec.reason or (last.reason if last else None) or 'unknown'} ({code})")
        log = logtail.shape(last.log_tail)[-tail:] if last is not None else ()  # same shape from every backend
        if log:
            lines.append(f"    last {len(log)} log line(s):")
            lines.extend("      | " + line for line in log)
    upstream = result.by_status(Status.UPSTREAM_FAILED)
    if upstream:
        lines.append("")
        lines.append(f"  {len(upstream)} task(s) not run because something they need failed: "
                     + ", ".join(sorted({t.family for t in upstream})))  # fmt: skip
    return "\n".join(lines)
