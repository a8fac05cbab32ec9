"""The pending deadline: an attempt whose pod has not started within ``pending_timeout`` fails, with why it did not.

The ticker thread compares local clocks only (no API call on it); the diagnosis of an attempt that is due runs in
the pool. The deadline counts from the Job's creation or adoption, or, for a Job held by an admission queue, from
its admission (:mod:`.admission`, tracked by :meth:`.tracker.JobTracker._queued`).
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

from kannon.backends.kubernetes import admission
from kannon.backends.kubernetes import classify as kc
from kannon.backends.kubernetes.attempt import Attempt, Phase
from kannon.backends.kubernetes.tracker import JobTracker

if TYPE_CHECKING:
    from kubernetes.client import V1Pod


class PendingDeadlines(JobTracker):
    """The deadline ticker of :class:`K8sJobExecutor` (started by its ``start``)."""

    pending_timeout: float

    def _tick(self) -> None:
        """Local deadlines only (no API calls): attempts not started within pending_timeout."""
        interval = max(0.05, min(1.0, self.pending_timeout / 4))
        while not self._stop.wait(interval):
            now = time.monotonic()
            with self._state:
                due = [a for a in self._by_key.values()
                       if a.phase is Phase.PENDING and a.queued_since is None and now - a.since >= self.pending_timeout
                       and a.end()]  # fmt: skip
            for a in due:
                pods = [p for p in self._pods_of(a.name, a.uid) if p.metadata.name not in a.stale_pods]
                pod = pods[-1] if pods else None
                self._submit(functools.partial(self._pending_timed_out, a, pod, now - a.since))

    def _pending_timed_out(self, attempt: Attempt, pod: V1Pod | None, waited: float) -> None:
        outcome = kc.classify_pending(pod, waited)
        if pod is None and (refused := admission.quota_refusal(self._core, self.namespace, attempt.name)):
            outcome = kc.Outcome(None, f"not running after {waited:.0f} s: waited for quota capacity that never freed "
                                 f"({refused}); raise the namespace's ResourceQuota, lower the task's cpu/memory "
                                 "hints, or raise pending_timeout", "QuotaExceeded")  # fmt: skip
        self._fail_and_delete(attempt, outcome, pod)
