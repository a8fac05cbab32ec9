"""What a finished or stuck pod means: pure functions from a Job and a pod to an :class:`Outcome` (exit code, stable
failure class, a reason that says what to do, and whether it was the infrastructure's fault). The objects are the
client's ``V1Job`` / ``V1Pod`` models or the :mod:`.raw` views of the API's JSON (what the watches deliver): both
read alike."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kannon import childresult, exitcodes, logtail

if TYPE_CHECKING:
    from kannon.backends.base import Launch
    from kannon.childresult import ChildResult
    from kubernetes.client import V1ContainerStatus, V1Job, V1Pod

#: waiting reasons that never resolve by themselves in a useful time: fail the attempt at once (infra: a retry may
#: land on a node / moment where the registry answers)
IMAGE_PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"})
#: the pod spec refers to something missing (secret, config map, ...): the user has to fix it
CONFIG_REASONS = frozenset({"CreateContainerConfigError", "CreateContainerError"})
#: DisruptionTarget condition reasons (pod disruption conditions, Kubernetes >= 1.26)
_PREEMPTED = frozenset({"PreemptionByScheduler", "PreemptionByKubeScheduler"})
_EVICTED = frozenset({"EvictionByEvictionAPI", "TerminationByKubelet"})

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
    status = job.status  # read once: on a JSON view every read builds a view (raw.py), ~20 calls per task
    for cond in (status.conditions if status else None) or ():
        if cond.type in ("Complete", "Failed") and str(cond.status) == "True":
            return cond.type, cond.reason, cond.message
    return None

def job_ending(job: V1Job) -> bool:
    """The Job has an interim end condition (FailureTarget / SuccessCriteriaMet, 1.31+): its end is decided, and the
    terminal condition follows once no pod of it is still terminating."""
    return any(c.type in ("FailureTarget", "SuccessCriteriaMet") and str(c.status) == "True"
               for c in (job.status.conditions if job.status else None) or ())  # fmt: skip

def pod_terminal(pod: V1Pod) -> bool:
    return pod.status is not None and pod.status.phase in ("Succeeded", "Failed")

def container_status(pod: V1Pod, container: str | None) -> V1ContainerStatus | None:
    status = pod.status
    statuses = (status.container_statuses if status else None) or []
    for cs in statuses:
        if container is None or cs.name == container:
            return cs
    return None

def pod_started(pod: V1Pod, container: str | None) -> bool:
    """The task's container has really started (it runs or ran)."""
    status = pod.status
    if status is not None and status.phase == "Running":
        return True
    cs = container_status(pod, container)
    state = cs.state if cs is not None else None
    if state is None:
        return False
    if state.running is not None:
        return True
    term = state.terminated
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

def main_ended(pod: V1Pod, container: str | None) -> bool:
    """The task's container has ended while the pod runs on: another app container (a sidecar a mesh injected, a
    log shipper) keeps a pod Running after its main container exited (kubelet getPhase), and so the Job active
    until its deadline. kannon's pods never restart a container (restartPolicy Never), so the attempt is over."""
    status, spec = pod.status, pod.spec
    if status is None or status.phase in ("Succeeded", "Failed") or spec is None or len(spec.containers or ()) < 2:
        return False  # one container: the pod ends with it, and the Job with the pod
    cs = container_status(pod, container)
    return cs is not None and cs.state is not None and cs.state.terminated is not None


def init_failure(pod: V1Pod) -> Outcome | None:
    """An init container that failed (it shows only in ``initContainerStatuses``): the task never ran. A native
    sidecar (``restartPolicy: Always``) is restarted by the kubelet instead, so it never fails the pod."""
    status, spec = pod.status, pod.spec
    sidecars = {c.name for c in (spec.init_containers if spec is not None else None) or ()
                if getattr(c, "restart_policy", None) == "Always"}  # fmt: skip
    for cs in (status.init_container_statuses if status is not None else None) or ():
        term = cs.state.terminated if cs.state is not None else None
        if term is None or not term.exit_code or cs.name in sidecars:
            continue
        why = f"{term.reason}: {term.message.strip()}" if term.message else (term.reason or "Error")
        return Outcome(None, f"init container {cs.name!r} failed with exit code {term.exit_code} ({why}); the task "
                       "never ran. Fix the Job template's init container (`kubectl logs POD -c "
                       f"{cs.name}` shows its output)", "InitContainerFailed")  # fmt: skip
    return None


def created(pod: V1Pod) -> tuple[float, str]:
    ts = pod.metadata.creation_timestamp
    return (ts.timestamp() if hasattr(ts, "timestamp") else 0.0, pod.metadata.name or "")

def disrupted(pod: V1Pod) -> bool:
    evicted = pod.status is not None and pod.status.reason == "Evicted"
    return evicted or _condition(pod, "DisruptionTarget") is not None

def culprit(pods: Iterable[V1Pod], container: str | None) -> V1Pod | None:
    """The pod whose end explains a failed Job.

    With backoffLimit 0 a Job has one pod: the controller counts a pod that is being deleted (preemption, eviction,
    kubectl delete pod) as failed at once and does not replace it (upstream isPodFailed). Several pods remain
    possible (a Job re-adopted from an older kannon, a controller with podReplacementPolicy Failed), so: a disrupted
    pod, else the first pod that ended; the newest pod only when none has ended yet."""
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

# Reasons the kubelet writes on a pod it refused at admission (pkg/kubelet/lifecycle/predicate.go: "OutOf" + the
# resource, UnexpectedAdmissionError, NodeAffinity, ...): the node's doing, so another attempt may well run.
_ADMISSION = frozenset({"UnexpectedAdmissionError", "NodeAffinity", "NodeName", "InvalidNodeInfo"})
_SHUTDOWN = frozenset({"Terminated", "Shutdown"})  # graceful node shutdown (pkg/kubelet/nodeshutdown)


def _pod_level(pod: V1Pod, term: Any) -> Outcome | None:
    """A failure the kubelet wrote on the pod itself, which wins over what its killed container says."""
    reason = pod.status.reason if pod.status is not None else None
    message = (pod.status.message if pod.status is not None else None) or reason
    code = term.exit_code if term is not None else None
    if reason is None:
        return None
    if reason.startswith("OutOf") or reason in _ADMISSION:
        return Outcome(None, f"the node rejected the pod at admission ({reason}: {message}); kannon tries again",
                       reason, True)  # fmt: skip
    if reason in _SHUTDOWN:
        return Outcome(code, f"the node shut down under the pod ({message}); kannon tries again", "NodeShutdown",
                       True)  # fmt: skip
    if reason == "DeadlineExceeded":
        return Outcome(code, f"the pod ran past the activeDeadlineSeconds of its own spec ({message}); that is the "
                       "Job template's pod-level deadline, separate from Hints(timeout=...)", "DeadlineExceeded")
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
        pod_level = _pod_level(pod, term)
        if pod_level is not None:
            return pod_level
    if job_reason == "DeadlineExceeded":
        limit = job.spec.active_deadline_seconds if job is not None and job.spec is not None else None
        after = f" of {limit} s" if limit else ""
        return Outcome(
            term.exit_code if term is not None else None,
            f"the task ran past its deadline{after} (activeDeadlineSeconds, from Hints(timeout=...)); "
            "raise the timeout or make the task faster",
            "DeadlineExceeded",
        )
    if term is None and pod is not None and (init := init_failure(pod)) is not None:
        return init
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
        if term.reason == "ContainerStatusUnknown":  # the kubelet's stand-in (exit 137) for a container it lost
            lost = term.message or "ContainerStatusUnknown"
            return Outcome(term.exit_code, f"the container's state was lost with its node ({lost}); the exit code "
                           "137 is the kubelet's stand-in, not a kill for memory", "ContainerStatusUnknown",
                           True)  # fmt: skip
        if term.reason in ("StartError", "ContainerCannotRun"):
            return Outcome(
                term.exit_code,
                f"the container could not start: {term.message or term.reason}. Is {python!r} on the image's "
                "PATH with kannon installed? Set the backend's python=... to the interpreter in the image.",
                "ContainerStart",
            )
        code = term.exit_code
        no_kannon = logtail.kannon_import_failure(tuple(log_tail)) if code == 1 else None
        if no_kannon is not None:
            return Outcome(code, logtail.kannon_import_reason(python, no_kannon, "K8sJobExecutor(python=...) / "
                                                              "--k8s-python"), "KannonNotImportable")  # fmt: skip
        if code == 137:  # the kubelet names a memory kill OOMKilled (above): this SIGKILL came from elsewhere
            return Outcome(code, "killed by SIGKILL (exit code 137), not for memory (the kubelet reports those as "
                           "OOMKilled): the grace period after a SIGTERM ran out, or something on the node killed "
                           "it", "Killed")  # fmt: skip
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
    from kannon.backends.kubernetes.slowstart import init_step  # slowstart builds on this module

    step = init_step(pod)
    if step is not None:  # the task's container waits behind this one: say which, and how to see why
        name, cs = step
        state = cs.state if cs is not None else None
        if state is not None and state.waiting is not None:
            doing = f"waiting: {state.waiting.reason}" + (f", {cs.restart_count} restarts" if cs.restart_count else "")
        elif state is not None and state.terminated is not None:
            doing = f"exited {state.terminated.exit_code}, restarting"
        else:
            doing = "not started"
        return Outcome(None, f"{after}: the task's container waits for init container {name!r} ({doing}); see "
                       f"`kubectl logs POD -c {name}`, fix the Job template's init container, or raise the backend's "
                       "pending_timeout if this is expected", "PendingTimeout")  # fmt: skip
    waiting = None
    for cs in (pod.status.container_statuses if pod.status else None) or ():
        if cs.state is not None and cs.state.waiting is not None:
            waiting = cs.state.waiting
    what = f" (container waiting: {waiting.reason})" if waiting is not None and waiting.reason else ""
    return Outcome(None, f"{after}{what}; raise the backend's pending_timeout if this is expected", "PendingTimeout")


def termination_record(pod: V1Pod | None, container: str | None, launch: Launch) -> ChildResult | None:
    """The child-result record in the task container's termination message (``state.terminated.message``; the
    child writes it to ``terminationMessagePath``), if it is this attempt's; else None (the exit code stands)."""
    cs = container_status(pod, container) if pod is not None else None
    term = cs.state.terminated if cs is not None and cs.state is not None else None
    message = term.message if term is not None else None
    return childresult.parse_for(message, launch) if message else None

