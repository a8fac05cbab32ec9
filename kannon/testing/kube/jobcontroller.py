"""The Job controller: counts a Job's finished pods, applies its pod failure policy, backoffLimit and
activeDeadlineSeconds, keeps its pods running and writes its status.

Behaviour from kubernetes.io/docs/concepts/workloads/controllers/job/ (backoffLimit, pod failure policy,
activeDeadlineSeconds, terminal conditions with SuccessCriteriaMet/FailureTarget first since 1.31, counters). It runs
on the controller manager's thread (controller.py); a Job being deleted goes to the garbage collector and a finished
one to the TTL-after-finished controller (deletion.py).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kannon.testing.kube.deletion import GarbageCollector, TtlAfterFinished, delete_pod, pods_of
from kannon.testing.kube.errors import ApiError
from kannon.testing.kube.node.kubelet import Kubelet
from kannon.testing.kube.node.status import _cond, is_terminal, set_condition
from kannon.testing.kube.podresources import qos_class
from kannon.testing.kube.quota import ResourceQuotas
from kannon.testing.kube.store import Obj, Store, now_iso
from kannon.testing.kube.validation import generate_name


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


def _counts_as_failed(job: Obj, pod: Obj) -> bool:
    if job["spec"].get("podReplacementPolicy") == "Failed":
        return False
    return bool(pod["metadata"].get("deletionTimestamp")) and pod.get("status", {}).get("phase") != "Succeeded"


class JobController:
    def __init__(
        self,
        store: Store,
        kubelet: Kubelet,
        gc: GarbageCollector,
        ttl: TtlAfterFinished,
        after: Callable[[float, tuple[Any, ...]], None],
        resync: Callable[[str, str], None],
        backoff_base: float = 0.0,
        backoff_cap: float = 360.0,
    ) -> None:
        self.store = store
        self.kubelet = kubelet
        self.gc = gc
        self.ttl = ttl
        self._after = after  # the controller manager's timer: ("sync", ns, name) comes back to sync()
        self._resync = resync
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._tracking: dict[str, _Tracking] = {}
        self.quotas: ResourceQuotas | None = None  # the ResourceQuota admission check on pod creation (quota.py)

    def forget(self, uid: str) -> None:
        """The Job ``uid`` is gone: drop what was counted for it."""
        self._tracking.pop(uid, None)

    # -- counting ----------------------------------------------------------------------------------------------

    def count(self, ns: str, job_name: str, job_uid: str, pod: Obj) -> None:
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

    def sync(self, ns: str, name: str) -> None:
        job = self.store.get("jobs", ns, name)
        if job is None:
            return
        uid = job["metadata"]["uid"]
        tr = self._tracking.setdefault(uid, _Tracking())
        pods = pods_of(self.store, job)
        for p in pods:
            # Count pods that finished before their own pod_done event reached us (finalizer-style tracking), and
            # terminating ones: upstream's isPodFailed (pkg/controller/job/job_controller.go, v1.33/1.34) counts a
            # pod with a deletionTimestamp that has not succeeded as failed at once ("Count deleted Pods as failures
            # to account for orphan Pods that never have a chance to reach the Failed phase"), unless
            # podReplacementPolicy is Failed (the default with a podFailurePolicy). So a running pod of a
            # backoffLimit-0 Job that is deleted fails the Job (failed: 1) and is never replaced.
            if is_terminal(p) or _counts_as_failed(job, p):
                self.count(ns, name, uid, p)
        if job["metadata"].get("deletionTimestamp"):
            self.gc.finalize_deletion(job, pods)
            return
        if is_finished(job):
            self.ttl.schedule(job)
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
                delete_pod(self.kubelet, p)
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
                delete_pod(self.kubelet, p)
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
            self.ttl.schedule(out)

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
                self._resync(meta["namespace"], meta["name"])
                return None
