"""The node agent: registers a Node, renews its Lease, watches the pods bound to it and hands them to the emulator's
kubelet (kannon.testing.kube.node.kubelet.Kubelet) through ApiStore; serves their logs (logserver.py).

What a kubelet does that the emulator's kubelet does not need to (its store deletes a finished pod by itself):
finishing the deletion of a pod whose containers have stopped (DELETE with grace 0), also for pods that had
already finished when they were deleted.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
from datetime import datetime, timezone
from typing import Any

from kubernetes import watch
from kubernetes.client.rest import ApiException

from kannon.testing.kube import secrets
from kannon.testing.kube.faults import Faults
from kannon.testing.kube.node.kubelet import Kubelet, Node
from kannon.testing.kube.node.runtime import Runtime
from kannon.testing.kube.node.status import is_terminal
from kannon.testing.kube.store import Change, Obj
from kannon.testing.node.apistore import ApiStore
from kannon.testing.node.logserver import LogServer

log = logging.getLogger("kannon.testing.node")

LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40  # the kubelet's default; the node-lifecycle controller marks the node Unknown after its grace
RENEW_SECONDS = 10  # the kubelet renews at a quarter of the duration
STATUS_EVERY = 30  # renewals between Node status writes (5 min, the kubelet's report frequency when unchanged)
RESYNC_SECONDS = 2.0  # how often pods waiting for a Secret look again (the kubelet's periodic sync)
VERSION = "v1.33.13-kannon"


def _now(micro: bool = False) -> str:
    fmt = "%Y-%m-%dT%H:%M:%S.%fZ" if micro else "%Y-%m-%dT%H:%M:%SZ"
    return datetime.now(timezone.utc).strftime(fmt)


class NodeAgent:
    """``NodeAgent(api_client, "n1", ProcessRuntime(workdir)).start()``; ``stop()`` kills every pod it runs."""

    def __init__(self, api_client: Any, name: str, runtime: Runtime, *, allocatable: dict[str, str] | None = None,
                 labels: dict[str, str] | None = None, tls: tuple[str, str] | None = None,
                 port: int = 0) -> None:  # fmt: skip
        """``tls``: (certificate, key) files of the log endpoint, valid for 127.0.0.1 and signed by the CA the API
        server verifies kubelets with (``--kubelet-certificate-authority``); None: a self-signed one."""
        self.name = name
        self.store = ApiStore(api_client)
        self.labels = {"kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                       "kubernetes.io/arch": "amd64", **(labels or {})}  # fmt: skip
        self.allocatable = {"cpu": str(os.cpu_count() or 1), "memory": "16Gi", "pods": "110", **(allocatable or {})}
        # no faults on a real control plane
        faults = Faults(lambda: None, lambda: 0, lambda: 0, lambda *_: None, "default")
        self.kubelet = Kubelet(self.store, runtime, faults, Node(self.labels, self.allocatable))
        self.logs = LogServer(self, tls, port)
        self.known: dict[str, Obj] = {}  # uid -> the pod as last seen on the watch
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    # --- lifecycle ------------------------------------------------------------------------------------------
    def start(self) -> NodeAgent:
        self.logs.start()
        self.register()
        self._renew_lease()
        for target, label in ((self._lease_loop, "lease"), (self._watch_loop, "pods"), (self._resync_loop, "sync")):
            thread = threading.Thread(target=target, daemon=True, name=f"node-{label}")
            thread.start()
            self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Kill every pod's containers (as a kubelet that stops) and stop serving; the Node object stays (a real
        node's does too) and turns NotReady once its Lease expires."""
        self._stop.set()
        self.kubelet.shutdown()
        self.logs.stop()

    def __enter__(self) -> NodeAgent:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    def pod(self, namespace: str, name: str) -> Obj | None:
        with self._lock:
            found = [p for p in self.known.values()
                     if (p["metadata"]["namespace"], p["metadata"]["name"]) == (namespace, name)]
            return found[0] if found else None

    # --- the Node and its Lease -------------------------------------------------------------------------------
    def node_status(self) -> dict[str, Any]:
        now = _now()
        resources = dict(self.allocatable)

        def cond(kind: str, status: str, reason: str, message: str) -> dict[str, str]:
            return {"type": kind, "status": status, "reason": reason, "message": message,
                    "lastHeartbeatTime": now, "lastTransitionTime": now}  # fmt: skip

        return {
            "capacity": resources, "allocatable": resources,
            "conditions": [
                cond("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory"),
                cond("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
                cond("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
                cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
            ],
            # Only the InternalIP: the API server reaches the log endpoint there (a Hostname would come first in
            # its default --kubelet-preferred-address-types and does not resolve).
            "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.logs.port}},
            "nodeInfo": {
                "machineID": "", "systemUUID": "", "bootID": "", "kernelVersion": platform.release(),
                "osImage": f"kannon node ({self.kubelet.runtime.name} runtime)",
                "containerRuntimeVersion": f"kannon-{self.kubelet.runtime.name}://1", "kubeletVersion": VERSION,
                "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": "amd64",
            },
        }  # fmt: skip

    def register(self) -> None:
        """Create the Node (or take over an existing one of this name, as a restarted kubelet does) and write its
        status: Ready, allocatable, the log endpoint."""
        path = f"/api/v1/nodes/{self.name}"
        node = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": self.name, "labels": self.labels}}
        try:
            self.store.request("POST", "/api/v1/nodes", node)
        except ApiException as e:
            if e.status != 409:
                raise
        for _ in range(20):
            current = self.store.request("GET", path)
            assert current is not None, f"node {self.name} vanished while registering"
            before = {c["type"]: c for c in (current.get("status") or {}).get("conditions") or []}
            current["status"] = self.node_status()
            for c in current["status"]["conditions"]:  # a condition that did not change keeps its transition time
                if before.get(c["type"], {}).get("status") == c["status"]:
                    c["lastTransitionTime"] = before[c["type"]].get("lastTransitionTime", c["lastTransitionTime"])
            try:
                self.store.request("PUT", path + "/status", current)
                return
            except ApiException as e:
                if e.status != 409:
                    raise

    def _renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.name}"
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": LEASE_SECONDS, "renewTime": _now(micro=True)}
        lease = self.store.request("GET", path)
        if lease is None:
            node = self.store.request("GET", f"/api/v1/nodes/{self.name}") or {"metadata": {}}
            owner = {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": node["metadata"].get("uid", "")}
            body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                    "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE, "ownerReferences": [owner]},
                    "spec": spec}  # fmt: skip
            self.store.request("POST", path.rsplit("/", 1)[0], body)
        else:
            lease["spec"].update(spec)
            self.store.request("PUT", path, lease)

    def _lease_loop(self) -> None:
        renewals = 0
        while not self._stop.wait(RENEW_SECONDS):
            renewals += 1
            try:
                self._renew_lease()
                if renewals % STATUS_EVERY == 0:
                    self.register()  # the Node's status too, now and then, as kubelet's nodeStatusReportFrequency
            except Exception:  # the API server may be restarting; the next renewal tries again
                log.warning("renewing the node Lease failed", exc_info=True)

    # --- pods ---------------------------------------------------------------------------------------------------
    def _watch_loop(self) -> None:
        selector = f"spec.nodeName={self.name}"
        while not self._stop.is_set():
            try:
                listed = self.store.request("GET", "/api/v1/pods", query=[("fieldSelector", selector)]) or {}
                self._relisted(listed.get("items") or [])
                stream = watch.Watch().stream(
                    self._core().list_pod_for_all_namespaces, field_selector=selector,
                    resource_version=listed["metadata"]["resourceVersion"], timeout_seconds=30,
                    _request_timeout=60,  # a server that vanished without closing the stream must not hang us
                )  # fmt: skip
                for event in stream:
                    if self._stop.is_set():
                        return
                    self._dispatch(event["type"], event["raw_object"])
            except Exception as e:  # 410 Gone, a dropped connection, a restarting API server: list again
                if self._stop.is_set():
                    return
                if not (isinstance(e, ApiException) and e.status == 410):
                    log.warning("pod watch of node %s: %s; listing again", self.name, e)
                    self._stop.wait(1)

    def _core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.store.api)

    def _relisted(self, items: list[Obj]) -> None:
        seen = {p["metadata"]["uid"]: p for p in items}
        with self._lock:
            gone = [p for uid, p in self.known.items() if uid not in seen]
        for pod in gone:
            self._dispatch("DELETED", pod)
        for uid, pod in seen.items():
            with self._lock:
                old = self.known.get(uid)
            if old is None or old["metadata"].get("resourceVersion") != pod["metadata"].get("resourceVersion"):
                self._dispatch("MODIFIED" if old is not None else "ADDED", pod)

    def _dispatch(self, kind: str, pod: Obj) -> None:
        if kind not in ("ADDED", "MODIFIED", "DELETED"):
            return  # BOOKMARK
        meta = pod["metadata"]
        uid = meta["uid"]
        with self._lock:
            old = self.known.pop(uid, None) if kind == "DELETED" else self.known.get(uid)
            if kind != "DELETED":
                self.known[uid] = pod
        worker = self.kubelet.worker(uid)
        if kind == "ADDED" and (worker is not None or is_terminal(pod) or meta.get("deletionTimestamp")):
            kind = "MODIFIED"  # nothing to start: already running here, already finished, or deleted before it ran
        if kind == "MODIFIED" and old is None:
            old = {"metadata": {}}
        self.store.emit(Change(kind, "pods", int(meta.get("resourceVersion") or 0), pod, old))
        if kind != "DELETED" and meta.get("deletionTimestamp"):
            worker = self.kubelet.worker(uid)
            if worker is None or worker.finished:
                # No container runs (any more): the deletion is the kubelet's to finish.
                self._finish_deletion(meta["namespace"], meta["name"])

    def _finish_deletion(self, namespace: str, name: str) -> None:
        try:
            if self.store.get("pods", namespace, name) is not None:
                self.store.remove("pods", namespace, name)
        except ApiException as e:
            log.warning("deleting pod %s/%s: %s", namespace, name, e.reason)

    def _resync_loop(self) -> None:
        # A pod waiting for a Secret (CreateContainerConfigError) looks again, as at the kubelet's periodic sync.
        while not self._stop.wait(RESYNC_SECONDS):
            with self._lock:
                namespaces = {p["metadata"]["namespace"] for p in self.known.values() if not is_terminal(p)}
            for ns in namespaces:
                self.store.emit(Change("MODIFIED", secrets.RESOURCE, 0, {"metadata": {"namespace": ns}}, None))
