"""The messages of the run's state machine (kannon.scheduler.state): events in, actions out, and the policy.

All plain frozen records: the loop, the master runner and the I/O pool build events; tests build them by hand.
"""

from __future__ import annotations

from dataclasses import dataclass

from kannon.backends.base import Finished, Queued, Started
from kannon.events import Event
from kannon.plan import Plan
from kannon.result import BuildResult

# Retrying these cannot help: the same spec, code and environment give the same answer.
NOT_RETRYABLE = frozenset({"BadSpec", "IdMismatch", "ImportFailed"})
RECANCEL_DELAY = 5.0  # a cancel the backend refused is tried again this much later


# -- events in -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Tick:
    """Time passed (timers may be due). Any event does the same; Tick carries nothing else."""


@dataclass(frozen=True)
class CancelRun:
    reason: str
    signum: int | None = None  # set when a signal asked for it: the build then raises Interrupted
    fatal: bool = False  # kannon itself broke: every task's reason says so


@dataclass(frozen=True)
class Prepared:
    key: str
    error: str | None = None  # the spec could not be written


@dataclass(frozen=True)
class LaunchFailed:
    key: str
    reason: str
    backend_error: bool = False  # the backend is unusable as configured: stop launching


@dataclass(frozen=True)
class CancelFailed:
    key: str
    error: str


@dataclass(frozen=True)
class Confirmed:
    key: str
    complete: bool
    error: str | None = None


@dataclass(frozen=True)
class MasterStarted:
    task_id: str


@dataclass(frozen=True)
class MasterDone:
    task_id: str
    ok: bool
    reason: str | None = None
    failure_class: str | None = None  # "Cancelled" when a signal interrupted it
    log_tail: tuple[str, ...] = ()


@dataclass(frozen=True)
class MasterRequested:
    """A master task's run() yielded tasks that are not all complete (dynamic dependencies): it stopped, and the
    master planned what it asked for. ``requested``: the unique ids of that yield; ``plan``: them and everything
    they need, pruned where complete (kannon.plan.plan_requested)."""

    task_id: str
    requested: tuple[str, ...]
    plan: Plan


@dataclass(frozen=True)
class BulletRequested:
    """The answer to ``PlanRequested``: the yielded tasks of a bullet's attempt, planned (or why they could not be)."""

    key: str
    requested: tuple[str, ...]
    plan: Plan | None
    error: str | None = None


StateEvent = Tick | CancelRun | Prepared | LaunchFailed | CancelFailed | Confirmed | MasterStarted | MasterDone | \
    MasterRequested | BulletRequested | Started | Queued | Finished  # fmt: skip


# -- actions out ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Prepare:
    """Make sure the hand-off spec of ``task_id`` exists, then answer ``Prepared(key)``."""

    key: str
    task_id: str


@dataclass(frozen=True)
class Launch:
    key: str
    task_id: str
    attempt: int


@dataclass(frozen=True)
class Cancel:
    key: str
    reason: str


@dataclass(frozen=True)
class Confirm:
    """Check the task's output (``complete()``), then answer ``Confirmed(key)``."""

    key: str
    task_id: str


@dataclass(frozen=True)
class RunMaster:
    task_id: str


@dataclass(frozen=True)
class Emit:
    event: Event


@dataclass(frozen=True)
class Done:
    result: BuildResult
    signum: int | None  # not None: a signal stopped the build


@dataclass(frozen=True)
class PlanRequested:
    """A bullet's child stopped at a yield of incomplete tasks: read their specs (id, plaintext sha256), rebuild and
    plan them, then answer ``BulletRequested(key)``."""

    key: str
    task_id: str
    attempt: int
    requested: tuple[tuple[str, str], ...]


Action = Prepare | Launch | Cancel | Confirm | RunMaster | PlanRequested | Emit | Done


@dataclass(frozen=True)
class Policy:
    max_parallel: int = 32  # running children (a child queued by the cluster's admission does not count)
    max_submitted: int | None = None  # launched children in all, queued ones included (None: max_parallel)
    retries: int = 0
    retry_delay: float = 1.0
    retry_delay_max: float = 60.0
    infra_retries: int = 3
    keep_going: bool = True
    max_dynamic_runs: int = 100  # a task stopped by a yield of incomplete tasks is run again at most this often

    def backoff(self, spent: int) -> float:
        """Delay before the retry that follows the ``spent``-th counted failure: doubling, capped."""
        return float(min(self.retry_delay_max, self.retry_delay * 2 ** (spent - 1)))
