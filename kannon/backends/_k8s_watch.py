"""What a run's Jobs and pods are doing: label-selected watches, and what a finished or stuck pod means.

Used only by :mod:`kannon.backends.kubernetes`. Two halves:

* classification — pure functions from the client's ``V1Job`` / ``V1Pod`` models to an :class:`Outcome`
  (exit code, stable failure class, a reason that says what to do, and whether it was the infrastructure's fault);
* :class:`Watcher` — one list+watch loop over one resource with a label selector: tracks ``resourceVersion``
  (bookmarks included), re-lists on 410 Gone, reconnects when the server ends the stream or the connection drops.
  Its request count depends on the stream timeout, never on how many objects there are or how long they run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kannon import exitcodes
from kannon.backends.base import BackendError

if TYPE_CHECKING:
    from kubernetes.client import V1ContainerStatus, V1Job, V1Pod

log = logging.getLogger("kannon.kubernetes")

#: waiting reasons that never resolve by themselves in a useful time: fail the attempt at once (infra: a retry may
#: land on a node / moment where the registry answers)
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
#: the pod spec refers to something missing (secret, config map, ...): the user has to fix it
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
#: DisruptionTarget condition reasons (pod disruption conditions, Kubernetes >= 1.26)
_PREEMPTED = frozenset({"PreemptionByScheduler", "PreemptionByKubeScheduler"})
_EVICTED = frozenset({"EvictionByEvictionAPI", "TerminationByKubelet"})


@dataclass(frozen=True)
class Outcome:
    """How one attempt ended, in :class:`kannon.backends.base.Finished` terms."""

    exit_code: int | None
    reason: str | None = None
    failure_class: str | None = None
    infra: bool = False


# -- reading the models ---------------------------------------------------------------------------------------
def job_terminal(job: V1Job) -> tuple[str, str | None, str | None] | None:
    """``(type, reason, message)`` of a Job's terminal condition (Complete/Failed with status True), else None.

    SuccessCriteriaMet / FailureTarget (1.31+) come earlier but are not terminal: pods may still be running."""
    for cond in (job.status.conditions if job.status else None) or ():
        if cond.type in ("Complete", "Failed") and str(cond.status) == "True":
            return cond.type, cond.reason, cond.message
    return None


def container_status(pod: V1Pod, container: str | None) -> V1ContainerStatus | None:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    for cs in statuses:
        if container is None or cs.name == container:
            return cs
    return None


def pod_started(pod: V1Pod, container: str | None) -> bool:
    """The task's container has really started (it runs or ran)."""
    if pod.status is not None and pod.status.phase == "Running":
        return True
    cs = container_status(pod, container)
    if cs is None or cs.state is None:
        return False
    if cs.state.running is not None:
        return True
    term = cs.state.terminated
    return term is not None and term.reason not in ("StartError", "ContainerCannotRun")


def pod_final(pod: V1Pod, container: str | None) -> bool:
    """The pod carries the facts needed to classify its end (terminated container, or a pod-level failure)."""
    status = pod.status
    if status is None:
        return False
    if status.phase in ("Succeeded", "Failed") or status.reason == "Evicted":
        return True
    cs = container_status(pod, container)
    return cs is not None and cs.state is not None and cs.state.terminated is not None


def created(pod: V1Pod) -> tuple[float, str]:
    ts = pod.metadata.creation_timestamp
    return (ts.timestamp() if hasattr(ts, "timestamp") else 0.0, pod.metadata.name or "")


def disrupted(pod: V1Pod) -> bool:
    evicted = pod.status is not None and pod.status.reason == "Evicted"
    return evicted or _condition(pod, "DisruptionTarget") is not None


def culprit(pods: Iterable[V1Pod], container: str | None) -> V1Pod | None:
    """The pod whose end explains a failed Job.

    A Job can have several pods even with backoffLimit 0: the controller replaces a pod as soon as it is being
    deleted (preemption) and kills the replacement once the Job has failed. The cause is a disrupted pod, else the
    first pod that ended; the newest pod only when none has ended yet."""
    ordered = sorted(pods, key=created)
    for pod in ordered:
        if disrupted(pod):
            return pod
    ended = [p for p in ordered if pod_final(p, container)]
    if ended:
        return ended[0]
    return ordered[-1] if ordered else None


def succeeded(pods: Iterable[V1Pod]) -> V1Pod | None:
    """The pod that completed a Job (else the newest one)."""
    ordered = sorted(pods, key=created)
    done = [p for p in ordered if p.status is not None and p.status.phase == "Succeeded"]
    return done[-1] if done else (ordered[-1] if ordered else None)


def memory_limit(pod: V1Pod | None, container: str | None) -> str | None:
    if pod is None or pod.spec is None:
        return None
    for c in pod.spec.containers or ():
        if container is None or c.name == container:
            limits = (c.resources.limits if c.resources else None) or {}
            value = limits.get("memory")
            return None if value is None else str(value)
    return None


def _condition(pod: V1Pod, kind: str) -> Any:
    for cond in (pod.status.conditions if pod.status else None) or ():
        if cond.type == kind and str(cond.status) == "True":
            return cond
    return None


# -- classification -------------------------------------------------------------------------------------------
def fail_fast(pod: V1Pod, python: str = "python") -> Outcome | None:
    """A pod that will not start by itself: image pull or container config errors (init containers too)."""
    status = pod.status
    if status is None:
        return None
    for cs in [*(status.init_container_statuses or ()), *(status.container_statuses or ())]:
        waiting = cs.state.waiting if cs.state else None
        if waiting is None or not waiting.reason:
            continue
        detail = f": {waiting.message}" if waiting.message else ""
        if waiting.reason in IMAGE_PULL_REASONS:
            image = f" {cs.image!r}" if cs.image else ""
            return Outcome(
                None,
                f"{waiting.reason} for container {cs.name!r}{detail}. Check the image{image} exists, is spelled "
                "right and the node can pull it (imagePullSecrets); set Hints(image=...) or the template's image.",
                "ImagePull",
                infra=True,
            )
        if waiting.reason in CONFIG_REASONS:
            return Outcome(
                None,
                f"{waiting.reason} for container {cs.name!r}{detail}. The pod refers to something missing "
                "(a Secret, ConfigMap or volume); create it or fix the Job template.",
                "ContainerConfig",
            )
    return None


def classify_failure(
    job: V1Job | None, pod: V1Pod | None, container: str | None, python: str = "python",
    log_tail: Sequence[str] = (),
) -> Outcome:  # fmt: skip
    """Why a Job ended Failed, from the Job's condition and its pod's last state (either may be missing)."""
    terminal = job_terminal(job) if job is not None else None
    job_reason = terminal[1] if terminal else None
    job_message = terminal[2] if terminal else None
    term = None
    if pod is not None:
        cs = container_status(pod, container)
        term = cs.state.terminated if cs is not None and cs.state is not None else None
        disruption = _condition(pod, "DisruptionTarget")
        if disruption is not None:
            why = disruption.reason or "Disrupted"
            text = f"{why}: {disruption.message}" if disruption.message else why
            if why in _PREEMPTED:
                return Outcome(None, f"the pod was preempted by a higher-priority pod ({text})", "Preempted", True)
            if why in _EVICTED:
                return Outcome(None, f"the pod was evicted ({text})", "Evicted", True)
            return Outcome(None, f"the pod was disrupted ({text})", "Disrupted", True)
        if pod.status is not None and pod.status.reason == "Evicted":
            return Outcome(None, f"the pod was evicted: {pod.status.message or 'node under resource pressure'}",
                           "Evicted", True)  # fmt: skip
    if job_reason == "DeadlineExceeded":
        limit = job.spec.active_deadline_seconds if job is not None and job.spec is not None else None
        after = f" of {limit} s" if limit else ""
        return Outcome(
            term.exit_code if term is not None else None,
            f"the task ran past its deadline{after} (activeDeadlineSeconds, from Hints(timeout=...)); "
            "raise the timeout or make the task faster",
            "DeadlineExceeded",
        )
    if term is not None:
        if term.reason == "OOMKilled":
            limit = memory_limit(pod, container)
            at = f" of {limit}" if limit else ""
            return Outcome(
                term.exit_code if term.exit_code is not None else 137,
                f"out of memory: the container was killed at its memory limit{at}; raise it with "
                "Hints(memory=...) on the task (or the Job template's resources.limits.memory)",
                "OOMKilled",
            )
        if term.reason in ("StartError", "ContainerCannotRun"):
            return Outcome(
                term.exit_code,
                f"the container could not start: {term.message or term.reason}. Is {python!r} on the image's "
                "PATH with kannon installed? Set the backend's python=... to the interpreter in the image.",
                "ContainerStart",
            )
        code = term.exit_code
        if code is not None and code != 0:
            return Outcome(code, exitcodes.describe(code, tuple(log_tail)), exitcodes.failure_class(code))
    if job_reason == "BackoffLimitExceeded" or job_reason is None:
        detail = f" ({job_message})" if job_message else ""
        return Outcome(None, f"the Job failed and its pod left no exit code{detail}", "BackoffLimitExceeded")
    detail = f": {job_message}" if job_message else ""
    return Outcome(None, f"the Job failed ({job_reason}{detail})", job_reason)


def classify_pending(pod: V1Pod | None, waited: float) -> Outcome:
    """Why an attempt did not start within the pending deadline."""
    after = f"not running after {waited:.0f} s"
    if pod is None:
        return Outcome(
            None,
            f"{after}: the Job created no pod. Usual causes: a ResourceQuota/LimitRange rejects the pod, or the "
            "service account does not exist (see `kubectl describe job`).",
            "NoPod",
        )
    sched = None
    for cond in (pod.status.conditions if pod.status else None) or ():
        if cond.type == "PodScheduled" and str(cond.status) == "False":
            sched = cond
    if sched is not None:
        msg = f" ({sched.message})" if sched.message else ""
        return Outcome(
            None,
            f"{after}: the pod cannot be scheduled{msg}. Lower the task's cpu/memory/gpu hints, fix node_selector/"
            "tolerations, or add capacity; the deadline is the backend's pending_timeout.",
            "Unschedulable",
        )
    waiting = None
    for cs in (pod.status.container_statuses if pod.status else None) or ():
        if cs.state is not None and cs.state.waiting is not None:
            waiting = cs.state.waiting
    what = f" (container waiting: {waiting.reason})" if waiting is not None and waiting.reason else ""
    return Outcome(None, f"{after}{what}; raise the backend's pending_timeout if this is expected", "PendingTimeout")


# -- list + watch ---------------------------------------------------------------------------------------------
def iter_lines(resp: Any) -> Iterator[str]:
    """Newline-delimited lines of a streamed response as they arrive."""
    buffer = bytearray()
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer.extend(chunk if isinstance(chunk, bytes) else str(chunk).encode("utf-8"))
        while True:
            nl = buffer.find(b"\n")
            if nl < 0:
                break
            line = bytes(buffer[:nl]).decode("utf-8", "replace")
            del buffer[: nl + 1]
            yield line
    if buffer:
        yield bytes(buffer).decode("utf-8", "replace")


def shutdown_response(resp: Any) -> None:
    """Unblock a thread reading ``resp`` (a streamed urllib3 response) from another thread."""
    with contextlib.suppress(Exception):
        if hasattr(resp, "shutdown"):  # urllib3 >= 2.3
            resp.shutdown()
        else:
            sock = getattr(getattr(resp, "connection", None), "sock", None)
            if sock is not None:
                import socket

                sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        resp.release_conn()


class _Raw:
    """What ``ApiClient.deserialize`` reads from a response: ``.data``."""

    def __init__(self, data: str) -> None:
        self.data = data


class Watcher:
    """One label-selected list+watch over Jobs or pods of a run, feeding ``on_event(type, obj)``.

    ``list_fn()`` returns the client's list model (``items`` + ``metadata.resource_version``); ``watch_fn(rv,
    timeout)`` opens a watch stream (``_preload_content=False``). Both are expected to go through the backend's
    retrying, rate-limited API wrapper. ``on_relist(items)`` receives the full current set after a 410, so the
    owner can notice objects deleted while no stream was open.
    """

    def __init__(
        self,
        kind: str,
        model: str,
        api_client: Any,
        list_fn: Callable[[], Any],
        watch_fn: Callable[[str | None, int], Any],
        on_event: Callable[[str, Any], None],
        on_relist: Callable[[list[Any]], None],
        on_fatal: Callable[[BackendError], None],
        timeout_seconds: int = 300,
    ) -> None:
        self.kind, self.model = kind, model
        self._api_client = api_client
        self._list_fn, self._watch_fn = list_fn, watch_fn
        self._on_event, self._on_relist, self._on_fatal = on_event, on_relist, on_fatal
        self.timeout_seconds = timeout_seconds
        self.resource_version: str | None = None
        self.relists = 0
        self.reconnects = 0
        self.bookmarks = 0
        self._stop = threading.Event()
        self._resp: Any = None
        self._resp_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def list(self) -> list[Any]:
        """List everything now and remember the resourceVersion to watch from."""
        result = self._list_fn()
        self.resource_version = result.metadata.resource_version if result.metadata else None
        return list(result.items or [])

    def start(self) -> None:
        """Open the first stream here, so a missing ``watch`` permission fails the caller, then keep it in a thread."""
        self._set_resp(self._watch_fn(self.resource_version, self.timeout_seconds))
        self._thread = threading.Thread(target=self._run, name=f"kannon-k8s-watch-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._resp_lock:
            resp = self._resp
        if resp is not None:
            shutdown_response(resp)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _set_resp(self, resp: Any) -> None:
        with self._resp_lock:
            self._resp = resp
        if self._stop.is_set():  # stop() ran while the request was being opened
            shutdown_response(resp)

    def _deserialize(self, obj: dict[str, Any]) -> Any:
        return self._api_client.deserialize(_Raw(json.dumps(obj)), self.model)

    def _run(self) -> None:
        from kubernetes.client.rest import ApiException

        failures = 0
        while not self._stop.is_set():
            try:
                with self._resp_lock:
                    resp = self._resp
                if resp is None:
                    resp = self._watch_fn(self.resource_version, self.timeout_seconds)
                    self._set_resp(resp)
                    self.reconnects += 1
                try:
                    if self._consume(resp):
                        failures = 0
                finally:
                    with self._resp_lock:
                        self._resp = None
                    with contextlib.suppress(Exception):
                        resp.release_conn()
            except _Gone:
                self._relist()
            except ApiException as e:
                if e.status == 410:
                    self._relist()
                    continue
                failures += 1
                log.warning("watch on %s failed (HTTP %s); reconnecting", self.kind, e.status)
                self._backoff(failures)
            except BackendError as e:  # permission lost, or the API server stayed unreachable
                if not self._stop.is_set():
                    self._on_fatal(e)
                return
            except Exception as e:  # connection reset / protocol error mid-stream: resume from resourceVersion
                if self._stop.is_set():
                    return
                failures += 1
                log.info("watch on %s interrupted (%s); reconnecting", self.kind, type(e).__name__)
                self._backoff(failures)

    def _consume(self, resp: Any) -> bool:
        """Read one stream to its end; True if it delivered anything."""
        got = False
        for line in iter_lines(resp):
            if self._stop.is_set():
                return got
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Gone
                raise _StreamError(f"watch on {self.kind} returned an error: {obj.get('reason')}: {obj.get('message')}")
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            got = True
            if kind == "BOOKMARK":
                self.bookmarks += 1
                if rv:
                    self.resource_version = rv
                continue
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            self._on_event(kind, self._deserialize(obj))
            if rv:
                self.resource_version = rv
        return got

    def _relist(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                items = self.list()
            except BackendError:
                raise
            except Exception as e:
                failures += 1
                log.warning("re-list of %s failed (%s); retrying", self.kind, type(e).__name__)
                self._backoff(failures)
                continue
            self.relists += 1
            self._on_relist(items)
            return

    def _backoff(self, failures: int) -> None:
        # capped exponential backoff with jitter; interruptible by stop()
        delay = min(10.0, 0.1 * 2 ** min(failures, 10)) * (0.5 + random.random() / 2)
        self._stop.wait(delay)


class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""


class _StreamError(Exception):
    pass
