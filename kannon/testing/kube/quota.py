"""ResourceQuota on pods, as the apiserver's ResourceQuota admission plugin and the Job controller see it.

Upstream (https://kubernetes.io/docs/concepts/policy/resource-quotas/): a namespace's ResourceQuota ``spec.hard``
caps the sum over its non-terminal pods of ``pods`` (count), ``requests.cpu``/``cpu``, ``requests.memory``/``memory``
and ``limits.cpu``/``limits.memory``; a create that would exceed it is refused with 403 Forbidden
``pods "NAME" is forbidden: exceeded quota: QUOTA, requested: ..., used: ..., limited: ...``. The Job controller
then records a ``FailedCreate`` Warning event on the Job (``Error creating: <that message>``,
https://kubernetes.io/docs/concepts/workloads/controllers/job/) and tries again on a later sync: here, whenever a pod
of the namespace finishes or is deleted (capacity freed) or the quota changes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

from kannon.testing.kube import podresources
from kannon.testing.kube.errors import ApiError
from kannon.testing.kube.node.status import is_terminal
from kannon.testing.kube.store import Change, Obj, Store, now_iso

#: quota key -> (resource kind in the container, which of requests/limits counts)
_KEYS = {"requests.cpu": ("cpu", "requests"), "cpu": ("cpu", "requests"), "limits.cpu": ("cpu", "limits"),
         "requests.memory": ("memory", "requests"), "memory": ("memory", "requests"),
         "limits.memory": ("memory", "limits")}  # fmt: skip


def _usage(pod: Obj, key: str) -> Decimal:
    if key == "pods":
        return Decimal(1)
    res, which = _KEYS[key]
    return podresources.effective(pod["spec"], which).get(res, Decimal(0))  # init containers and sidecars included


def _fmt(value: Decimal) -> str:
    return str(int(value)) if value == value.to_integral_value() else f"{int(value * 1000)}m"


class ResourceQuotas:
    """The quotas of every namespace, the admission check, and the Job controller's retry when capacity frees."""

    def __init__(self, store: Store, resync: Callable[[str, str], None]) -> None:
        self.store = store
        self._resync = resync  # (namespace, job name): ask the Job controller to sync that Job again
        self._refused: dict[str, set[str]] = {}  # namespace -> Jobs whose pod creation was refused
        self._lock = threading.Lock()
        store.add_listener(self._on_change)

    def set(self, namespace: str, name: str, hard: dict[str, Any]) -> None:
        """Create or replace ResourceQuota ``name`` with ``spec.hard`` (e.g. ``{"pods": 1, "requests.cpu": "1"}``)."""
        obj = {"apiVersion": "v1", "kind": "ResourceQuota", "metadata": {"name": name, "namespace": namespace},
               "spec": {"hard": {k: str(v) for k, v in hard.items()}}}  # fmt: skip
        with self.store.cond:
            if self.store.get("resourcequotas", namespace, name) is None:
                self.store.create("resourcequotas", obj)
            else:
                self.store.mutate("resourcequotas", namespace, name, lambda q: {**q, "spec": obj["spec"]})
        self._retry(namespace)

    def remove(self, namespace: str, name: str) -> None:
        self.store.remove("resourcequotas", namespace, name)
        self._retry(namespace)

    def admit(self, pod: Obj) -> None:
        """Raise the apiserver's 403 when creating ``pod`` would exceed a quota of its namespace."""
        ns, name = pod["metadata"]["namespace"], pod["metadata"]["name"]
        quotas, _ = self.store.list_objects("resourcequotas", ns)
        if not quotas:
            return
        pods, _ = self.store.list_objects("pods", ns)
        live = [p for p in pods if not is_terminal(p)]
        for q in quotas:
            hard = q["spec"].get("hard") or {}
            over = []
            for key in sorted(k for k in hard if k == "pods" or k in _KEYS):
                want = _usage(pod, key)
                used = sum((_usage(p, key) for p in live), Decimal(0))
                if want and used + want > parse_quantity(hard[key]):
                    over.append((key, want, used, parse_quantity(hard[key])))
            if over:
                def part(i: int) -> str:
                    return ",".join(f"{k}={_fmt(v[i - 1])}" for k, *v in over)  # noqa: B023

                raise ApiError(403, "Forbidden", f'pods "{name}" is forbidden: exceeded quota: '
                               f"{q['metadata']['name']}, requested: {part(1)}, used: {part(2)}, "
                               f"limited: {part(3)}")  # fmt: skip

    def refused(self, job: Obj, error: ApiError) -> None:
        """The Job controller's pod create was refused: a FailedCreate event, and a retry once capacity frees."""
        meta = job["metadata"]
        with self._lock:
            self._refused.setdefault(meta["namespace"], set()).add(meta["name"])
        record_event(self.store, job, "Warning", "FailedCreate", f"Error creating: {error.message}", "job-controller")

    def _on_change(self, ch: Change) -> None:  # under the store lock
        if ch.resource == "pods" and (ch.type == "DELETED" or (is_terminal(ch.obj) and not
                                                              (ch.old is not None and is_terminal(ch.old)))):
            self._retry(ch.obj["metadata"]["namespace"])

    def _retry(self, namespace: str) -> None:
        with self._lock:
            jobs = self._refused.pop(namespace, set())
        for job in sorted(jobs):
            self._resync(namespace, job)


def record_event(store: Store, obj: Obj, etype: str, reason: str, message: str, component: str) -> Obj:
    """A core/v1 Event about ``obj``; a repeat of the same reason and message bumps ``count`` (event aggregation)."""
    meta = obj["metadata"]
    ns = meta["namespace"]
    with store.cond:
        for ev in store.by_index("events", "involved", meta["uid"], ns):  # the events about this very object
            if ev.get("reason") == reason and ev.get("message") == message:

                def bump(e: Obj) -> Obj:
                    e["count"] = int(e.get("count", 1)) + 1
                    e["lastTimestamp"] = now_iso()
                    return e

                out = store.mutate("events", ns, ev["metadata"]["name"], bump)
                assert out is not None
                return out
        stamp = now_iso()
        return store.create("events", {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:16]}", "namespace": ns},
            "involvedObject": {"apiVersion": obj.get("apiVersion", "batch/v1"), "kind": obj.get("kind", "Job"),
                               "name": meta["name"], "namespace": ns, "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion")},
            "reason": reason, "message": message, "type": etype, "count": 1,
            "firstTimestamp": stamp, "lastTimestamp": stamp, "source": {"component": component},
            "reportingComponent": component, "reportingInstance": "",
        })  # fmt: skip
