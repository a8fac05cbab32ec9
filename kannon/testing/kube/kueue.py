"""A Kueue-like admission layer: LocalQueue -> ClusterQueue quota, the Job webhook's suspend, Workload objects.

What it follows (upstream docs):

* https://kueue.sigs.k8s.io/docs/concepts/ — a Job labelled ``kueue.x-k8s.io/queue-name: <LocalQueue>`` is created
  suspended by Kueue's mutating webhook; Kueue creates a Workload for it; the Job is unsuspended only once the
  Workload is admitted.
* https://kueue.sigs.k8s.io/docs/concepts/workload/ — Workload conditions ``QuotaReserved``, ``Admitted``,
  ``Evicted``, ``Requeued``, ``Finished``; a Workload waiting for quota has ``QuotaReserved=False`` reason
  ``Pending`` with a message saying what does not fit.
* https://kueue.sigs.k8s.io/docs/concepts/cluster_queue/ — quota per resource (``cpu``, ``memory``, ``pods``);
  ``queueingStrategy`` ``BestEffortFIFO`` (default: a head that does not fit does not block smaller ones behind it)
  or ``StrictFIFO``; ``stopPolicy: Hold`` stops new admissions.
* https://kueue.sigs.k8s.io/docs/concepts/preemption/ and
  https://kueue.sigs.k8s.io/docs/tasks/troubleshooting/troubleshooting_jobs/ — a preempted Workload gets
  ``Evicted=True`` reason ``Preempted``; its Job is suspended again (the Job controller deletes the pods); once no pod
  is active the quota is released and the Workload is requeued (back of the queue: requeue by eviction time).

Served read-only at ``/apis/kueue.x-k8s.io/v1beta1/namespaces/NS/workloads`` (the official client's
CustomObjectsApi reads it). Tests drive it through ``KubeEmulator.kueue``.
"""

from __future__ import annotations

import hashlib
import queue
import threading
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from kannon.testing.kube import podresources
from kannon.testing.kube.node.status import _cond, set_condition
from kannon.testing.kube.store import Change, Obj, Store

GROUP = "kueue.x-k8s.io"
VERSION = "v1beta1"
QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
JOB_UID_LABEL = "kueue.x-k8s.io/job-uid"
RESOURCES = ("cpu", "memory", "pods")


def pod_set_requests(job: Obj) -> dict[str, Decimal]:
    """What a Job's Workload asks of the quota: its containers' requests (limits when unset) times parallelism."""
    spec = job["spec"]
    pod_spec = spec["template"]["spec"]
    count = int(spec.get("parallelism", 1) or 1)
    asked = podresources.effective(pod_spec)  # Kueue charges the pod's effective requests, init containers included
    return {"cpu": asked.get("cpu", Decimal(0)) * count, "memory": asked.get("memory", Decimal(0)) * count,
            "pods": Decimal(count)}


@dataclass
class ClusterQueue:
    name: str
    quota: dict[str, Decimal]
    strategy: str = "BestEffortFIFO"
    held: bool = False
    admitted: set[tuple[str, str]] = field(default_factory=set)  # (ns, workload name)


@dataclass
class _Entry:
    """One Workload Kueue knows of, with its place in the queue (a counter: FIFO by creation, then by eviction)."""

    ns: str
    name: str
    job: str
    queue: str
    requests: dict[str, Decimal]
    order: int
    state: str = "pending"  # pending | admitted | evicting | finished


class Kueue:
    """The emulated Kueue controller (one thread), its webhook (``mutate_job``) and the test controls."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self.cluster_queues: dict[str, ClusterQueue] = {}
        self.local_queues: dict[tuple[str, str], str] = {}  # (ns, LocalQueue) -> ClusterQueue
        self._entries: dict[tuple[str, str], _Entry] = {}  # (ns, job name) -> entry
        self._order = 0
        self._lock = threading.RLock()
        self._queue: queue.Queue[tuple[str, str, str] | None] = queue.Queue()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="kube-kueue")
        self._running = threading.Event()  # cleared by pause(): the controller is late, as a busy Kueue can be
        self._running.set()
        store.add_listener(self._on_change)

    # -- test controls ---------------------------------------------------------------------------------------
    def add_cluster_queue(
        self, name: str, *, cpu: str | None = None, memory: str | None = None, pods: int | None = None,
        strategy: str = "BestEffortFIFO", held: bool = False,
    ) -> None:  # fmt: skip
        """A ClusterQueue with nominal quota for the given resources (unset: unlimited)."""
        quota = {k: parse_quantity(v) for k, v in (("cpu", cpu), ("memory", memory), ("pods", pods)) if v is not None}
        with self._lock:
            self.cluster_queues[name] = ClusterQueue(name, quota, strategy, held)
        self._schedule()

    def add_local_queue(self, namespace: str, name: str, cluster_queue: str) -> None:
        with self._lock:
            self.local_queues[(namespace, name)] = cluster_queue
        self._schedule()

    def hold(self, cluster_queue: str, held: bool = True) -> None:
        """``stopPolicy: Hold`` (True) or none (False): a held ClusterQueue admits nothing new."""
        with self._lock:
            self.cluster_queues[cluster_queue].held = held
        self._schedule()

    def preempt(self, job: str, namespace: str = "default") -> None:
        """Evict the admitted Workload of Job ``job`` as a preemption would: Evicted=True, the Job suspended."""
        with self._lock:
            entry = self._entries[(namespace, job)]
            if entry.state != "admitted":
                raise ValueError(f"the Workload of Job {job} is {entry.state}, not admitted")
            entry.state = "evicting"
        msg = "Preempted to accommodate a workload due to prioritization in the ClusterQueue"

        def evict(wl: Obj) -> Obj:
            st = wl.setdefault("status", {})
            set_condition(st, _cond("Evicted", "True", "Preempted", msg))
            set_condition(st, _cond("QuotaReserved", "False", "Preempted", msg))
            set_condition(st, _cond("Admitted", "False", "NoReservation", "The workload has no reservation"))
            st.pop("admission", None)
            return wl

        self.store.mutate("workloads", namespace, entry.name, evict)
        self._set_suspend(namespace, job, True)

    def pause(self) -> None:
        """Hold the controller back (the webhook still suspends): Jobs wait without a Workload until ``resume``."""
        self._running.clear()

    def resume(self) -> None:
        self._running.set()

    def workload_of(self, job: str, namespace: str = "default") -> Obj | None:
        with self._lock:
            entry = self._entries.get((namespace, job))
        return None if entry is None else self.store.get("workloads", namespace, entry.name)

    def admitted(self, cluster_queue: str) -> int:
        with self._lock:
            return len(self.cluster_queues[cluster_queue].admitted)

    # -- the webhook -----------------------------------------------------------------------------------------
    def mutate_job(self, body: Obj) -> Obj:
        """Kueue's Job webhook: a Job with the queue-name label is created suspended."""
        if QUEUE_LABEL in ((body.get("metadata") or {}).get("labels") or {}):
            body.setdefault("spec", {})["suspend"] = True
        return body

    # -- lifecycle -----------------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._running.set()
        self._queue.put(None)
        self._thread.join(10)

    def _on_change(self, ch: Change) -> None:  # under the store lock: only enqueue
        if ch.resource == "jobs":
            meta = ch.obj["metadata"]
            self._queue.put((ch.type, meta["namespace"], meta["name"]))

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            self._running.wait()
            kind, ns, name = item
            if kind == "DELETED":
                self._forget(ns, name)
            else:
                self._job_changed(ns, name)
            self._schedule()

    # -- the controller ------------------------------------------------------------------------------------
    def _job_changed(self, ns: str, name: str) -> None:
        job = self.store.get("jobs", ns, name)
        if job is None:
            return
        lq = (job["metadata"].get("labels") or {}).get(QUEUE_LABEL)
        with self._lock:
            entry = self._entries.get((ns, name))
        if lq is None:
            return
        if entry is None:
            self._create_workload(job, lq)
            return
        st = job.get("status") or {}
        finished = any(c.get("type") in ("Complete", "Failed") and c.get("status") == "True"
                       for c in st.get("conditions") or [])  # fmt: skip
        if finished and entry.state != "finished":
            self._release(entry)
            entry.state = "finished"
            self.store.mutate("workloads", ns, entry.name, _finished(job))
        elif entry.state == "evicting" and job["spec"].get("suspend") and not st.get("active"):
            # the pods are gone: the quota is released and the Workload goes to the back of its queue
            self._release(entry)
            with self._lock:
                entry.state, self._order = "pending", self._order + 1
                entry.order = self._order

            def requeue(wl: Obj) -> Obj:
                set_condition(wl.setdefault("status", {}), _cond("Requeued", "True", "Preempted",
                                                                   "The workload was requeued after preemption"))
                return wl

            self.store.mutate("workloads", ns, entry.name, requeue)

    def _create_workload(self, job: Obj, lq: str) -> None:
        meta = job["metadata"]
        ns, name = meta["namespace"], meta["name"]
        wl_name = f"job-{name}-{hashlib.sha256(meta['uid'].encode()).hexdigest()[:5]}"
        requests = pod_set_requests(job)
        wl = {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "Workload",
            "metadata": {
                "name": wl_name, "namespace": ns, "labels": {JOB_UID_LABEL: meta["uid"]},
                "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": name, "uid": meta["uid"],
                                     "controller": True, "blockOwnerDeletion": True}],
            },
            "spec": {"queueName": lq, "priority": 0, "active": True,
                     "podSets": [{"name": "main", "count": int(job["spec"].get("parallelism", 1) or 1),
                                  "template": job["spec"]["template"]}]},
            "status": {"conditions": []},
        }  # fmt: skip
        with self._lock:
            self._order += 1
            self._entries[(ns, name)] = _Entry(ns, wl_name, name, lq, requests, self._order)
        self.store.create("workloads", wl)

    def _forget(self, ns: str, name: str) -> None:
        with self._lock:
            entry = self._entries.pop((ns, name), None)
        if entry is not None:
            self._release(entry)
            self.store.remove("workloads", ns, entry.name)  # the garbage collector follows the ownerReference

    def _release(self, entry: _Entry) -> None:
        with self._lock:
            for cq in self.cluster_queues.values():
                cq.admitted.discard((entry.ns, entry.name))

    def _usage(self, cq: ClusterQueue) -> dict[str, Decimal]:
        used = {r: Decimal(0) for r in RESOURCES}
        for e in self._entries.values():
            if (e.ns, e.name) in cq.admitted:
                for r in RESOURCES:
                    used[r] += e.requests[r]
        return used

    def _schedule(self) -> None:
        """One admission pass: per ClusterQueue, pending Workloads in queue order, admitted while they fit."""
        decisions: list[tuple[_Entry, str | None, str]] = []  # (entry, ClusterQueue or None, message)
        blocked: set[str] = set()  # StrictFIFO queues whose head did not fit: nothing behind it is admitted
        with self._lock:
            for entry in sorted(self._entries.values(), key=lambda e: e.order):
                if entry.state != "pending":
                    continue
                cq_name = self.local_queues.get((entry.ns, entry.queue))
                cq = self.cluster_queues.get(cq_name or "")
                if cq is None:
                    decisions.append((entry, None, f"LocalQueue {entry.queue} doesn't exist"))
                    continue
                if cq.held:
                    decisions.append((entry, None, f"ClusterQueue {cq.name} is inactive"))
                    continue
                used = self._usage(cq)
                short = [r for r, limit in cq.quota.items() if used[r] + entry.requests[r] > limit]
                if short or cq.name in blocked:
                    if cq.strategy == "StrictFIFO":
                        blocked.add(cq.name)
                    r = short[0] if short else next(iter(cq.quota))
                    need = used[r] + entry.requests[r] - cq.quota[r]
                    decisions.append((entry, None, f"couldn't assign flavors to pod set main: insufficient unused "
                                                   f"quota for {r} in flavor default-flavor, {need} more needed"))
                    continue
                cq.admitted.add((entry.ns, entry.name))
                entry.state = "admitted"
                decisions.append((entry, cq.name, f"Quota reserved in ClusterQueue {cq.name}"))
        for entry, cq_name, message in decisions:
            self.store.mutate("workloads", entry.ns, entry.name, _status(cq_name, message))
            if cq_name is not None:
                self._set_suspend(entry.ns, entry.job, False)

    def _set_suspend(self, ns: str, job: str, suspend: bool) -> None:
        def put(j: Obj) -> Obj:
            j["spec"]["suspend"] = suspend
            return j

        self.store.mutate("jobs", ns, job, put)


def _status(cq_name: str | None, message: str) -> Any:
    def apply(wl: Obj) -> Obj:
        st = wl.setdefault("status", {})
        if cq_name is None:
            set_condition(st, _cond("QuotaReserved", "False", "Pending", message))
            return wl
        st["admission"] = {"clusterQueue": cq_name,
                           "podSetAssignments": [{"name": "main", "flavors": {}, "count": wl["spec"]["podSets"][0]
                                                  ["count"]}]}  # fmt: skip
        set_condition(st, _cond("QuotaReserved", "True", "QuotaReserved", message))
        set_condition(st, _cond("Admitted", "True", "Admitted", "The workload is admitted"))
        if any(c["type"] == "Evicted" and c["status"] == "True" for c in st.get("conditions") or []):
            set_condition(st, _cond("Evicted", "False", "QuotaReserved", "Previously: preempted"))
        return wl

    return apply


def _finished(job: Obj) -> Any:
    ok = any(c.get("type") == "Complete" and c.get("status") == "True"
             for c in (job.get("status") or {}).get("conditions") or [])  # fmt: skip

    def apply(wl: Obj) -> Obj:
        reason = "Succeeded" if ok else "Failed"
        set_condition(wl.setdefault("status", {}), _cond("Finished", "True", reason, f"Job {reason.lower()}"))
        return wl

    return apply
