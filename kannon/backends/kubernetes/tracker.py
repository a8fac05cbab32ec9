"""What the watches mean for the run's attempts: the reconciliation half of the executor.

Watch threads call ``_on_job`` / ``_on_pod`` (and the re-list variants); ``_evaluate`` turns the latest Job and pod
state into a step (Started, fail fast, finish); terminal steps that need API calls (pod list, log read, delete) run
in the pool, never on a watch thread. The requests by name are :mod:`.jobcalls`; the pending deadline and slow starts
are :mod:`.pending`; :class:`K8sJobExecutor` (:mod:`.executor`) adds construction, launch and cancel on top.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import functools
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from kannon import logtail
from kannon.backends.base import BackendError, Finished, LogLine, Queued, Started, tail_lines
from kannon.backends.kubernetes import admission
from kannon.backends.kubernetes import classify as kc
from kannon.backends.kubernetes.attempt import WATCHED, Attempt, Phase
from kannon.backends.kubernetes.jobcalls import JobCalls
from kannon.backends.kubernetes.logs import JobLogs
from kannon.backends.kubernetes.names import ANNOTATION_TASK, LABEL_ATTEMPT, LABEL_TASK, job_of_pod, owned_by
from kannon.backends.kubernetes.watch import Watcher, shutdown_response

if TYPE_CHECKING:
    from kannon.childresult import ChildResult
    from kubernetes.client import V1Job, V1Pod

log = logging.getLogger("kannon.kubernetes")
# How long a Job's end may precede, on the Job stream, the pod changes that explain it on the pod stream: the API
# server orders each watch stream, never two against each other, and a deleted pod is in no list.
_POD_STREAM_LAG = 15.0
# Seconds between reads of a queued Job's Workload while it has no message yet (then none: a read per queued Job is
# not repeated for the whole wait, which at scale would crowd the API's rate limit).
QUEUE_REREAD = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)

class JobTracker(JobCalls):
    """Attempt bookkeeping and watch reconciliation shared by :class:`K8sJobExecutor` (which sets these up)."""

    container: str | None
    cleanup_leftovers: bool
    api_client: Any
    logs: JobLogs
    # Seconds a pod runs before its log is followed live; one that ends sooner has its log read once at its end, its
    # lines reaching the run then (before its Finished). A follower is a thread and a stream per pod: most of the
    # master's per-task cost for short bullets, which gain nothing from being followed (docs/scale.md).
    follow_after: float = 1.0
    _workloads_unreadable: bool = False  # list workloads was refused (or no Kueue): not asked again

    def _init_tracking(self) -> None:
        self._state = threading.RLock()
        self._pods_changed = threading.Condition(self._state)  # a pod's new state is in the cache (_await_pod)
        self._by_name: dict[str, Attempt] = {}
        self._by_key: dict[str, Attempt] = {}
        self._pods: dict[str, dict[str, V1Pod]] = {}  # job name -> pod name -> last seen state (kept after DELETED)
        self._pods_deleted: dict[str, set[str]] = {}  # job name -> its pods seen DELETED (or missing from a re-list)
        # names of the Jobs of finished attempts: their late events are ignored. A finished attempt is dropped from
        # _by_name/_by_key (with its Job's and pods' last states), so that a run keeps nothing big per finished task
        self._done: set[str] = set()
        self._followers: list[threading.Thread] = []  # log followers of finished attempts, maybe still winding down
        self._leftovers: dict[str, V1Job] = {}  # task id -> a running Job of an earlier master of this run
        self._early: dict[str, V1Job] = {}  # job name -> its latest state seen while our create was in flight
        self._gone = {}
        self._fatal: BackendError | None = None
        self._stop = threading.Event()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._watchers: list[Watcher[Any]] = []
        self._batch = None
        self._core = None
        self._run_lease = None

    # -- helpers --------------------------------------------------------------------------------------------
    def _submit(self, step: Callable[[], Any]) -> None:
        assert self._pool is not None
        with contextlib.suppress(RuntimeError):  # pool shut down (close() raced a late event): nobody to tell
            self._pool.submit(step)

    # -- watch events -----------------------------------------------------------------------------------------
    def _note_leftover(self, job: V1Job) -> None:
        task = (job.metadata.annotations or {}).get(ANNOTATION_TASK) or (job.metadata.labels or {}).get(LABEL_TASK)
        if not task:
            return
        current = self._leftovers.get(task)
        attempt = int((job.metadata.labels or {}).get(LABEL_ATTEMPT, "0") or 0)
        if current is None or attempt >= int((current.metadata.labels or {}).get(LABEL_ATTEMPT, "0") or 0):
            if current is not None and self.cleanup_leftovers and self._pool is not None:
                self._pool.submit(self._delete_quietly, current.metadata.name)
            self._leftovers[task] = job

    def _on_job(self, kind: str, job: V1Job) -> None:
        name = job.metadata.name
        with self._state:
            attempt = self._by_name.get(name)
            if kind == "DELETED":
                gone = self._gone.pop(name, None)
                if gone is not None:
                    gone.set()
                for task, left in list(self._leftovers.items()):
                    if left.metadata.name == name:
                        del self._leftovers[task]
                self._early.pop(name, None)
                if attempt is None:  # a Job no attempt tracks (an earlier master's) is gone: so is what its pods left
                    self._pods.pop(name, None)
                    self._pods_deleted.pop(name, None)
                    self._done.add(name)  # its pods' late DELETED events are not cached again
                elif attempt.uid == job.metadata.uid:
                    self._deleted(attempt)
                return
            if attempt is not None and attempt.uid is None:
                # Our create has not answered yet: this may be our Job, or an earlier Job of the same name (a
                # rerun reuses names). Keep it; the create's answer (its uid) decides.
                self._early[name] = job
                return
            if attempt is not None and attempt.uid != job.metadata.uid:
                return  # an earlier Job of the same name (a previous master's attempt), not this attempt's
            if attempt is None and name in self._done:
                return  # a late event of a finished attempt's Job
            if attempt is None:
                left_task = (job.metadata.annotations or {}).get(ANNOTATION_TASK)
                if left_task and left_task in self._leftovers and kc.job_terminal(job) is not None:
                    del self._leftovers[left_task]  # finished by itself before anyone asked for it
                return
            attempt.job = job
        self._evaluate(attempt)

    def _deleted(self, attempt: Attempt) -> None:
        with self._state:
            cancelling = attempt.phase is Phase.CANCELLING
            if not attempt.end():
                return  # a finish step owns the attempt, or it is over (TTL cleanup)
        if cancelling:
            self._finish(attempt, self._cancelled(attempt))
            return
        self._finish(attempt, Finished(
            attempt.launch.key, None,
            f"the Job {attempt.name} was deleted by someone else before it finished (kubectl delete, a namespace "
            "cleanup, or the owner's garbage collection)", "JobDeleted",
            log_tail=tail_lines(attempt.launch.log_path), where=f"job {attempt.name}",
        ))  # fmt: skip

    def _cancelled(self, attempt: Attempt) -> Finished:
        return Finished(attempt.launch.key, None, "cancelled: the Job was deleted by kannon", "Cancelled",
                        log_tail=tail_lines(attempt.launch.log_path), where=f"job {attempt.name}")  # fmt: skip

    def _on_job_relist(self, jobs: list[V1Job]) -> None:
        present = {j.metadata.name: j for j in jobs}
        with self._state:
            missing = [a for n, a in self._by_name.items() if a.phase is not Phase.DONE and (
                n not in present or (a.uid is not None and present[n].metadata.uid != a.uid))]  # fmt: skip
            for name in [n for n in self._gone if n not in present]:
                self._gone.pop(name).set()
        for job in jobs:
            self._on_job("MODIFIED", job)
        for attempt in missing:  # deleted while no stream was open
            if attempt.job is not None or attempt.phase is Phase.CANCELLING:
                self._deleted(attempt)

    def _remember_pod(self, pod: V1Pod, deleted: bool = False) -> str | None:
        name = job_of_pod(pod)
        if name is None:
            return None
        with self._state:
            attempt = self._by_name.get(name)
            if (attempt is None and name in self._done) or (attempt is not None and attempt.phase is Phase.DONE):
                return None  # late events of a finished attempt: keep nothing
            self._pods.setdefault(name, {})[pod.metadata.name] = pod
            if deleted:
                self._pods_deleted.setdefault(name, set()).add(pod.metadata.name)
                if attempt is not None and pod.metadata.name in attempt.stale_pods and not self._settling(attempt):
                    attempt.since = max(attempt.since, time.monotonic())  # pending counts from the pods' going
            self._pods_changed.notify_all()
        return name

    def _pods_of(self, name: str, uid: str | None = None) -> list[V1Pod]:
        """The pods of Job ``name`` (of the Job with ``uid`` only: an earlier Job of that name had pods too)."""
        with self._state:
            pods = [p for p in self._pods.get(name, {}).values() if uid is None or owned_by(p, uid)]
        if len(pods) > 1:  # sorting one pod still parses its timestamp, once per watch event
            pods.sort(key=kc.created)
        return pods

    def _on_pod(self, kind: str, pod: V1Pod) -> None:
        name = self._remember_pod(pod, deleted=kind == "DELETED")
        if name is None:
            return
        with self._state:
            attempt = self._by_name.get(name)
        if attempt is not None:
            self._evaluate(attempt)

    def _on_pod_relist(self, pods: list[V1Pod]) -> None:
        present = {p.metadata.name for p in pods}
        with self._state:  # pods deleted while no stream was open
            for job, cached in self._pods.items():
                self._pods_deleted.setdefault(job, set()).update(n for n in cached if n not in present)
        for pod in pods:
            self._on_pod("MODIFIED", pod)

    def _on_fatal(self, error: BackendError) -> None:
        """A watch cannot go on (permission lost, API gone): nothing would ever finish what it tracks. Refuse new
        launches, and end every attempt with its Job deleted by name (list is what may have been lost)."""
        with self._state:
            if self._fatal is None:
                self._fatal = error
            # attempts still being created are ended by their create step, which sees _fatal once the Job exists
            lost = [a for a in self._by_key.values() if a.phase is not Phase.CREATING and a.end()]
        log.error("%s", error)
        for a in lost:
            self._submit(functools.partial(self._abandon, a, error))

    def _abandon(self, attempt: Attempt, error: BackendError) -> None:
        """End an attempt nobody can watch any more: its Job deleted and confirmed gone, or the reason it is not."""
        left = self._delete_confirmed(attempt.name)
        if left is None:
            cleanup = f"its Job {attempt.name} was deleted and confirmed gone"
        else:
            cleanup = f"its Job {attempt.name} is left running: {left}"
            log.warning("Job %s left running: %s", attempt.name, left)
        reason = f"kannon can no longer follow this attempt ({error}); {cleanup}"
        self.logs.write_log(attempt, [f"kannon: WatchLost: {reason}"], append=True)
        self._finish(attempt, Finished(attempt.launch.key, None, reason, "WatchLost",
                                       log_tail=tail_lines(attempt.launch.log_path), where=f"job {attempt.name}"))

    def _evaluate(self, attempt: Attempt) -> None:
        """Decide what the latest Job/pod state means for an attempt (called from watch threads)."""
        step: Callable[[], None] | None = None
        with self._state:
            if attempt.phase not in WATCHED:
                return  # creating (its answer evaluates), cancelling (DELETED ends it), or owned by a step
            job = attempt.job
            terminal = kc.job_terminal(job) if job is not None else None  # read once for both
            if self._queued(attempt, terminal):
                return  # held by an admission queue: no pod, and no pending deadline yet
            pods = [p for p in self._pods_of(attempt.name, attempt.uid) if p.metadata.name not in attempt.stale_pods
                    and not (attempt.preemptions and p.metadata.deletion_timestamp)]  # fmt: skip
            pod = pods[-1] if pods else None
            # which pods started matters only to a pending attempt (most events come after its start)
            running = [p for p in pods if kc.pod_started(p, self.container)] if attempt.phase is Phase.PENDING else []
            if running:
                attempt.to(Phase.RUNNING)
                attempt.pod_name = running[0].metadata.name
                if self.run is not None and self.run.follow_logs:
                    if self.follow_after > 0:  # the ticker starts it if the pod still runs then
                        attempt.follow_at = time.monotonic() + self.follow_after
                    else:  # under the lock: a finish step sees it, or it never starts
                        self.logs.start_follower(attempt)
                # under the lock, so that no Finished (emitted after taking it) can overtake this Started
                self.emit(Started(attempt.launch.key, where=attempt.where))
            if terminal is not None:
                attempt.to(Phase.ENDING)
                step = lambda: self._finish_terminal(attempt)  # noqa: E731
            elif pod is not None and (fast := kc.fail_fast(pod, self.python)) is not None:
                attempt.to(Phase.ENDING)
                step = lambda: self._fail_and_delete(attempt, fast, pod)  # noqa: E731
            elif pod is not None and kc.main_ended(pod, self.container):  # a sidecar keeps the pod (and Job) going
                attempt.to(Phase.ENDING)
                step = lambda: self._finish_terminal(attempt, ended=pod)  # noqa: E731
        if step is not None and self._pool is not None:
            self._submit(step)

    def _queued(self, attempt: Attempt, terminal: tuple[str, str | None, str | None] | None) -> bool:
        """Track admission (under the lock): True while the Job is held suspended by a queue (:mod:`.admission`).
        ``terminal``: the Job's terminal condition (``kc.job_terminal``)."""
        job = attempt.job
        now = time.monotonic()
        if terminal is not None:
            return False  # finished: whatever it waited for is over
        if admission.suspended(job):
            if attempt.queued_since is None:
                attempt.queued_since = now
                if attempt.phase is Phase.RUNNING:  # preempted: back to the queue, same Job, no retry spent
                    attempt.to(Phase.PENDING)
                    attempt.preemptions += 1
                    attempt.stale_pods.update(p.metadata.name for p in self._pods_of(attempt.name, attempt.uid))
                    attempt.pod_name = None
                self.emit(Queued(attempt.launch.key, True))  # the core frees its max_parallel slot
                self._submit(functools.partial(self._note_queued, attempt, attempt.preemptions))
            return True
        if attempt.queued_since is not None:
            attempt.queue_wait += now - attempt.queued_since
            attempt.queued_since = None
            attempt.since = now  # pending_timeout counts from admission, not from creation
            attempt.start_check, attempt.start_wait = 0.0, None  # and so does a slow start's diagnosis
            self.emit(Queued(attempt.launch.key, False))
            self._say(attempt, f"kannon: admitted after {attempt.queue_wait:.1f} s queued by admission")
        return False

    def _settling(self, attempt: Attempt) -> bool:
        """Under the lock: the attempt is on its way to an end that is not a failure to start, so no pending deadline
        runs: its Job carries an interim end condition (FailureTarget / SuccessCriteriaMet: the terminal one follows
        once its pods are gone), or pods that a preemption deleted are still terminating (with the Job controller's
        tracking finalizer a pod is counted before it goes, and a pod of a backoffLimit-0 Job counted failed ends it).
        Kueue readmits a preempted Job as soon as ``status.active`` is 0, before either happens."""
        if attempt.job is not None and kc.job_ending(attempt.job):
            return True
        cached, deleted = self._pods.get(attempt.name, {}), self._pods_deleted.get(attempt.name, set())
        return any(n in cached and n not in deleted and not kc.pod_terminal(cached[n]) for n in attempt.stale_pods)

    def _say(self, attempt: Attempt, line: str) -> None:
        """A note of kannon's in the attempt's log (kept ahead of the pod's output) and the live view."""
        attempt.notes.append(line)
        if self.run is not None and self.run.follow_logs:
            self.emit(LogLine(attempt.launch.key, line))

    def _note_queued(self, attempt: Attempt, preemptions: int) -> None:
        """Say why an attempt waits in the queue in its log (pool). Kueue creates the Workload, and then decides,
        after the Job exists: without a message yet, the ticker reads it again a few times (:mod:`.pending`)."""
        why = self._queue_reason(attempt)
        what = "preempted and requeued" if preemptions else "queued by admission"
        line = f"kannon: Job {attempt.name} {what} (spec.suspend=true)" + (f": {why}" if why else "")
        log.info("%s", line.removeprefix("kannon: "))
        with self._state:
            self._say(attempt, line)
            attempt.queue_why, attempt.queue_reads = why, 0
            if attempt.queued_since is not None and why:
                self.emit(Queued(attempt.launch.key, True, why))
            elif attempt.queued_since is not None and not self._workloads_unreadable:
                attempt.queue_check = time.monotonic() + QUEUE_REREAD[0]
        self.logs.write_log(attempt, [line], append=True)

    def _queue_reason(self, attempt: Attempt) -> str | None:
        """The Workload's message for a queued attempt (pool); None while there is none, or when Workloads cannot be
        read (an optional permission, or no Kueue): then they are not asked for again."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        if attempt.uid is None or self._workloads_unreadable:
            return None
        try:
            found = self.api.call("list", "workloads.kueue.x-k8s.io",
                                  client.CustomObjectsApi(self.api_client).list_namespaced_custom_object,
                                  *admission.WORKLOADS[:2], self.namespace, admission.WORKLOADS[2],
                                  label_selector=f"kueue.x-k8s.io/job-uid={attempt.uid}",
                                  _request_timeout=(5, 10))  # fmt: skip
        except (BackendError, ApiException, OSError, ValueError) as e:
            if "permission denied" in str(e) or getattr(e, "status", None) == 404:
                self._workloads_unreadable = True
            log.debug("cannot read the Workload of Job %s: %s", attempt.name, e)
            return None
        return admission.workload_reason(found)

    # -- terminal steps (run in the pool) -------------------------------------------------------------------
    def _fail_and_delete(self, attempt: Attempt, outcome: kc.Outcome, pod: V1Pod | None) -> None:
        try:
            self._delete(attempt.name)
        except Exception as e:
            attempt.notes.append(f"kannon: could not delete Job {attempt.name}: {e}")
        lines = [*attempt.notes, f"kannon: {outcome.failure_class}: {outcome.reason}"]
        self.logs.write_log(attempt, lines, append=True)
        where = f"pod {pod.metadata.name}" if pod is not None else f"job {attempt.name}"
        self._finish(attempt, Finished(attempt.launch.key, outcome.exit_code, outcome.reason, outcome.failure_class,
                                       outcome.infra, tuple(lines[-20:]), where))  # fmt: skip

    def _finish_terminal(self, attempt: Attempt, ended: V1Pod | None = None) -> None:
        """Finish an attempt whose Job ended, or whose pod's task container ``ended`` while a sidecar runs on: its
        exit code decides, and the Job is deleted (else the sidecar would keep it active until its deadline)."""
        try:
            job = attempt.job
            assert job is not None
            terminal = kc.job_terminal(job)
            complete = terminal is not None and terminal[0] == "Complete"
            pods = {p.metadata.name: p for p in self._pods_of(attempt.name, attempt.uid)
                    if p.metadata.name not in attempt.stale_pods}  # not a pod a preemption deleted
            pod = kc.succeeded(pods.values()) if complete else kc.culprit(pods.values(), self.container)
            if ended is not None:
                pod, status = ended, kc.container_status(ended, self.container)
                complete = status is not None and status.state.terminated.exit_code == 0
            elif pod is None or (not complete and not kc.pod_final(pod, self.container)):
                # the pods' last states travel on the other stream and may lag: read them once (failures only; for a
                # success the pod's name is all the log read needs). Cached states of deleted pods are kept.
                pods.update({p.metadata.name: p for p in self._list_job_pods(attempt.name)
                             if (attempt.uid is None or owned_by(p, attempt.uid))
                             and p.metadata.name not in attempt.stale_pods})  # fmt: skip
                pod = kc.succeeded(pods.values()) if complete else kc.culprit(pods.values(), self.container)
            failed_pods = job.status.failed if job.status is not None else None
            preempted = admission.suspended(job) or attempt.preemptions > 0
            if ended is None and not complete and failed_pods and not preempted and (
                    pod is None or not self._explains(pod)):  # fmt: skip
                # a pod failed, and neither the cache nor a list says how: it was deleted (preemption, eviction)
                # and its last states are still on their way on the pod stream
                pod = self._await_pod(attempt, None, self._explains) or pod
            if pod is not None and not attempt.started:
                attempt.pod_name = pod.metadata.name
                if kc.pod_started(pod, self.container):
                    self.emit(Started(attempt.launch.key, where=attempt.where))
            tail = self.logs.collect(attempt, pod, live=self.run is not None and self.run.follow_logs)
            where = f"pod {pod.metadata.name}" if pod is not None else f"job {attempt.name}"
            record = self._record(attempt, pod, complete)
            if ended is not None:
                self._delete_quietly(attempt.name)
            if complete:
                self._finish(attempt, Finished(attempt.launch.key, 0, log_tail=tail, where=where, result=record))
                return
            outcome = kc.classify_failure(job, pod, self.container, self.python, tail)
            if preempted:  # by its queue (admission.py): the failed pod is the one the preemption deleted
                outcome = admission.preempted_outcome(terminal[1] if terminal else None)
            self._finish(attempt, Finished(attempt.launch.key, outcome.exit_code, outcome.reason, outcome.failure_class,
                                           outcome.infra, tail, where, result=record))  # fmt: skip
        except Exception as e:  # never leave an attempt without its Finished
            log.exception("finishing Job %s failed", attempt.name)
            why = f"kannon could not read the result of Job {attempt.name}: {e}"
            self._finish(attempt, Finished(attempt.launch.key, None, why, "BackendError", where=f"job {attempt.name}"))

    def _record(self, attempt: Attempt, pod: V1Pod | None, complete: bool) -> ChildResult | None:
        """The child-result record from the task container's termination message. A succeeded Job's pod may come
        from a watch event older than its container's end (no ``terminated`` state yet; the pod's last event
        travels on the other stream): wait a little for the pod watch to bring it, then read the pod once."""
        if pod is None or not (complete or kc.pod_started(pod, self.container)):
            return None  # a container that never ran wrote nothing
        name = pod.metadata.name
        if not kc.pod_final(pod, self.container):
            pod = self._await_pod(attempt, name, lambda p: kc.pod_final(p, self.container)) or pod
        if not kc.pod_final(pod, self.container):
            pod = next((p for p in self._list_job_pods(attempt.name) if p.metadata.name == name), pod)
        return kc.termination_record(pod, self.container, attempt.launch)

    def _explains(self, pod: V1Pod) -> bool:
        return kc.disrupted(pod) or kc.pod_final(pod, self.container)

    def _await_pod(self, attempt: Attempt, name: str | None, explains: Callable[[V1Pod], bool]) -> V1Pod | None:
        """Wait (a pool thread) up to _POD_STREAM_LAG for the pod stream to bring a state that ``explains`` the end:
        pod ``name``'s, or with no name the culprit of the attempt's failed Job. None if it does not come."""
        def found() -> V1Pod | None:
            pods = [p for p in self._pods_of(attempt.name, attempt.uid)
                    if p.metadata.name not in attempt.stale_pods and name in (None, p.metadata.name)]  # fmt: skip
            pod = kc.culprit(pods, self.container) if name is None else next(iter(pods), None)
            return pod if pod is not None and explains(pod) else None

        deadline = time.monotonic() + _POD_STREAM_LAG
        with self._pods_changed:
            while (pod := found()) is None and not self._stop.is_set() and (left := deadline - time.monotonic()) > 0:
                self._pods_changed.wait(left)
        return pod

    def _forget(self, attempt: Attempt) -> None:
        """Drop a finished attempt from the tracking maps, with its Job's last state and the follow response (the
        caller holds the lock). Only its Job's name stays, so that late events of that Job are ignored."""
        if self._by_name.get(attempt.name) is attempt:
            del self._by_name[attempt.name]
        if self._by_key.get(attempt.launch.key) is attempt:
            del self._by_key[attempt.launch.key]
        self._done.add(attempt.name)
        self._early.pop(attempt.name, None)
        attempt.job, attempt.follow_resp = None, None
        if attempt.follower is not None:  # close() still joins it if it has not ended yet
            self._followers = [t for t in self._followers if t.is_alive()]
            self._followers.append(attempt.follower)

    def _finish(self, attempt: Attempt, finished: Finished) -> None:
        """Emit the attempt's one Finished (the caller claimed it with ``end()``)."""
        with self._state:
            if attempt.phase is Phase.DONE:
                return
            if attempt.phase is not Phase.ENDING:
                attempt.end()
            attempt.to(Phase.DONE)
            self._pods.pop(attempt.name, None)
            self._pods_deleted.pop(attempt.name, None)
            resp = attempt.follow_resp
            self._forget(attempt)
        if resp is not None:
            shutdown_response(resp)
        # Classified on the raw tail (the child's reason line is there); reported shaped, as on every backend.
        self.emit(dataclasses.replace(finished, log_tail=logtail.read_tail(attempt.launch.log_path)))
