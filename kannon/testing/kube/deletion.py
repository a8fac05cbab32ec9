"""Deleting Jobs and their pods: the API server's DELETE of a Job, the garbage collector and the TTL-after-finished
controller.

Behaviour from kubernetes.io/docs/concepts/architecture/garbage-collection/ (orphan / background / foreground
cascading deletion, through the ``orphan`` and ``foregroundDeletion`` finalizers) and
kubernetes.io/docs/concepts/workloads/controllers/ttlafterfinished/ (Foreground deletion after
ttlSecondsAfterFinished). Both controllers run on the controller manager's thread (controller.py).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from kannon.testing.kube.errors import ApiError
from kannon.testing.kube.node.kubelet import Kubelet
from kannon.testing.kube.store import Obj, Store, now_iso

FINALIZER_ORPHAN = "orphan"
FINALIZER_FOREGROUND = "foregroundDeletion"


def controller_of(obj: Obj) -> dict[str, Any] | None:
    """The ownerReference of the Job that controls ``obj``, if any."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller") and ref.get("kind") == "Job":
            return dict(ref)
    return None


def pods_of(store: Store, job: Obj) -> list[Obj]:
    """The pods ``job`` controls (its dependents), terminating ones included."""
    uid = job["metadata"]["uid"]
    items = store.by_index("pods", "owner", uid, job["metadata"]["namespace"])
    return [p for p in items if (controller_of(p) or {}).get("uid") == uid]


def delete_pod(kubelet: Kubelet, pod: Obj) -> None:
    with contextlib.suppress(ApiError):  # already gone
        kubelet.delete_pod(pod["metadata"]["namespace"], pod["metadata"]["name"], None)


class GarbageCollector:
    """Cascading deletion: the finalizers of a Job being deleted, and dependents whose owners are gone."""

    def __init__(self, store: Store, kubelet: Kubelet) -> None:
        self.store = store
        self.kubelet = kubelet

    def finalize_deletion(self, job: Obj, pods: list[Obj]) -> None:
        """Work on a Job that has a deletionTimestamp; ``pods`` are its pods."""
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
                    delete_pod(self.kubelet, p)
            if not pods_of(self.store, job):
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

    def collect_orphans(self, ns: str, owner_uid: str) -> None:
        # The garbage collector (background propagation): a dependent whose owners are all gone is deleted; one that
        # still has another owner only loses the dangling reference. Owners may be Jobs or Pods (e.g. a master pod
        # owning the Jobs it launched).
        for resource in ("pods", "jobs"):
            for obj in self.store.by_index(resource, "owner", owner_uid, ns):  # each has owner_uid among its owners
                refs = obj["metadata"].get("ownerReferences") or []
                if obj["metadata"].get("deletionTimestamp"):
                    continue
                name = obj["metadata"]["name"]
                if all(r.get("uid") == owner_uid for r in refs):
                    if resource == "pods":
                        delete_pod(self.kubelet, obj)
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


class TtlAfterFinished:
    """Deletes a finished Job ``ttlSecondsAfterFinished`` after it finished, with Foreground propagation."""

    def __init__(self, store: Store, after: Callable[[float, tuple[Any, ...]], None]) -> None:
        self.store = store
        self._after = after  # the controller manager's timer: ("ttl", ns, name, uid) comes back to expired()
        self._scheduled: set[str] = set()  # uids of the Jobs whose timer is set

    def schedule(self, job: Obj) -> None:
        ttl = job["spec"].get("ttlSecondsAfterFinished")
        meta = job["metadata"]
        if ttl is None or meta["uid"] in self._scheduled:
            return
        self._scheduled.add(meta["uid"])
        self._after(float(ttl), ("ttl", meta["namespace"], meta["name"], meta["uid"]))

    def forget(self, uid: str) -> None:
        """The Job ``uid`` is gone."""
        self._scheduled.discard(uid)

    def expired(self, ns: str, name: str, uid: str) -> None:
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
