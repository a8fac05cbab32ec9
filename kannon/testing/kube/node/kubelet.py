"""The kubelet of the single emulated node: the scheduler's fit check (Node), a pod worker per pod, logs, deletion."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from datetime import datetime, timezone
from typing import Any

from kannon.testing.kube import configmaps, podresources, secrets
from kannon.testing.kube.errors import ApiError, bad_request
from kannon.testing.kube.faults import Faults
from kannon.testing.kube.node.logs import ContainerLog
from kannon.testing.kube.node.podworker import PodWorker
from kannon.testing.kube.node.runtime import Runtime
from kannon.testing.kube.node.status import NODE_NAME, is_terminal
from kannon.testing.kube.store import Change, Obj, Store
from kannon.testing.kube.validation import parse_quantity


class Node:
    """The single emulated node: labels for nodeSelector, allocatable for the scheduler's fit check."""

    def __init__(self, labels: dict[str, str] | None = None, allocatable: dict[str, str] | None = None) -> None:
        self.labels = {
            "kubernetes.io/hostname": NODE_NAME,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": "amd64",
            **(labels or {}),
        }
        self.allocatable = {"cpu": "64", "memory": "256Gi", "pods": "110", **(allocatable or {})}

    def unschedulable_reason(self, spec: Obj) -> str | None:
        """The scheduler's FailedScheduling message for a pod that cannot fit, or None."""
        selector = spec.get("nodeSelector") or {}
        if any(self.labels.get(k) != v for k, v in selector.items()):
            return (
                "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector. preemption: 0/1 "
                "nodes are available: 1 Preemption is not helpful for scheduling."
            )
        totals = podresources.effective(spec)  # init containers and sidecars count as upstream counts them
        short = [r for r, q in sorted(totals.items()) if q > parse_quantity(self.allocatable.get(r, "0"))]
        if short:
            parts = ", ".join(f"1 Insufficient {r}" for r in short)
            return (
                f"0/1 nodes are available: {parts}. preemption: 0/1 nodes are available: 1 No preemption victims "
                "found for incoming pod."
            )
        return None


class Kubelet:
    """Starts a worker per pod (on pod ADDED) and serves container logs."""

    def __init__(self, store: Store, runtime: Runtime, faults: Faults, node: Node) -> None:
        self.store = store
        self.runtime = runtime
        self.faults = faults
        self.node = node
        self.stopping = False
        self._workers: dict[str, PodWorker] = {}
        self._logs: dict[str, dict[str, list[ContainerLog]]] = {}
        self._lock = threading.Lock()
        self.secret_dir = tempfile.mkdtemp(prefix="kannon-emu-secrets-")  # 0700: secret volumes of running pods
        store.add_listener(self._on_change)

    def _on_change(self, ch: Change) -> None:
        if ch.resource in (secrets.RESOURCE, configmaps.RESOURCE):  # pods waiting for one of them look again
            with self._lock:
                waiting = [p for p in self._workers.values() if p.namespace == ch.obj["metadata"].get("namespace")]
            for p in waiting:
                p.poke()
            return
        if ch.resource != "pods":
            return
        meta = ch.obj["metadata"]
        uid = meta["uid"]
        if ch.type == "ADDED" and not self.stopping:
            worker = PodWorker(self, meta["namespace"], meta["name"], uid)
            with self._lock:
                self._workers[uid] = worker
            worker.thread.start()
        elif ch.type == "DELETED":
            with self._lock:
                w = self._workers.get(uid)
                self._logs.pop(uid, None)
            if w is not None:
                w.request_kill(0)
        elif (
            ch.type == "MODIFIED"
            and meta.get("deletionTimestamp")
            and ch.old is not None
            and not ch.old["metadata"].get("deletionTimestamp")
        ):
            with self._lock:
                w = self._workers.get(uid)
            if w is not None:
                w.request_kill(float(meta.get("deletionGracePeriodSeconds", 30)))

    def forget(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)

    def worker(self, uid: str) -> PodWorker | None:
        with self._lock:
            return self._workers.get(uid)

    def new_log(self, uid: str, container: str) -> ContainerLog:
        out = ContainerLog()
        with self._lock:
            self._logs.setdefault(uid, {}).setdefault(container, []).append(out)
        return out

    def delete_pod(
        self, namespace: str, name: str, grace: int | None, preconditions: dict[str, Any] | None = None
    ) -> Obj:
        """API deletion of a pod: graceful when its container may be running, immediate otherwise."""
        with self.store.cond:
            pod = self.store.require("pods", namespace, name)
            meta = pod["metadata"]
            if preconditions and preconditions.get("uid") not in (None, meta["uid"]):
                raise ApiError(
                    409,
                    "Conflict",
                    f"Precondition failed: UID in precondition: {preconditions['uid']}, "
                    f"UID in object meta: {meta['uid']}",
                )
            if grace is None:
                grace = int(pod["spec"].get("terminationGracePeriodSeconds", 30))
            w = self._workers.get(meta["uid"])
            running = w is not None and not w.finished and pod["spec"].get("nodeName") and not is_terminal(pod)
            if not running or grace == 0:
                final = self.store.remove("pods", namespace, name)
                assert final is not None
                if w is not None:
                    w.request_kill(0)
                return final
            if meta.get("deletionTimestamp"):
                return pod

            def mark(p: Obj) -> Obj:
                p["metadata"]["deletionTimestamp"] = datetime.fromtimestamp(time.time() + grace, timezone.utc).strftime(
                    "%Y-%m-%dT%H:%M:%SZ"
                )
                p["metadata"]["deletionGracePeriodSeconds"] = grace
                return p

            out = self.store.mutate("pods", namespace, name, mark)
            assert out is not None
            return out

    def container_log(self, pod: Obj, container: str | None, previous: bool) -> ContainerLog | None:
        """The log to serve, None for "empty" (pod not yet on a node), or ApiError as the kubelet answers."""
        meta = pod["metadata"]
        names = [c["name"] for c in pod["spec"]["containers"]]
        inits = [c["name"] for c in pod["spec"].get("initContainers") or []]
        if container is None:
            if len(names) != 1:
                also = f" or one of the init containers: {inits}" if inits else ""
                raise bad_request(f"a container name must be specified for pod {meta['name']}, choose one of: "
                                  f"{names}{also}")  # fmt: skip
            container = names[0]
        if container not in names + inits:
            raise bad_request(f"container {container} is not valid for pod {meta['name']}")
        if not pod["spec"].get("nodeName"):
            return None
        with self._lock:
            logs = list(self._logs.get(meta["uid"], {}).get(container, []))
        st = pod.get("status", {})
        both = [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]
        statuses = {cs["name"]: cs for cs in both}
        cs = statuses.get(container, {})
        waiting = cs.get("state", {}).get("waiting")
        if previous:
            # While the container waits to restart, its last instance is the "previous" one; while it runs, the one
            # before it.
            idx = -1 if waiting else -2
            if len(logs) < -idx:
                raise bad_request(f'previous terminated container "{container}" in pod "{meta["name"]}" not found')
            return logs[idx]
        if not logs:
            reason = (waiting or {}).get("reason", "ContainerCreating")
            if reason in ("ErrImagePull", "ImagePullBackOff"):
                reason = "trying and failing to pull image"
            raise bad_request(f'container "{container}" in pod "{meta["name"]}" is waiting to start: {reason}')
        return logs[-1]

    def shutdown(self) -> None:
        self.stopping = True
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.request_kill(0)
        deadline = time.monotonic() + 15
        for w in workers:
            w.thread.join(max(0.1, deadline - time.monotonic()))
        for w in workers:
            for handle in w.handles():
                handle.cleanup()
        self.runtime.close()
        shutil.rmtree(self.secret_dir, ignore_errors=True)
