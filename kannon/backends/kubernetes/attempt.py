"""One attempt's life as an explicit state machine, instead of flags that can contradict each other.

::

    CREATING ──▶ PENDING ──▶ RUNNING ──▶ ENDING ──▶ DONE
       │            │           │          ▲
       └────────────┴───────────┴─▶ CANCELLING

* CREATING: the create call runs in the backend's pool (``launch`` never blocks); no uid yet.
* PENDING: the Job exists (created or adopted); its pod has not started. The pending deadline counts from here,
  or, for a Job held suspended by an admission queue (Kueue), from its admission; a preempted (re-suspended) Job goes
  back from RUNNING to PENDING, queued again (:mod:`.admission`). A start that is slow but progressing (an image
  pull, a cluster scale-up) stays PENDING past the deadline, up to ``start_timeout`` (:mod:`.pending`).
* RUNNING: the task's container started; ``Started`` was emitted.
* CANCELLING: kannon deleted the Job (or will, once its create answers); the watch's DELETED ends it.
* ENDING: one terminal step (finish, fail fast, pending timeout, cancelled, watch lost) owns the attempt.
* DONE: its one ``Finished`` was emitted; later events are ignored.

Every transition happens under the executor's lock; :meth:`Attempt.to` refuses any other.
"""

from __future__ import annotations

import enum
import math
import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from kannon.backends.base import Launch

if TYPE_CHECKING:
    from kubernetes.client import V1Job

class Phase(enum.Enum):
    CREATING = "creating"
    PENDING = "pending"
    RUNNING = "running"
    CANCELLING = "cancelling"
    ENDING = "ending"
    DONE = "done"

_NEXT: dict[Phase, frozenset[Phase]] = {
    Phase.CREATING: frozenset({Phase.PENDING, Phase.CANCELLING, Phase.ENDING}),
    Phase.PENDING: frozenset({Phase.RUNNING, Phase.CANCELLING, Phase.ENDING}),
    Phase.RUNNING: frozenset({Phase.PENDING, Phase.CANCELLING, Phase.ENDING}),  # -> PENDING: preempted (requeued)
    Phase.CANCELLING: frozenset({Phase.ENDING}),
    Phase.ENDING: frozenset({Phase.DONE}),
    Phase.DONE: frozenset(),
}
#: phases in which watch events still decide something about the attempt
WATCHED = frozenset({Phase.PENDING, Phase.RUNNING})

class BadTransition(RuntimeError):
    pass

@dataclass(eq=False)
class Attempt:
    """One launched (or adopted) Job and what the watches told us about it."""

    launch: Launch
    name: str
    since: float  # monotonic time the Job was created / adopted: the pending deadline counts from here
    phase: Phase = Phase.CREATING
    job: V1Job | None = None
    uid: str | None = None  # of the Job this attempt created or adopted; None while its create is in flight
    adopted: str | None = None  # why an existing Job was adopted instead of created
    replaced: str | None = None  # why an existing Job of the same task was deleted instead of adopted
    pod_name: str | None = None  # the pod that started (set once)
    follower: threading.Thread | None = None
    follow_at: float = math.inf  # monotonic time its log is followed from if it still runs (.pending's ticker)
    follow_resp: Any = None
    followed_to_end: bool = False
    notes: list[str] = field(default_factory=list)
    queued_since: float | None = None  # monotonic time the Job was last seen suspended by admission; None: not queued
    queue_wait: float = 0.0  # seconds spent queued by admission so far (every admission wait of this attempt)
    preemptions: int = 0
    # why the queue holds it (the Workload's message), and when it is read again while unknown (inf: not again)
    queue_why: str | None = None
    queue_check: float = math.inf
    queue_reads: int = 0
    stale_pods: set[str] = field(default_factory=set)  # pods of an admission that was preempted: not this run's
    # slow starts (.pending): when the next diagnosis is due past pending_timeout (inf while one runs), and what the
    # start was last said to wait for (a pull, a scale-up) and when
    start_check: float = 0.0
    start_wait: str | None = None
    start_said: float = 0.0

    def to(self, phase: Phase) -> None:
        if phase not in _NEXT[self.phase]:
            raise BadTransition(f"attempt {self.launch.key} ({self.name}): {self.phase.name} -> {phase.name}")
        self.phase = phase

    def cancel_failed(self, before: Phase) -> None:
        """The cancel's delete did not happen: back to being watched (unless something else ended it meanwhile)."""
        if self.phase is Phase.CANCELLING and before in WATCHED:
            self.phase = before

    def end(self) -> bool:
        """Claim the attempt for a terminal step; False when another step owns it or it is over."""
        if self.phase in (Phase.ENDING, Phase.DONE):
            return False
        self.to(Phase.ENDING)
        return True

    @property
    def started(self) -> bool:
        return self.pod_name is not None

    @property
    def where(self) -> str:
        if self.pod_name is None:
            return f"job {self.name}"
        if self.adopted:
            return f"pod {self.pod_name} (adopted)"
        return f"pod {self.pod_name}" + (" (replaced a changed Job)" if self.replaced else "")
