"""The pending deadline, and slow starts that are not stuck.

An attempt whose pod has not started within ``pending_timeout`` is diagnosed (:mod:`.slowstart`, from the pod and
the Events about it):

* a start that is slow but progressing — an image being pulled, a node being added by the cluster autoscaler —
  keeps waiting, up to ``start_timeout`` in all, and the attempt's log and live view say what for ("pulling image X
  for 3m05s", "waiting for scale-up: pod triggered scale-up: …"); it is diagnosed again every few seconds, so a
  scale-up that gives up (``NotTriggerScaleUp``) still fails early. Past ``start_timeout`` it fails as
  ``StartTimeout`` with what it was still waiting for.
* a pod that can never start (unschedulable, and the autoscaler will not add a node: ``NotTriggerScaleUp``) fails at
  ``pending_timeout`` with the autoscaler's message quoted; anything else as before (:func:`.classify.classify_pending`,
  or ``QuotaExceeded`` when a ResourceQuota refused the pods, :mod:`.admission`).

Reading Events takes ``list events``, an optional permission (``kannon k8s rbac`` prints it as a comment): without
it no start is known to progress, and the deadline is ``pending_timeout`` as before. The ticker thread compares local
clocks only; each diagnosis (an API call) runs in the pool. The deadline counts from the Job's creation or adoption,
or, for a Job held by an admission queue, from its admission (:meth:`.tracker.JobTracker._queued`). While such a
Job waits and its Workload has no message yet (Kueue writes it after the Job exists), the ticker has the Workload
read again a few times, backing off, so the attempt's log says why it waits.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from typing import Any

from kannon.backends.base import BackendError, Queued
from kannon.backends.kubernetes import admission, slowstart
from kannon.backends.kubernetes import classify as kc
from kannon.backends.kubernetes.attempt import Attempt, Phase
from kannon.backends.kubernetes.tracker import QUEUE_REREAD, JobTracker

log = logging.getLogger("kannon.kubernetes")
_SAY_AGAIN = 60.0  # seconds after which a slow start's log line is repeated with its new duration


def deadlines(pending_timeout: Any, start_timeout: Any) -> tuple[float, float]:
    """``(pending_timeout, start_timeout)`` in seconds, checked: positive numbers (``inf``: no deadline); a
    start_timeout below pending_timeout leaves slow starts no extra time."""
    out = []
    for name, value in (("pending_timeout", pending_timeout), ("start_timeout", start_timeout)):
        try:
            seconds = float(value)
        except (TypeError, ValueError):
            seconds = math.nan
        if not seconds > 0:  # NaN too
            flag = "--pending-timeout" if name == "pending_timeout" else "--k8s-start-timeout"
            raise BackendError(f"{name} must be a positive number of seconds, not {value!r} ({flag})")
        out.append(seconds)
    return out[0], max(out)


class PendingDeadlines(JobTracker):
    """The deadline ticker of :class:`K8sJobExecutor` (started by its ``start``)."""

    pending_timeout: float
    start_timeout: float  # >= pending_timeout (the executor makes it so)
    _events_denied: bool = False  # list events was refused once: said once, not asked again

    @property
    def _recheck(self) -> float:
        """Seconds between two diagnoses of a slow start (each is one events list)."""
        return min(15.0, max(0.25, self.pending_timeout / 4))

    def _tick(self) -> None:
        """Local deadlines only (no API calls): attempts not started within pending_timeout, or past a re-check;
        and running pods past ``follow_after``, whose log followers it starts."""
        interval = max(0.05, min(1.0, self.pending_timeout / 4, self.follow_after / 2 if self.follow_after > 0 else 1))
        while not self._stop.wait(interval):
            now = time.monotonic()
            due: list[tuple[Attempt, float]] = []
            reread: list[Attempt] = []
            with self._state:
                for a in self._by_key.values():
                    if a.phase is Phase.RUNNING and now >= a.follow_at:  # it still runs: worth following live
                        a.follow_at = math.inf
                        self.logs.start_follower(a)  # under the lock: a finish step sees it, or it never starts
                    waited = now - a.since
                    if a.phase is Phase.PENDING and a.queued_since is not None and now >= a.queue_check:
                        a.queue_check = math.inf  # one read at a time; _reread_queued arms the next
                        reread.append(a)
                    if a.phase is not Phase.PENDING or a.queued_since is not None or waited < self.pending_timeout:
                        continue
                    if self._settling(a):
                        continue  # its end is decided (or a preemption's pods are going): not a failure to start
                    if math.isinf(a.start_check) or (now < a.start_check and waited < self.start_timeout):
                        continue  # a diagnosis runs, or the next one is not due
                    a.start_check = math.inf
                    due.append((a, waited))
            for a, waited in due:
                self._submit(functools.partial(self._pending_timed_out, a, waited))
            for a in reread:
                self._submit(functools.partial(self._reread_queued, a))

    def _reread_queued(self, attempt: Attempt) -> None:
        """In the pool: read a queued Job's Workload again while Kueue has not said why it waits; say it once known."""
        why = self._queue_reason(attempt)
        with self._state:
            if attempt.phase is not Phase.PENDING or attempt.queued_since is None or attempt.queue_why is not None:
                return  # admitted or ended meanwhile, or already said
            if why is None:
                attempt.queue_reads += 1
                if attempt.queue_reads < len(QUEUE_REREAD) and not self._workloads_unreadable:
                    attempt.queue_check = time.monotonic() + QUEUE_REREAD[attempt.queue_reads]
                return
            attempt.queue_why = why
            line = f"kannon: Job {attempt.name} queued by admission: {why}"
            self._say(attempt, line)
            self.emit(Queued(attempt.launch.key, True, why))
        log.info("%s", line.removeprefix("kannon: "))
        self.logs.write_log(attempt, [line], append=True)

    def _pending_timed_out(self, attempt: Attempt, waited: float) -> None:
        """In the pool: keep waiting for a slow start, or fail the attempt with why it did not start."""
        with self._state:
            pods = [p for p in self._pods_of(attempt.name, attempt.uid) if p.metadata.name not in attempt.stale_pods]
        pod = pods[-1] if pods else None
        try:
            verdict = slowstart.diagnose(pod, self._events_about(pod.metadata.name) if pod is not None else [], waited)
        except Exception:  # never leave the attempt without a deadline: classified as without events
            log.exception("could not diagnose the start of Job %s", attempt.name)
            verdict = None
        if isinstance(verdict, slowstart.Waiting) and waited < self.start_timeout:
            self._still_starting(attempt, verdict, waited)
            return
        if isinstance(verdict, slowstart.Waiting):
            outcome = slowstart.start_timed_out(verdict, waited, self.start_timeout)
        elif verdict is not None:
            outcome = verdict
        else:
            outcome = kc.classify_pending(pod, waited)
            if pod is None and (refused := admission.quota_refusal(self._events_about(attempt.name))):
                outcome = kc.Outcome(None, f"not running after {waited:.0f} s: waited for quota capacity that never "
                                     f"freed ({refused}); raise the namespace's ResourceQuota, lower the task's "
                                     "cpu/memory hints, or raise pending_timeout", "QuotaExceeded")  # fmt: skip
        if not self._still_pending(attempt):
            return
        with self._state:  # it may have started, or gone back to its queue, while the events were read
            claimed = (attempt.phase is Phase.PENDING and attempt.queued_since is None and not self._settling(attempt)
                       and attempt.end())  # fmt: skip
        if claimed:
            self._fail_and_delete(attempt, outcome, pod)

    def _still_pending(self, attempt: Attempt) -> bool:
        """Read the Job once before failing its attempt: the Job stream may lag (it is ordered against nothing else),
        and a Job that has ended, is ending or went back to its queue meanwhile is not a failure to start. Its watch
        event follows; until then the deadline is re-armed (the next check is a re-check, not the first)."""
        try:
            job = self._read_job(attempt.name)
        except Exception as e:  # the API is unwell: decide on what the watch told us, as before
            log.debug("cannot read Job %s before its pending deadline: %s", attempt.name, e)
            return True
        if job is not None and job.metadata.uid != attempt.uid:
            return True  # a Job of the same name that is not this attempt's: as before
        if job is not None and kc.job_terminal(job) is None and not kc.job_ending(job) and not admission.suspended(job):
            return True  # (a deleted Job is ended by the watch's DELETED: JobDeleted, not this deadline)
        with self._state:
            if attempt.phase is Phase.PENDING:
                attempt.start_check = time.monotonic() + self._recheck
        return False

    def _still_starting(self, attempt: Attempt, verdict: slowstart.Waiting, waited: float) -> None:
        """A slow start goes on: say what it waits for (when that changes, and once a minute), check again later."""
        now = time.monotonic()
        line = (f"kannon: not started after {waited:.0f} s: {verdict.describe()} (a slow start: kannon waits up to "
                f"start_timeout, {self.start_timeout:.0f} s)")  # fmt: skip
        with self._state:
            if attempt.phase is not Phase.PENDING:
                return  # it started (or ended) meanwhile: nothing to say
            attempt.start_check = now + self._recheck
            say = attempt.start_wait != verdict.what or now - attempt.start_said >= _SAY_AGAIN
            if say:
                attempt.start_wait, attempt.start_said = verdict.what, now
                self._say(attempt, line)
        if say:
            log.info("%s %s: %s", attempt.launch.family, attempt.launch.task_id, line.removeprefix("kannon: "))
            self.logs.write_log(attempt, [line], append=True)

    def _events_about(self, name: str) -> list[Any]:
        """The Events about the object ``name`` (a pod, or a Job: field selector ``involvedObject.name``, so the cost
        does not grow with the namespace's events); none when ``list events`` is refused."""
        from kubernetes.client.rest import ApiException

        if self._events_denied:
            return []
        try:
            found = self.api.call("list", "events", self._core.list_namespaced_event, self.namespace,
                                  field_selector=f"involvedObject.name={name}",
                                  _request_timeout=(5, 10))  # fmt: skip
        except (BackendError, ApiException, OSError) as e:  # optional: refused, or the API server is unwell
            if "permission denied" in str(e):
                self._events_denied = True
                log.warning("cannot list events (%s): pods that are still pulling their image or waiting for a node "
                            "fail at pending_timeout like stuck ones; grant the optional `list events` (kannon k8s "
                            "rbac) to wait for them up to start_timeout", e)  # fmt: skip
            else:
                log.debug("cannot list the events of %s: %s", name, e)
            return []
        return list(found.items or [])
