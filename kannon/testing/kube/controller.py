"""The Job controller, the garbage collector and the TTL-after-finished controller, on one thread.

Behaviour from kubernetes.io/docs/concepts/workloads/controllers/job/ (backoffLimit, pod failure policy,
activeDeadlineSeconds, terminal conditions with SuccessCriteriaMet/FailureTarget first since 1.31, counters),
.../controllers/ttlafterfinished/ (Foreground deletion after ttlSecondsAfterFinished) and
kubernetes.io/docs/concepts/architecture/garbage-collection/ (orphan / background / foreground cascading deletion).
"""

from __future__ import annotations

import contextlib
import copy
import heapq
import itertools
import logging
import queue
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from kannon.testing.kube.errors import ApiError
from kannon.testing.kube.node.kubelet import Kubelet, qos_class
from kannon.testing.kube.node.status import _cond, is_terminal, set_condition
from kannon.testing.kube.quota import ResourceQuotas
from kannon.testing.kube.store import Change, Obj, Store, now_iso
from kannon.testing.kube.validation import CONTROLLER_UID_LABEL, generate_name

log = logging.getLogger("kannon.testing.kube")

FINALIZER_ORPHAN = "orphan"
FINALIZER_FOREGROUND = "foregroundDeletion"


def controller_of(obj: Obj) -> dict[str, Any] | None:
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job":
            return dict(ref)
    return None


def condition(job: Obj, ctype: str) -> dict[str, Any] | None:
    for c in (job.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype and c.get("status") == "True":
            return dict(c)
    return None


def is_finished(job: Obj) -> bool:
    return condition(job, "Complete") is not None or condition(job, "Failed") is not None


@dataclass
class _Tracking:
    """What the real controller keeps via pod finalizers + uncountedTerminatedPods: pods already counted."""

    succeeded: set[str] = field(default_factory=set)
    failed: set[str] = field(default_factory=set)
    ignored: set[str] = field(default_factory=set)
    failure_target: tuple[str, str] | None = None  # (reason, message) decided by the pod failure policy
    start: float | None = None  # monotonic time of status.startTime (deadline timer)
    finished_at: float | None = None
    last_failure: float | None = None
    consecutive_failures: int = 0
    ttl_scheduled: bool = False


def _counts_as_failed(job: Obj, pod: Obj) -> bool:
    if job["spec"].get("podReplacementPolicy") == "Failed":
        return False
    return bool(pod["metadata"].get("deletionTimestamp")) and pod.get("status", {}).get("phase") != "Succeeded"


class JobController:
    def __init__(self, store: Store, kubelet: Kubelet, backoff_base: float = 0.0, backoff_cap: float = 360.0) -> None:
        self.store = store
        self.kubelet = kubelet
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._timers: list[tuple[float, int, tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self._tracking: dict[str, _Tracking] = {}
        self.quotas: ResourceQuotas | None = None  # the ResourceQuota admission check on pod creation (quota.py)
        self._thread = threading.Thread(target=self._loop, daemon=True, name="kube-job-controller")
        store.add_listener(self._on_change)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def resync(self, ns: str, name: str) -> None:
        """Sync Job ``name`` again soon (thread-safe: only enqueues)."""
        self._queue.put(("sync", ns, name))

    # -- event intake (under the store lock: only enqueue) -------------------------------------------------------

    def _on_change(self, ch: Change) -> None:
        meta = ch.obj["metadata"]
        if ch.resource == "jobs":
            self._queue.put(("sync", meta["namespace"], meta["name"]))
            if ch.type == "DELETED":
                self._queue.put(("gc", meta["namespace"], meta["uid"]))
            return
        if ch.resource != "pods":
            return
        ns = meta["namespace"]
        if ch.type == "DELETED":
            self._queue.put(("gc", ns, meta["uid"]))
        owner = controller_of(ch.obj)
        if owner is None:
            return
        was_terminal = ch.old is not None and is_terminal(ch.old)
        if ch.type == "MODIFIED" and is_terminal(ch.obj) and not was_terminal:
            self._queue.put(("pod_done", ns, owner["name"], owner["uid"], ch.obj))
        elif ch.type == "DELETED" and not is_terminal(ch.obj):
            # A pod that vanished before finishing counts as failed (tracked with finalizers in real clusters).
            self._queue.put(("pod_done", ns, owner["name"], owner["uid"], ch.obj))
        self._queue.put(("sync", ns, owner["name"]))

    def _after(self, delay: float, item: tuple[Any, ...]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), item))

    # -- loop ------------------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = ()
            if item is None:
                return
            now = time.monotonic()
            due = []
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
            for it in ([item] if item else []) + due:
                try:
                    self._handle(it)
                except Exception:
                    log.exception("job controller failed on %r", it[:3])

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "sync":
            self.sync(item[1], item[2])
        elif kind == "pod_done":
            self._count(item[1], item[2], item[3], item[4])
            self.sync(item[1], item[2])
        elif kind == "gc":
            self._collect_orphans(item[1], item[2])
        elif kind == "ttl":
            self._ttl_expired(item[1], item[2], item[3])

    # -- counting ----------------------------------------------------------------------------------------------

    def _count(self, ns: str, job_name: str, job_uid: str, pod: Obj) -> None:
        job = self.store.get("jobs", ns, job_name)
        if job is None or job["metadata"]["uid"] != job_uid:
            return
        tr = self._tracking.setdefault(job_uid, _Tracking())
        uid = pod["metadata"]["uid"]
        if uid in tr.succeeded or uid in tr.failed or uid in tr.ignored:
            return
        if pod.get("status", {}).get("phase") == "Succeeded":
            tr.succeeded.add(uid)
            tr.consecutive_failures = 0
            return
        action, message = self._pod_failure_policy(job, pod)
        if action == "Ignore":
            tr.ignored.add(uid)
            return
        tr.failed.add(uid)
        tr.last_failure = time.monotonic()
        tr.consecutive_failures += 1
        if action == "FailJob" and tr.failure_target is None:
            tr.failure_target = ("PodFailurePolicy", message)

    def _pod_failure_policy(self, job: Obj, pod: Obj) -> tuple[str, str]:
        """First matching rule's action (kubernetes.io/docs/concepts/workloads/controllers/job/#pod-failure-policy)."""
        rules = ((job["spec"].get("podFailurePolicy") or {}).get("rules")) or []
        if not is_terminal(pod):
            return "Count", ""  # only Failed pods are matched against the policy
        meta = pod["metadata"]
        for i, rule in enumerate(rules):
            codes = rule.get("onExitCodes")
            if codes is not None:
                for cs in pod.get("status", {}).get("containerStatuses") or []:
                    if codes.get("containerName") not in (None, cs["name"]):
                        continue
                    term = cs.get("state", {}).get("terminated")
                    if not term or term.get("exitCode") == 0:
                        continue
                    code = term["exitCode"]
                    inside = code in codes.get("values", [])
                    if inside == (codes.get("operator") == "In"):
                        msg = (
                            f"Container {cs['name']} for pod {meta['namespace']}/{meta['name']} failed with exit "
                            f"code {code} matching {rule['action']} rule at index {i}"
                        )
                        return rule["action"], msg
                continue
            for pat in rule.get("onPodConditions") or []:
                for c in pod.get("status", {}).get("conditions") or []:
                    if c.get("type") == pat.get("type") and c.get("status") == pat.get("status", "True"):
                        msg = (
                            f"Pod {meta['namespace']}/{meta['name']} has condition {c['type']} matching "
                            f"{rule['action']} rule at index {i}"
                        )
                        return rule["action"], msg
        return "Count", ""

    # -- the reconcile -------------------------------------------------------------------------------------------

    def _pods_of(self, job: Obj) -> list[Obj]:
        uid = job["metadata"]["uid"]
        items, _ = self.store.list_objects("pods", job["metadata"]["namespace"])
        return [p for p in items if (controller_of(p) or {}).get("uid") == uid]

    def sync(self, ns: str, name: str) -> None:
        job = self.store.get("jobs", ns, name)
        if job is None:
            return
        uid = job["metadata"]["uid"]
        tr = self._tracking.setdefault(uid, _Tracking())
        pods = self._pods_of(job)
        for p in pods:
            # Count pods that finished before their own pod_done event reached us (finalizer-style tracking), and
            # terminating ones: upstream's isPodFailed (pkg/controller/job/job_controller.go, v1.33/1.34) counts a
            # pod with a deletionTimestamp that has not succeeded as failed at once ("Count deleted Pods as failures
            # to account for orphan Pods that never have a chance to reach the Failed phase"), unless
            # podReplacementPolicy is Failed (the default with a podFailurePolicy). So a running pod of a
            # backoffLimit-0 Job that is deleted fails the Job (failed: 1) and is never replaced.
            if is_terminal(p) or _counts_as_failed(job, p):
                self._count(ns, name, uid, p)
        if job["metadata"].get("deletionTimestamp"):
            self._finalize_deletion(job, pods)
            return
        if is_finished(job):
            self._schedule_ttl(job, tr)
            return
        spec = job["spec"]
        active = [p for p in pods if not is_terminal(p) and not p["metadata"].get("deletionTimestamp")]
        terminating = [p for p in pods if not is_terminal(p) and p["metadata"].get("deletionTimestamp")]
        restarts = 0
        if spec["template"]["spec"].get("restartPolicy") == "OnFailure":
            restarts = sum(
                cs.get("restartCount", 0) for p in active for cs in p["status"].get("containerStatuses") or []
            )
        failed = len(tr.failed) + restarts
        succeeded = len(tr.succeeded)
        completions = spec.get("completions")
        parallelism = spec.get("parallelism", 1)
        now = time.monotonic()

        target = condition(job, "FailureTarget") or condition(job, "SuccessCriteriaMet")
        new_target: dict[str, Any] | None = None
        if target is None:
            deadline = spec.get("activeDeadlineSeconds")
            if tr.failure_target is not None:
                new_target = _cond("FailureTarget", "True", *tr.failure_target)
            elif failed > spec.get("backoffLimit", 6):
                new_target = _cond(
                    "FailureTarget", "True", "BackoffLimitExceeded", "Job has reached the specified backoff limit"
                )
            elif deadline is not None and tr.start is not None and now - tr.start >= deadline:
                new_target = _cond(
                    "FailureTarget", "True", "DeadlineExceeded", "Job was active longer than specified deadline"
                )
            elif (completions is not None and succeeded >= completions) or (
                completions is None and succeeded > 0 and not active
            ):
                new_target = _cond(
                    "SuccessCriteriaMet", "True", "CompletionsReached", "Reached expected number of succeeded pods"
                )
        if target is not None or new_target is not None:
            # Interim condition first; the terminal one only once no pod of the Job is still terminating (1.31+).
            for p in active:
                self._delete_pod(p)
            remaining = active + terminating
            self._write_status(job, tr, active=[], failed=failed, interim=new_target, terminating=len(remaining))
            if not remaining:
                job = self.store.get("jobs", ns, name) or job
                self._finish(job, tr)
            return

        # Suspended (after the failure checks, as upstream's syncJob: a pod the suspension deleted counts as failed
        # and can exceed backoffLimit): no pods.
        if spec.get("suspend"):
            for p in active:
                self._delete_pod(p)
            self._write_status(job, tr, active=[], failed=failed, suspended=True, terminating=len(terminating))
            return

        if tr.start is None:
            tr.start = now
            if spec.get("activeDeadlineSeconds") is not None:
                self._after(float(spec["activeDeadlineSeconds"]), ("sync", ns, name))

        # Pod creation: keep min(parallelism, remaining completions) pods active.
        want = parallelism if completions is None else min(parallelism, max(0, completions - succeeded))
        if completions is None and succeeded > 0:
            want = 0
        busy = len(active) + (len(terminating) if spec.get("podReplacementPolicy") == "Failed" else 0)
        to_create = max(0, want - busy)
        if to_create and tr.consecutive_failures and self.backoff_base > 0 and tr.last_failure is not None:
            delay = min(self.backoff_cap, self.backoff_base * 2 ** (tr.consecutive_failures - 1))
            ready_at = tr.last_failure + delay
            if now < ready_at:
                self._after(ready_at - now, ("sync", ns, name))
                to_create = 0
        for _ in range(to_create):
            created = self._create_pod(job)
            if created is None:
                return
            active.append(created)
        self._write_status(job, tr, active=active, failed=failed, terminating=len(terminating))

    def _write_status(
        self,
        job: Obj,
        tr: _Tracking,
        active: list[Obj],
        failed: int,
        interim: dict[str, Any] | None = None,
        suspended: bool = False,
        terminating: int = 0,
    ) -> None:
        ready = sum(
            1
            for p in active
            if any(c["type"] == "Ready" and c["status"] == "True" for c in p.get("status", {}).get("conditions") or [])
        )
        succeeded = len(tr.succeeded)

        def apply(j: Obj) -> Obj:
            st = j.setdefault("status", {})
            # active/succeeded/failed are omitempty ints: absent (None in the client) when zero. ready and
            # terminating are pointers the v1.33 controller always sets, so 0 is written; uncountedTerminatedPods
            # is a pointer too, {} when nothing is pending (seen on upstream v1.33.13, docs/upstream.md).
            for key, value in (("active", len(active)), ("succeeded", succeeded), ("failed", failed)):
                if value:
                    st[key] = value
                else:
                    st.pop(key, None)
            st["ready"] = ready
            st["terminating"] = terminating
            st.setdefault("uncountedTerminatedPods", {})
            if suspended:
                set_condition(st, _cond("Suspended", "True", "JobSuspended", "Job suspended"))
                st.pop("startTime", None)
            else:
                if condition(j, "Suspended"):
                    set_condition(st, _cond("Suspended", "False", "JobResumed", "Job resumed"))
                st.setdefault("startTime", now_iso())
            if interim is not None:
                set_condition(st, interim)
            return j

        self.store.mutate("jobs", job["metadata"]["namespace"], job["metadata"]["name"], apply)

    def _finish(self, job: Obj, tr: _Tracking) -> None:
        target = condition(job, "FailureTarget")
        success = condition(job, "SuccessCriteriaMet")

        def apply(j: Obj) -> Obj:
            st = j.setdefault("status", {})
            if target is not None:
                set_condition(st, _cond("Failed", "True", target.get("reason"), target.get("message")))
            elif success is not None:
                set_condition(st, _cond("Complete", "True", success.get("reason"), success.get("message")))
                st["completionTime"] = now_iso()  # only successful Jobs get a completionTime
            return j

        out = self.store.mutate("jobs", job["metadata"]["namespace"], job["metadata"]["name"], apply)
        tr.finished_at = time.monotonic()
        if out is not None:
            self._schedule_ttl(out, tr)

    def _create_pod(self, job: Obj) -> Obj | None:
        meta = job["metadata"]
        tmpl = copy.deepcopy(job["spec"]["template"])
        tmeta = tmpl.get("metadata") or {}
        spec = tmpl["spec"]
        spec.setdefault("serviceAccountName", "default")
        spec.setdefault("serviceAccount", spec["serviceAccountName"])
        spec.setdefault("enableServiceLinks", True)
        spec.setdefault("priority", 0)
        spec.setdefault("preemptionPolicy", "PreemptLowerPriority")
        spec.setdefault(
            "tolerations",
            [
                {
                    "key": "node.kubernetes.io/not-ready",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
                {
                    "key": "node.kubernetes.io/unreachable",
                    "operator": "Exists",
                    "effect": "NoExecute",
                    "tolerationSeconds": 300,
                },
            ],
        )
        pod = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": generate_name(meta["name"] + "-"),
                "generateName": meta["name"] + "-",
                "namespace": meta["namespace"],
                "labels": dict(tmeta.get("labels") or {}),
                "annotations": {**(tmeta.get("annotations") or {}), "batch.kubernetes.io/job-tracking": ""},
                "ownerReferences": [
                    {
                        "apiVersion": "batch/v1",
                        "kind": "Job",
                        "name": meta["name"],
                        "uid": meta["uid"],
                        "controller": True,
                        "blockOwnerDeletion": True,
                    }
                ],
            },
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": qos_class(spec)},
        }
        with self.store.cond:
            cur = self.store.get("jobs", meta["namespace"], meta["name"])
            if cur is None or cur["metadata"]["uid"] != meta["uid"] or cur["metadata"].get("deletionTimestamp"):
                return None
            try:
                if self.quotas is not None:
                    self.quotas.admit(pod)
                return self.store.create("pods", pod)
            except ApiError as exc:
                if exc.code == 403 and self.quotas is not None:  # refused by admission: retried when capacity frees
                    self.quotas.refused(cur, exc)
                    return None
                # a generated-name collision: the next sync retries
                self._queue.put(("sync", meta["namespace"], meta["name"]))
                return None

    def _delete_pod(self, pod: Obj) -> None:
        with contextlib.suppress(ApiError):  # already gone
            self.kubelet.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], None)

    # -- deletion: garbage collector and TTL ---------------------------------------------------------------------

    def _finalize_deletion(self, job: Obj, pods: list[Obj]) -> None:
        meta = job["metadata"]
        finalizers = meta.get("finalizers") or []
        ns, name = meta["namespace"], meta["name"]
        if FINALIZER_ORPHAN in finalizers:
            for p in pods:

                def drop_owner(pod: Obj, uid: str = meta["uid"]) -> Obj:
                    pod["metadata"]["ownerReferences"] = [
                        r for r in pod["metadata"].get("ownerReferences") or [] if r.get("uid") != uid
                    ]
                    if not pod["metadata"]["ownerReferences"]:
                        del pod["metadata"]["ownerReferences"]
                    return pod

                self.store.mutate("pods", ns, p["metadata"]["name"], drop_owner)
            self._remove_finalizer(job, FINALIZER_ORPHAN)
        elif FINALIZER_FOREGROUND in finalizers:
            for p in pods:
                if not p["metadata"].get("deletionTimestamp"):
                    self._delete_pod(p)
            if not self._pods_of(job):
                self._remove_finalizer(job, FINALIZER_FOREGROUND)
        else:
            self.store.remove("jobs", ns, name)

    def _remove_finalizer(self, job: Obj, fin: str) -> None:
        meta = job["metadata"]
        with self.store.cond:

            def drop(j: Obj) -> Obj:
                j["metadata"]["finalizers"] = [f for f in j["metadata"].get("finalizers") or [] if f != fin]
                return j

            out = self.store.mutate("jobs", meta["namespace"], meta["name"], drop)
            if out is not None and not out["metadata"]["finalizers"]:
                self.store.remove("jobs", meta["namespace"], meta["name"])

    def _collect_orphans(self, ns: str, owner_uid: str) -> None:
        # The garbage collector (background propagation): a dependent whose owners are all gone is deleted; one that
        # still has another owner only loses the dangling reference. Owners may be Jobs or Pods (e.g. a master pod
        # owning the Jobs it launched).
        self._tracking.pop(owner_uid, None)
        for resource in ("pods", "jobs"):
            items, _ = self.store.list_objects(resource, ns)
            for obj in items:
                refs = obj["metadata"].get("ownerReferences") or []
                if not any(r.get("uid") == owner_uid for r in refs) or obj["metadata"].get("deletionTimestamp"):
                    continue
                name = obj["metadata"]["name"]
                if all(r.get("uid") == owner_uid for r in refs):
                    if resource == "pods":
                        self._delete_pod(obj)
                    else:
                        with contextlib.suppress(ApiError):
                            delete_job(self.store, ns, name, "Background")
                    continue

                def drop(o: Obj) -> Obj:
                    o["metadata"]["ownerReferences"] = [
                        r for r in o["metadata"]["ownerReferences"] if r.get("uid") != owner_uid
                    ]
                    return o

                self.store.mutate(resource, ns, name, drop)

    def _schedule_ttl(self, job: Obj, tr: _Tracking) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        if ttl is None or tr.ttl_scheduled:
            return
        tr.ttl_scheduled = True
        meta = job["metadata"]
        self._after(float(ttl), ("ttl", meta["namespace"], meta["name"], meta["uid"]))

    def _ttl_expired(self, ns: str, name: str, uid: str) -> None:
        # The TTL-after-finished controller deletes with Foreground propagation.
        job = self.store.get("jobs", ns, name)
        if job is not None and job["metadata"]["uid"] == uid:
            delete_job(self.store, ns, name, "Foreground")


def delete_job(
    store: Store, ns: str, name: str, policy: str | None, preconditions: dict[str, Any] | None = None
) -> Obj:
    """DELETE of a Job: returns what the apiserver returns (the object while finalizers run, else the last state).

    A Job deleted without a propagationPolicy orphans its pods (batch/v1's default GC policy).
    """
    with store.cond:
        job = store.require("jobs", ns, name)
        meta = job["metadata"]
        if preconditions:
            if preconditions.get("uid") not in (None, meta["uid"]):
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if preconditions.get("resourceVersion") not in (None, meta["resourceVersion"]):
                raise ApiError(
                    409,
                    "Conflict",
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{preconditions['resourceVersion']}, ResourceVersion in object meta: "
                    f"{meta['resourceVersion']}",
                )
        policy = policy or "Orphan"
        if meta.get("deletionTimestamp"):
            return job
        if policy == "Background":
            final = store.remove("jobs", ns, name)
            assert final is not None
            return final
        fin = FINALIZER_ORPHAN if policy == "Orphan" else FINALIZER_FOREGROUND

        def mark(j: Obj) -> Obj:
            j["metadata"]["deletionTimestamp"] = now_iso()
            j["metadata"]["deletionGracePeriodSeconds"] = 0
            j["metadata"]["finalizers"] = [*(j["metadata"].get("finalizers") or []), fin]
            return j

        out = store.mutate("jobs", ns, name, mark)
        assert out is not None
        return out


__all__ = ["CONTROLLER_UID_LABEL", "JobController", "delete_job", "is_finished"]
