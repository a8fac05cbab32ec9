"""The Executor contract: everything a backend implements, and the records it exchanges with the core.

A backend receives a fully prepared :class:`Launch` (argv built by the core, env, hints, labels) and reports what
happened through the ``report`` callback it was given in :meth:`Executor.start`: :class:`Started` when the child
is really running, :class:`LogLine` for live output (optional), and exactly one :class:`Finished` per launch. The
core owns the loop, retries, deadlines and bookkeeping; backends know nothing of gokart.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from kannon.childresult import ChildResult
from kannon.hints import Hints

if TYPE_CHECKING:
    from kannon.lease import FileLease

SpecTransport = Literal["local", "workspace", "inline"]


@dataclass(frozen=True)
class RunInfo:
    """What a backend may know about the run as a whole."""

    run_id: str  # deterministic per root task and workspace: a rerun after a crash has the same id (re-attach)
    run_dir: Path  # local directory for this run's logs and (local transport) specs
    follow_logs: bool = False  # stream child output as LogLine events
    invocation_id: str = ""  # one per build() call, sortable by start time: the lease holder, per-invocation logs
    # Values that must never travel in clear text (env_to_inherit, the spec key): each backend delivers them to
    # every child as environment variables by its own safe means, under Launch.env. Never in a repr.
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Launch:
    """Everything needed to start one attempt of one bullet."""

    key: str  # unique per attempt within the run; the handle for cancel() and events
    run_id: str
    task_id: str  # gokart unique id (32 hex chars)
    family: str  # task class name
    attempt: int  # 1-based
    child_args: tuple[str, ...]  # arguments after `python -m kannon`; built only by kannon.handoff
    env: Mapping[str, str]
    hints: Hints
    log_path: Path  # where the backend keeps this attempt's output
    labels: Mapping[str, str] = field(default_factory=dict)

    def argv(self, python: str) -> list[str]:
        """The child command line for an interpreter path valid where the child runs."""
        return [python, "-m", "kannon", *self.child_args]


@dataclass(frozen=True)
class Started:
    key: str
    where: str  # "pid 1234", "pod kannon-ab12-...", "container 3f2a..."
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Queued:
    """Before ``Started``: the child waits in the cluster's admission queue (``queued``), or left it (admitted).

    A queued child does not use one of the core's ``max_parallel`` slots; :meth:`Executor.submit_limit` caps how many
    children may be launched in all (see docs/kubernetes.md, Kueue)."""

    key: str
    queued: bool
    reason: str = ""
    at: float = field(default_factory=time.time)


@dataclass(frozen=True)
class LogLine:
    key: str
    line: str


@dataclass(frozen=True)
class Finished:
    """The end of one launch. ``exit_code`` 0 and no ``reason`` means the child says it succeeded."""

    key: str
    exit_code: int | None
    reason: str | None = None  # classified, human-readable, with a hint where one helps
    failure_class: str | None = None  # stable token: "OOMKilled", "Evicted", "ImagePull", "Cancelled", ...
    infra: bool = False  # infrastructure failure: retried without spending the task's own retries
    log_tail: tuple[str, ...] = ()
    where: str | None = None
    at: float = field(default_factory=time.time)
    # The child's own record of the attempt (kannon.childresult), when it wrote one the backend could read: its
    # outcome, what it used, the dynamic dependencies it requested. None: fall back to the exit code and the log.
    result: ChildResult | None = None

    @property
    def ok(self) -> bool:
        return self.exit_code == 0 and self.failure_class is None


ExecutorEvent = Started | Queued | LogLine | Finished
Report = Callable[[ExecutorEvent], None]


class BackendError(Exception):
    """A backend cannot be used as configured (engine unreachable, bad template, missing permission, ...).

    The message says what to do; the core prints it and launches nothing more.
    """


class LeaseHeld(BackendError):
    """Another master holds this run's lease; ``holder`` says who (host, pid, invocation, since when).

    A BackendError: nothing was launched, and the message is the one line to print."""

    def __init__(self, holder: str) -> None:
        super().__init__(f"another kannon master is running this pipeline: {holder}")
        self.holder = holder


class Executor(ABC):
    """A place where bullets run. Implement ``launch`` and ``cancel``; override the rest as needed."""

    name: ClassVar[str] = "executor"
    #: interpreter path for the child's argv, valid where the child runs
    python: str = "python"
    #: parallelism when Kannon(max_parallel=None)
    default_parallelism: int = 32
    #: True when this backend delivers ``RunInfo.secrets`` to every child by its own safe means (the process
    #: environment, a 0600 file, a Kubernetes Secret), under ``Launch.env``. A backend that does not declare it
    #: (one written before secrets existed) keeps working: the core puts the secrets in each ``Launch.env``
    #: instead, and says so once per run.
    delivers_secrets: ClassVar[bool] = False

    def __init__(self) -> None:
        self._lease: FileLease | None = None
        self._report: Report | None = None
        self.run: RunInfo | None = None
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._live: set[str] = set()  # keys launched and not yet Finished

    # -- lifecycle -----------------------------------------------------------------------------------------
    def acquire_lease(self, run: RunInfo, wait: float | None) -> None:
        """Hold the run's lease until :meth:`release_lease`: only the holder may launch, cancel or sweep the run's
        children. ``wait`` None: raise LeaseHeld at once if another master holds it; else wait up to that many
        seconds. Called before :meth:`start` (set up any client needed here).

        Default: an ``flock`` on ``<run_dir>.lease`` (see kannon.lease), which a SIGKILLed holder loses at once.
        """
        from kannon.lease import FileLease, LeaseBusy

        lease = FileLease(run.run_dir.with_name(run.run_dir.name + ".lease"))
        try:
            lease.acquire(run.invocation_id, wait)
        except LeaseBusy as e:
            raise LeaseHeld(e.holder) from None
        self._lease = lease

    def release_lease(self) -> None:
        """Give the lease up (idempotent). Called at the very end, after :meth:`close`."""
        lease, self._lease = getattr(self, "_lease", None), None
        if lease is not None:
            lease.release()

    def start(self, run: RunInfo, report: Report) -> None:
        """Called once before anything is launched. ``report`` is thread-safe and never blocks.

        Subclasses call ``super().__init__()`` in their constructor and ``super().start(...)`` here."""
        self.run, self._report = run, report

    def prepare(self, modules: Sequence[str]) -> None:  # noqa: B027 - optional hook
        """Called after planning with the modules that define bullet classes (a chance to pre-import/warm up)."""

    def validate(self, family: str, hints: Hints) -> list[str]:
        """Plan-time problems with ``hints`` on this backend (each a sentence saying what to change)."""
        return []

    def submit_limit(self, max_parallel: int) -> int:
        """How many children may be launched at once, admission-queued ones included (default: ``max_parallel``)."""
        return max_parallel

    def spec_transport(self, size: int) -> SpecTransport:
        """Where the core should put a hand-off spec of ``size`` bytes so the child can read it."""
        return "local"

    @abstractmethod
    def launch(self, launch: Launch) -> None:
        """Start the child. Must not block on the child; report Started/Finished later."""

    def flush(self) -> list[tuple[str, Exception]]:
        """Called by the core when it has nothing more to hand over for now (before it waits): a backend whose
        ``launch`` holds launches back to start several together (kannon.pack) starts them here. Returns the keys
        that could not be launched, each with why (as ``launch`` would have raised it)."""
        return []

    @abstractmethod
    def cancel(self, key: str) -> None:
        """Ask the child of ``key`` to stop; a Finished(failure_class="Cancelled") follows."""

    def cancel_all(self, timeout: float = 30.0) -> list[str]:
        """Stop every child of this run and wait until they are gone; returns keys not confirmed gone."""
        for key in self.live_keys():
            self.cancel(key)
        deadline = time.monotonic() + timeout
        with self._cond:
            while self._live and time.monotonic() < deadline:
                self._cond.wait(timeout=max(0.0, deadline - time.monotonic()))
            return sorted(self._live)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (watch threads, clients). Called once at the end of the run."""

    # -- helpers for implementations -------------------------------------------------------------------------
    def live_keys(self) -> list[str]:
        with self._lock:
            return sorted(self._live)

    def track(self, key: str) -> None:
        """Mark ``key`` as running (call from launch) so cancel_all() waits for it."""
        with self._lock:
            self._live.add(key)

    def emit(self, event: ExecutorEvent) -> None:
        """Report an event to the core; a Finished also marks the key as gone for cancel_all()."""
        if isinstance(event, Finished):
            with self._cond:
                self._live.discard(event.key)
                self._cond.notify_all()
        if self._report is not None:
            self._report(event)


def tail_lines(path: Path, n: int = 20, max_bytes: int = 64 * 1024) -> tuple[str, ...]:
    """The last ``n`` lines of a log file (reads at most ``max_bytes`` from its end), as written: unshaped, for
    classification (the child's reason line is among them)."""
    from kannon.logtail import last_lines

    return tuple(last_lines(path, max_bytes)[-n:])


__all__ = [
    "BackendError",
    "Executor",
    "ExecutorEvent",
    "Finished",
    "Launch",
    "LeaseHeld",
    "LogLine",
    "Queued",
    "Report",
    "RunInfo",
    "SpecTransport",
    "Started",
    "tail_lines",
]
