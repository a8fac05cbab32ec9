"""Fault injection for the emulated control plane. Every method is thread-safe and every injection is recorded."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kannon.testing.kube.errors import ApiError, forbidden, injected

POD_BEHAVIOURS = (
    "ImagePullBackOff",
    "ErrImagePull",
    "CreateContainerConfigError",
    "Unschedulable",
    "OOMKilled",
    "Evicted",
    "Preempted",
    "NotTriggerScaleUp",  # unschedulable, and the cluster autoscaler has no node group that would fit it
)
#: the slow starts (Faults.slow_image_pull / Faults.scale_up): progressing, not stuck
SLOW_STARTS = ("pull", "scale-up")

DEFAULT_USER = "system:serviceaccount:default:default"


@dataclass(frozen=True)
class Injected:
    """One fault that actually hit something (a request, a pod, the watch cache...)."""

    # fail_request / reset_connection / drop_response / hold_request / forbid / pod_behaviour / compact_history /
    # end_watches / delete_job / slow_start
    kind: str
    detail: str
    method: str | None = None
    path: str | None = None
    at: float = field(default_factory=time.time)


@dataclass
class _RequestRule:
    kind: str
    remaining: int
    status: int = 500
    method: str | None = None
    path_regex: re.Pattern[str] | None = None
    retry_after: int | None = None
    gate: threading.Event | None = None

    def matches(self, method: str, path: str) -> bool:
        if self.remaining <= 0:
            return False
        if self.method is not None and self.method.upper() != method.upper():
            return False
        return self.path_regex is None or bool(self.path_regex.search(path))


@dataclass
class _PodRule:
    job_regex: re.Pattern[str]
    behaviour: str
    remaining: int | None  # None: every matching pod


@dataclass
class SlowStart:
    """A start that takes a while but progresses: an image pull, or a node the cluster autoscaler adds. It lasts
    until ``done`` is set (by the test, or ``seconds`` after it began when given)."""

    kind: str  # "pull" or "scale-up"
    done: threading.Event
    seconds: float | None
    job_regex: re.Pattern[str]
    remaining: int | None  # None: every matching pod

    def over(self, began: float) -> bool:
        if self.seconds is not None and time.monotonic() - began >= self.seconds:
            self.done.set()
        return self.done.is_set()


class Faults:
    def __init__(
        self,
        compact: Callable[[], None],
        end_watches: Callable[[], int],
        expire: Callable[[], int],
        delete_job: Callable[[str, str, str], Any],
        default_namespace: str,
    ) -> None:
        self._lock = threading.Lock()
        self._request_rules: list[_RequestRule] = []
        self._forbidden: list[tuple[str, str, str | None, str]] = []
        self._pod_rules: list[_PodRule] = []
        self._slow_starts: list[SlowStart] = []
        self._watch_holds: dict[str, threading.Event] = {}
        self._injected: list[Injected] = []
        self._compact = compact
        self._end_watches = end_watches
        self._expire = expire
        self._delete_job = delete_job
        self._namespace = default_namespace

    # -- public API ----------------------------------------------------------------------------------------------

    def fail_requests(
        self,
        n: int,
        status: int = 500,
        method: str | None = None,
        path_regex: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        """Answer the next n matching requests with `status` (500, 503, 429, 504); 429 carries Retry-After."""
        if status not in (429, 500, 502, 503, 504):
            raise ValueError(f"unsupported injected status {status}")
        with self._lock:
            self._request_rules.append(
                _RequestRule("fail", n, status, method, re.compile(path_regex) if path_regex else None, retry_after)
            )

    def reset_connections(self, n: int, method: str | None = None, path_regex: str | None = None) -> None:
        """Close the socket of the next n matching requests (TCP RST) without answering."""
        with self._lock:
            self._request_rules.append(
                _RequestRule("reset", n, 0, method, re.compile(path_regex) if path_regex else None)
            )

    def drop_responses(self, n: int, method: str | None = None, path_regex: str | None = None) -> None:
        """Carry out the next n matching requests but reset the connection instead of answering (the write landed,
        the client never hears of it: the case idempotent creates must survive)."""
        with self._lock:
            self._request_rules.append(
                _RequestRule("drop", n, 0, method, re.compile(path_regex) if path_regex else None)
            )

    def hold_answers(self, n: int, method: str | None = None, path_regex: str | None = None) -> threading.Event:
        """Carry out the next n matching requests at once but keep their answers until the returned event is set —
        a read whose answer is already stale when it arrives. Held at most 300 s."""
        gate = threading.Event()
        with self._lock:
            self._request_rules.append(
                _RequestRule("hold_answer", n, 0, method, re.compile(path_regex) if path_regex else None, gate=gate)
            )
        return gate

    def hold_requests(self, n: int, method: str | None = None, path_regex: str | None = None) -> threading.Event:
        """Keep the next n matching requests waiting (unanswered, not yet carried out) until the returned event is
        set — an API server that is slow to answer, without any timing in the test. Held at most 300 s."""
        gate = threading.Event()
        with self._lock:
            self._request_rules.append(
                _RequestRule("hold", n, 0, method, re.compile(path_regex) if path_regex else None, gate=gate)
            )
        return gate

    def hold_watch(self, resource: str) -> threading.Event:
        """Deliver nothing (events, bookmarks) on the open and future watches of ``resource`` ("pods", "jobs") until
        the returned event is set; then everything held follows in order. The API server orders a watch stream, never
        two streams against each other: a client may see a Job Failed before the pod change that caused it."""
        gate = threading.Event()
        with self._lock:
            self._watch_holds[resource] = gate
        self._record(Injected("hold_watch", resource))
        return gate

    def forbid(self, verb: str, resource: str, namespace: str | None = None, user: str = DEFAULT_USER) -> None:
        """403 Forbidden for `verb` on `resource` ("jobs", "pods", "pods/log", ...) until allow() is called."""
        with self._lock:
            self._forbidden.append((verb, resource, namespace, user))

    def allow(self, verb: str, resource: str, namespace: str | None = None) -> None:
        with self._lock:
            self._forbidden = [f for f in self._forbidden if f[:3] != (verb, resource, namespace)]

    def pod_behaviour(self, job_name_regex: str, behaviour: str, times: int | None = None) -> None:
        """Make pods of Jobs whose name matches (re.search) misbehave; `times` limits it to the first N pods."""
        if behaviour not in POD_BEHAVIOURS:
            raise ValueError(f"unknown pod behaviour {behaviour!r}; choose one of {', '.join(POD_BEHAVIOURS)}")
        with self._lock:
            self._pod_rules.append(_PodRule(re.compile(job_name_regex), behaviour, times))

    def slow_image_pull(self, job_name_regex: str, seconds: float | None = None,
                        times: int | None = None) -> threading.Event:  # fmt: skip
        """Pods of matching Jobs pull their image slowly: the kubelet records ``Pulling image "<image>"`` and the
        container waits as ``ContainerCreating`` until the returned event is set (or ``seconds`` pass), then
        ``Pulled`` and it starts (the kubelet's image manager, pkg/kubelet/images/image_manager.go)."""
        return self._slow("pull", job_name_regex, seconds, times)

    def scale_up(self, job_name_regex: str, seconds: float | None = None, times: int | None = None) -> threading.Event:
        """Pods of matching Jobs fit no node until the cluster autoscaler has added one: unschedulable
        (``FailedScheduling``) with the autoscaler's ``TriggeredScaleUp`` event, until the returned event is set (or
        ``seconds`` pass); then the new node is there and the pod is scheduled (cluster-autoscaler FAQ, "What events
        are emitted by CA?")."""
        return self._slow("scale-up", job_name_regex, seconds, times)

    def _slow(self, kind: str, job_name_regex: str, seconds: float | None, times: int | None) -> threading.Event:
        done = threading.Event()
        with self._lock:
            self._slow_starts.append(SlowStart(kind, done, seconds, re.compile(job_name_regex), times))
        return done

    def compact_history(self) -> None:
        """Forget the watch history, so a watch resumed from any earlier resourceVersion gets 410 Gone."""
        self._compact()
        self._record(Injected("compact_history", "watch history compacted"))

    def end_watches(self) -> int:
        """Close every open watch stream now (as an apiserver restart or its watch timeout would)."""
        n = self._end_watches()
        self._record(Injected("end_watches", f"{n} watch streams closed"))
        return n

    def expire_watches(self) -> int:
        """Compact the history and close every watch stream in one step, so that no event or bookmark can carry a
        newer resourceVersion to a stream in between: every watch resumes from a compacted revision and gets 410 Gone
        (as after an apiserver restart that outlived its watch cache). Returns the number of streams closed."""
        n = self._expire()
        self._record(Injected("compact_history", "watch history compacted"))
        self._record(Injected("end_watches", f"{n} watch streams closed"))
        return n

    def delete_job_externally(
        self, name: str, namespace: str | None = None, propagation_policy: str = "Background"
    ) -> None:
        """Delete a Job as a person with kubectl would (kubectl uses Background propagation)."""
        ns = namespace or self._namespace
        self._delete_job(ns, name, propagation_policy)
        self._record(Injected("delete_job", f"{ns}/{name} ({propagation_policy})"))

    def clear(self) -> None:
        """Drop every pending rule (recorded injections are kept)."""
        with self._lock:
            for rule in self._request_rules:
                if rule.gate is not None:
                    rule.gate.set()  # held requests go on
            self._request_rules.clear()
            self._forbidden.clear()
            self._pod_rules.clear()
            for slow in self._slow_starts:
                slow.done.set()  # pods held in a slow start go on
            self._slow_starts.clear()
            for gate in self._watch_holds.values():
                gate.set()
            self._watch_holds.clear()

    @property
    def injected(self) -> list[Injected]:
        with self._lock:
            return list(self._injected)

    def count(self, kind: str | None = None) -> int:
        with self._lock:
            return sum(1 for i in self._injected if kind is None or i.kind == kind)

    # -- used by the server / kubelet ----------------------------------------------------------------------------

    def _record(self, item: Injected) -> None:
        with self._lock:
            self._injected.append(item)

    def watch_hold(self, resource: str) -> threading.Event | None:
        """The gate a watch stream of ``resource`` waits on before it sends anything, while one is held."""
        with self._lock:
            gate = self._watch_holds.get(resource)
            if gate is not None and gate.is_set():
                del self._watch_holds[resource]
                return None
            return gate

    def take_request_fault(self, method: str, path: str) -> tuple[str, ApiError | threading.Event | None] | None:
        with self._lock:
            for rule in self._request_rules:
                if rule.matches(method, path):
                    rule.remaining -= 1
                    if rule.kind == "reset":
                        self._injected.append(Injected("reset_connection", "connection reset", method, path))
                        return ("reset", None)
                    if rule.kind in ("hold", "hold_answer"):
                        assert rule.gate is not None
                        name, what = (("hold_request", "held until released") if rule.kind == "hold" else
                                      ("hold_answer", "answer held until released"))  # fmt: skip
                        self._injected.append(Injected(name, what, method, path))
                        return (rule.kind, rule.gate)
                    if rule.kind == "drop":
                        self._injected.append(Injected("drop_response", "answer dropped after the write", method, path))
                        return ("drop", None)
                    self._injected.append(Injected("fail_request", f"HTTP {rule.status}", method, path))
                    return ("fail", injected(rule.status, rule.retry_after))
            return None

    def check_forbidden(
        self, verb: str, resource: str, namespace: str | None, name: str | None, method: str, path: str
    ) -> ApiError | None:
        with self._lock:
            for f_verb, f_res, f_ns, user in self._forbidden:
                if f_verb in (verb, "*") and f_res in (resource, "*") and f_ns in (None, namespace):
                    self._injected.append(Injected("forbid", f"{verb} {resource}", method, path))
                    return forbidden(user, verb, resource, namespace, name)
            return None

    def take_pod_behaviour(self, job_name: str | None, pod_name: str) -> str | None:
        if job_name is None:
            return None
        with self._lock:
            for rule in self._pod_rules:
                if rule.remaining is not None and rule.remaining <= 0:
                    continue
                if rule.job_regex.search(job_name):
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    self._injected.append(Injected("pod_behaviour", f"{rule.behaviour} on pod {pod_name}"))
                    return rule.behaviour
            return None

    def take_slow_starts(self, job_name: str | None, pod_name: str) -> list[SlowStart]:
        """The slow starts a new pod of ``job_name`` goes through (a scale-up, then a pull, as on a real node)."""
        if job_name is None:
            return []
        taken: list[SlowStart] = []
        with self._lock:
            for slow in self._slow_starts:
                if (slow.remaining is None or slow.remaining > 0) and slow.job_regex.search(job_name) and all(
                        t.kind != slow.kind for t in taken):  # fmt: skip
                    if slow.remaining is not None:
                        slow.remaining -= 1
                    self._injected.append(Injected("slow_start", f"{slow.kind} on pod {pod_name}"))
                    taken.append(slow)
        return sorted(taken, key=lambda t: SLOW_STARTS.index(t.kind), reverse=True)  # scale-up first
