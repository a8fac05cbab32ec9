"""Slow starts are not stuck: what a pod that has not started by ``pending_timeout`` is waiting for.

Pure functions from the pod and the core/v1 Events about it (``list events``, optional RBAC) to a verdict:

* **progressing** (:class:`Waiting`): kannon keeps waiting, up to the backend's ``start_timeout``, and says what for.
  - an image pull: the kubelet records ``Pulling`` (``Pulling image "<ref>"``) when it starts pulling and ``Pulled``
    (``Successfully pulled image … in …``) or ``Failed``/``BackOff`` when it ends (pkg/kubelet/events/event.go,
    pkg/kubelet/images/image_manager.go); meanwhile the container waits as ``ContainerCreating`` (or
    ``PodInitializing`` behind init containers). A ``Pulling`` with nothing after it is a pull in progress.
  - a node being added: the cluster autoscaler records ``TriggeredScaleUp`` (``pod triggered scale-up: [{<group>
    1->2 (max: 10)}]``) on an unschedulable pod it scales a node group up for (cluster-autoscaler FAQ, "What events
    are emitted by CA?"; processors/status/eventing_scale_up_processor.go).
  - an init container of the Job template at work: the pod stays ``Pending`` while its init containers run, one at a
    time (kubelet ``getPhase``; kubernetes.io/docs/concepts/workloads/pods/init-containers/), and the task's
    container waits as ``PodInitializing``; a running init container (not a native sidecar, which runs beside the
    next one) is the user's own set-up step, e.g. a download, so its pod is not stuck.
* **never** (:class:`~.classify.Outcome`): the autoscaler's latest word on an unschedulable pod is
  ``NotTriggerScaleUp`` (``pod didn't trigger scale-up: <reasons>``: no node group could make it fit), so it fails
  at ``pending_timeout`` with that message quoted.
* **unknown** (None): anything else, classified as before by :func:`.classify.classify_pending`. Image pull errors
  (``ErrImagePull``, ``ImagePullBackOff``, ``InvalidImageName``) never get here: :func:`.classify.fail_fast` ends
  those attempts as soon as the container reports them.

The "for 3m" is measured from the event's own timestamp (the cluster's clock), never below zero.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kannon.backends.kubernetes.classify import CONFIG_REASONS, IMAGE_PULL_REASONS, Outcome

if TYPE_CHECKING:
    from kubernetes.client import V1Pod

#: the kubelet's image events (pkg/kubelet/events/event.go): the latest one per image says where its pull is
PULL_EVENTS = frozenset({"Pulling", "Pulled", "Failed", "BackOff", "ErrImageNeverPull", "InspectFailed"})
#: the cluster autoscaler's events on a pod (cluster-autoscaler FAQ)
SCALE_UP, NO_SCALE_UP = "TriggeredScaleUp", "NotTriggerScaleUp"
#: container waiting reasons of a pod whose containers are being set up (images pulled, volumes mounted)
CREATING = frozenset({"ContainerCreating", "PodInitializing"})
_IMAGE = re.compile(r'image "([^"]+)"')


@dataclass(frozen=True)
class Waiting:
    """A start that is slow but progressing: what it waits for, and since when (the cluster's clock)."""

    kind: str  # "pull", "scale-up" or "init"
    what: str  # "pulling image busybox:1.36", "waiting for scale-up: pod triggered scale-up: [...]"
    since: datetime.datetime | None = None

    def describe(self, now: datetime.datetime | None = None) -> str:
        """``pulling image X for 3m05s``: the line the attempt's log and live view show."""
        if self.since is None:
            return self.what
        now = now or datetime.datetime.now(datetime.timezone.utc)
        return f"{self.what} for {duration((now - self.since).total_seconds())}"


def duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{seconds:.0f}s"
    m, s = divmod(round(seconds), 60)
    return f"{m}m{s:02d}s" if m < 60 else f"{m // 60}h{m % 60:02d}m"


def _when(event: Any) -> datetime.datetime | None:
    """An event's latest time: ``lastTimestamp`` (core/v1 recorders), else ``eventTime`` (events.k8s.io ones)."""
    for ts in (event.last_timestamp, event.event_time, event.first_timestamp):
        if isinstance(ts, datetime.datetime):
            return ts if ts.tzinfo is not None else ts.replace(tzinfo=datetime.timezone.utc)
    return None


def pod_events(events: Iterable[Any], pod: V1Pod) -> list[Any]:
    """The events about ``pod`` (by name, and uid when both have one), oldest first."""
    name, uid = pod.metadata.name, pod.metadata.uid
    mine = [e for e in events if e.involved_object is not None and e.involved_object.name == name
            and (not uid or not e.involved_object.uid or e.involved_object.uid == uid)]  # fmt: skip
    floor = datetime.datetime.min.replace(tzinfo=datetime.timezone.utc)
    # timestamps have whole seconds: within one, a pull's end (Pulled, Failed) comes after its Pulling
    return sorted(mine, key=lambda e: (_when(e) or floor, e.reason != "Pulling"))


def _unschedulable(pod: V1Pod) -> Any:
    for cond in (pod.status.conditions if pod.status else None) or ():
        if cond.type == "PodScheduled" and str(cond.status) == "False":
            return cond
    return None


def _waiting_reasons(pod: V1Pod) -> list[str]:
    status = pod.status
    statuses = [*(status.init_container_statuses or ()), *(status.container_statuses or ())] if status else []
    return [cs.state.waiting.reason or "" for cs in statuses if cs.state is not None and cs.state.waiting is not None]


def diagnose(pod: V1Pod | None, events: Sequence[Any], waited: float) -> Waiting | Outcome | None:
    """Why ``pod`` has not started after ``waited`` seconds: progressing, never, or unknown (see the module doc)."""
    if pod is None or pod.status is None:
        return None
    mine = pod_events(events, pod)
    sched = _unschedulable(pod)
    if sched is not None:
        autoscaler = [e for e in mine if e.reason in (SCALE_UP, NO_SCALE_UP)]
        if not autoscaler:
            return None  # no autoscaler spoke: classify_pending says Unschedulable, as without one
        last = autoscaler[-1]
        if last.reason == SCALE_UP:
            return Waiting("scale-up", f"waiting for scale-up: {last.message or SCALE_UP}", _first(last))
        why = f" ({sched.message})" if sched.message else ""
        return Outcome(None, f"not running after {waited:.0f} s: the pod cannot be scheduled{why}, and the cluster "
                       f"autoscaler will not add a node for it ({NO_SCALE_UP}: {last.message}). Lower the task's "
                       "cpu/memory/gpu hints, fix node_selector/tolerations, or raise the node group's maximum size",
                       "Unschedulable")  # fmt: skip
    waiting = _waiting_reasons(pod)
    if any(r in IMAGE_PULL_REASONS or r in CONFIG_REASONS for r in waiting):
        return None  # fail_fast's case, not a slow start
    step = init_step(pod)
    if step is not None and step[1] is not None and step[1].state is not None and step[1].state.running is not None:
        return Waiting("init", f"init container {step[0]!r} running", step[1].state.running.started_at)
    if waiting and not all(r in CREATING for r in waiting):
        return None
    latest: dict[str, Any] = {}  # image -> its latest pull event
    for e in mine:
        if e.reason in PULL_EVENTS:
            found = _IMAGE.search(e.message or "")
            latest[found.group(1) if found else e.message or ""] = e
    pulling = [(image, e) for image, e in latest.items() if e.reason == "Pulling"]
    if pulling:
        image, event = pulling[0]
        return Waiting("pull", f"pulling image {image}", _when(event))  # lastTimestamp: this pull's start
    return None


def init_step(pod: V1Pod) -> tuple[str, Any] | None:
    """The init container the pod's start has reached, as (name, its status or None before it has one): the first
    regular one that has not exited 0. None when every regular init container is done (or there are none). Native
    sidecars (``restartPolicy: Always``) are skipped: they keep running beside the next step."""
    spec, status = pod.spec, pod.status
    statuses = {cs.name: cs for cs in (status.init_container_statuses if status is not None else None) or ()}
    for c in (spec.init_containers if spec is not None else None) or ():
        if c.restart_policy == "Always":
            continue
        cs = statuses.get(c.name)
        term = cs.state.terminated if cs is not None and cs.state is not None else None
        if term is None or term.exit_code != 0:
            return c.name, cs
    return None


def _first(event: Any) -> datetime.datetime | None:
    ts = event.first_timestamp
    if isinstance(ts, datetime.datetime):
        return ts if ts.tzinfo is not None else ts.replace(tzinfo=datetime.timezone.utc)
    return _when(event)


def start_timed_out(waiting: Waiting, waited: float, start_timeout: float) -> Outcome:
    """A slow start that went on past ``start_timeout``: a failure that says what it was still waiting for."""
    fix = {"pull": "use a smaller or pre-pulled image", "scale-up": "check the node group",
           "init": "check the Job template's init container (`kubectl logs POD -c NAME`)"}[waiting.kind]  # fmt: skip
    return Outcome(None, f"not running after {waited:.0f} s, still {waiting.describe()}: slow starts (image pulls, "
                   "cluster scale-up, init containers) may take up to the backend's start_timeout "
                   f"({start_timeout:.0f} s); raise it (K8sJobExecutor(start_timeout=...) / --k8s-start-timeout), or "
                   f"{fix}", "StartTimeout")  # fmt: skip
