"""A pod worker: drives one pod through scheduling, its init containers (native sidecars included), its app
containers and termination, on its own thread; each container runs on a thread of its own (container.py).

Order as upstream (kubernetes.io/docs/concepts/workloads/pods/init-containers/, .../sidecar-containers/): init
containers one at a time in spec order, each to completion, a sidecar (``restartPolicy: Always``) only until it
started; then every app container at once; once they all ended, the sidecars are stopped in reverse order. The
pod's phase is recomputed from its container statuses at every change (status.pod_phase, the kubelet's getPhase).
"""

from __future__ import annotations

import copy
import logging
import shutil
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kannon.testing.kube import configmaps, secrets
from kannon.testing.kube.node import scheduling
from kannon.testing.kube.node.container import APP, INIT, SIDECAR, ContainerRun, ready_conditions
from kannon.testing.kube.node.runtime import ContainerHandle
from kannon.testing.kube.node.status import NODE_NAME, TERMINAL, _cond, is_sidecar, pod_phase, put_status, set_condition
from kannon.testing.kube.store import Obj, Store, now_iso
from kannon.testing.kube.validation import JOB_NAME_LABEL

if TYPE_CHECKING:
    from kannon.testing.kube.node.kubelet import Kubelet

log = logging.getLogger("kannon.testing.kube")


class PodWorker:
    """Drives one pod through its lifecycle on its own thread."""

    def __init__(self, kubelet: Kubelet, namespace: str, name: str, uid: str) -> None:
        self.kubelet = kubelet
        self.namespace = namespace
        self.name = name
        self.uid = uid
        self.wake = threading.Event()
        self.kill_requested = False
        self.grace = 30.0
        self.finished = False
        self.restart_policy = "Never"
        self.evict_message = "evicted"
        self.runs: list[ContainerRun] = []
        self._runs_lock = threading.Lock()
        self._mount_lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"pod-{namespace}-{name}")

    # Called under the store lock: only flag and wake.
    def request_kill(self, grace: float) -> None:
        self.grace = min(self.grace, grace) if self.kill_requested else grace
        self.kill_requested = True
        self.wake.set()
        with self._runs_lock:
            runs = list(self.runs)
        for run in runs:
            if run.kind != SIDECAR:  # sidecars stop after the app containers, as at a normal end
                run.request_stop(self.grace)

    def poke(self) -> None:
        """Look again (a Secret or ConfigMap a container waits for may exist now)."""
        self.wake.set()
        with self._runs_lock:
            runs = list(self.runs)
        for run in runs:
            run.wake.set()

    def handles(self) -> list[ContainerHandle]:
        with self._runs_lock:
            return [r.handle for r in self.runs if r.handle is not None]

    @property
    def store(self) -> Store:
        return self.kubelet.store

    def _update(self, fn: Callable[[Obj], None]) -> Obj | None:
        def apply(pod: Obj) -> Obj | None:
            if pod["metadata"].get("uid") != self.uid:
                return None
            fn(pod)
            return pod

        return self.store.mutate("pods", self.namespace, self.name, apply)

    def _remove_if_deleting(self) -> None:
        with self.store.cond:
            pod = self.store.get("pods", self.namespace, self.name)
            if pod is not None and pod["metadata"].get("uid") == self.uid and pod["metadata"].get("deletionTimestamp"):
                self.store.remove("pods", self.namespace, self.name)

    def _wait_for_kill(self) -> None:
        while not self.kill_requested and not self.kubelet.stopping:
            self.wake.wait()
            self.wake.clear()

    def _run(self) -> None:
        try:
            self._lifecycle()
        except Exception:
            log.exception("pod worker %s/%s crashed", self.namespace, self.name)
        finally:
            self.finished = True
            shutil.rmtree(Path(self.kubelet.secret_dir) / self.uid, ignore_errors=True)
            self._remove_if_deleting()
            self.kubelet.forget(self.uid)

    def _lifecycle(self) -> None:
        pod = self.store.get("pods", self.namespace, self.name)
        if pod is None:
            return
        job_name = (pod["metadata"].get("labels") or {}).get(JOB_NAME_LABEL)
        behaviour = self.kubelet.faults.take_pod_behaviour(job_name, self.name)
        self.restart_policy = pod["spec"].get("restartPolicy") or "Always"
        inits: list[Obj] = pod["spec"].get("initContainers") or []
        apps: list[Obj] = pod["spec"]["containers"]

        slow = {s.kind: s for s in self.kubelet.faults.take_slow_starts(job_name, self.name)}
        bound = scheduling.schedule(self, pod, behaviour, slow.get("scale-up"))
        if bound is None:
            return  # never scheduled, or deleted while a node was being added
        pod = bound
        # A slow pull (a fault) is the main container's image's, before any container of the pod starts.
        pull = scheduling.Pull(self.store, pod, apps[0]["image"], slow["pull"]) if "pull" in slow else None
        self._update(lambda p: self._creating(p, inits, apps))
        if pull is not None and not pull.wait(lambda: self.kill_requested or self.kubelet.stopping):
            return  # deleted while its image was being pulled
        if self.kill_requested:
            return
        sidecars: list[ContainerRun] = []
        try:
            for c in inits:
                if self.kill_requested or self.kubelet.stopping:
                    return
                run = self._start(c, SIDECAR if is_sidecar(c) else INIT)
                if run.kind == SIDECAR:  # not waited for: the next container starts once it started
                    sidecars.append(run)
                    while not run.started.is_set() and not (self.kill_requested or self.kubelet.stopping):
                        self.wake.wait()  # a sidecar that cannot start holds the pod until it is deleted
                        self.wake.clear()
                    continue
                run.done.wait()
                if run.code != 0:  # failed (its pod's phase says what that means), or stopped before it ended
                    return
            if self.kill_requested or self.kubelet.stopping:
                return
            if inits:
                self._update(lambda p: set_condition(p["status"], _cond("Initialized", "True")))
            # The fault injected for this pod is its main (first) container's.
            runs = [self._start(c, APP, behaviour if i == 0 else None) for i, c in enumerate(apps)]
            for run in runs:
                run.done.wait()
        finally:
            # Sidecars stop after the app containers ended, in reverse order (KEP-753), each with the grace period.
            grace = self.grace if self.kill_requested else float(pod["spec"].get("terminationGracePeriodSeconds", 30))
            for run in reversed(sidecars):
                run.request_stop(grace)
                run.done.wait()

    def _start(self, container: Obj, kind: str, behaviour: str | None = None) -> ContainerRun:
        run = ContainerRun(self, container, kind, behaviour)
        with self._runs_lock:
            self.runs.append(run)
        if self.kill_requested and kind != SIDECAR:
            run.request_stop(self.grace)
        run.thread.start()
        return run

    def _creating(self, p: Obj, inits: list[Obj], apps: list[Obj]) -> None:
        st = p["status"]
        st.update({"hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "startTime": now_iso()})
        set_condition(st, _cond("PodReadyToStartContainers", "True"))
        if inits:
            # kubelet: Initialized=False until every init container completed (a sidecar: started).
            message = f"containers with incomplete status: [{' '.join(c['name'] for c in inits)}]"
            set_condition(st, _cond("Initialized", "False", "ContainersNotInitialized", message))
        else:
            set_condition(st, _cond("Initialized", "True"))
        waiting = "PodInitializing" if inits else "ContainerCreating"
        for c in inits:
            put_status(p, "initContainerStatuses", self._waiting(c, "PodInitializing"))
        for c in apps:
            put_status(p, "containerStatuses", self._waiting(c, waiting))
        ready_conditions(p, sorted(c["name"] for c in [*apps, *(c for c in inits if is_sidecar(c))]))

    @staticmethod
    def _waiting(container: Obj, reason: str) -> dict[str, Any]:
        return {"name": container["name"], "image": container["image"], "imageID": "", "ready": False,
                "restartCount": 0, "started": False, "state": {"waiting": {"reason": reason}},
                "lastState": {}}  # fmt: skip

    def set_status(self, run: ContainerRun, make: Callable[[Obj], dict[str, Any]],
                   extra: Callable[[Obj], None] | None = None) -> None:  # fmt: skip
        """Write one container's new status and what follows from it for the pod (phase, conditions, pod IP)."""

        def apply(p: Obj) -> None:
            st = p["status"]
            was_terminal = st.get("phase") in TERMINAL
            put_status(p, run.key, make(p))
            if extra is not None:
                extra(p)
            if was_terminal:
                return  # a terminal phase is final
            if st.get("phase") not in TERMINAL:
                ending = self.kill_requested or self.kubelet.stopping or bool(p["metadata"].get("deletionTimestamp"))
                st["phase"] = pod_phase(p, terminal=ending)
            statuses = [*(st.get("initContainerStatuses") or []), *(st.get("containerStatuses") or [])]
            if "podIP" not in st and any("running" in cs["state"] for cs in statuses):
                st["podIP"], st["podIPs"] = "127.0.0.1", [{"ip": "127.0.0.1"}]
            if st["phase"] in TERMINAL:
                done = "PodCompleted" if st["phase"] == "Succeeded" else "PodFailed"
                set_condition(st, _cond("Ready", "False", done))
                set_condition(st, _cond("ContainersReady", "False", done))
                set_condition(st, _cond("PodReadyToStartContainers", "False"))
                return
            # Readiness counts the app containers and the sidecars (no probes here: running is ready).
            counted = {c["name"] for c in p["spec"].get("initContainers") or [] if is_sidecar(c)}
            counted |= {c["name"] for c in p["spec"]["containers"]}
            unready = [cs["name"] for cs in statuses if cs["name"] in counted and "running" not in cs["state"]]
            ready_conditions(p, sorted(unready))

        self._update(apply)

    def disrupt(self, kind: str, handle: ContainerHandle) -> None:
        """An injected disruption of the pod's main container (kannon.testing.kube.faults)."""
        if kind == "OOMKilled":
            handle.signal(signal.SIGKILL)
            return
        if kind == "Evicted":
            msg = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. "
            self.evict_message = msg
            # Node-pressure eviction: the kubelet marks the pod with DisruptionTarget (TerminationByKubelet) and
            # kills it; the pod ends Failed with status.reason Evicted.
            self._update(
                lambda p: set_condition(p["status"], _cond("DisruptionTarget", "True", "TerminationByKubelet", msg))
            )
            handle.signal(signal.SIGKILL)
            with self._runs_lock:
                others = [r for r in self.runs if r.handle is not handle]
            for run in others:  # the whole pod goes, sidecars included
                run.request_stop(0)
            return
        # Preemption: the scheduler adds DisruptionTarget (PreemptionByScheduler) and deletes the pod gracefully.
        msg = f"{NODE_NAME}: preempting to accommodate a higher priority pod"

        def preempt(p: Obj) -> None:
            set_condition(p["status"], _cond("DisruptionTarget", "True", "PreemptionByScheduler", msg))
            p["metadata"]["deletionTimestamp"] = now_iso()
            p["metadata"]["deletionGracePeriodSeconds"] = 0

        self._update(preempt)
        handle.signal(signal.SIGKILL)

    def warning_event(self, reason: str, message: str) -> None:
        """A core/v1 Event about this pod from the kubelet (``kubectl describe pod`` shows it), counted up on repeat."""
        name = f"{self.name}.{reason.lower()}"
        stamp = now_iso()

        def bump(ev: Obj) -> Obj:
            ev.update(count=int(ev.get("count", 1)) + 1, lastTimestamp=stamp, message=message)
            return ev

        with self.store.cond:
            if self.store.mutate("events", self.namespace, name, bump) is None:
                self.store.create("events", {
                    "apiVersion": "v1", "kind": "Event", "metadata": {"name": name, "namespace": self.namespace},
                    "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": self.name,
                                       "namespace": self.namespace, "uid": self.uid},
                    "reason": reason, "message": message, "type": "Warning", "count": 1,
                    "source": {"component": "kubelet", "host": NODE_NAME}, "firstTimestamp": stamp,
                    "lastTimestamp": stamp, "reportingComponent": "kubelet", "reportingInstance": NODE_NAME,
                })  # fmt: skip

    def mount_secret_volumes(self, pod: Obj) -> Obj:
        """The pod as the runtime sees it: each ``secret`` and ``configMap`` volume written to a private directory
        (files named by key, kubernetes.io/docs/concepts/configuration/secret/#using-secrets-as-files-from-a-pod,
        kubernetes.io/docs/concepts/storage/volumes/#configmap; kannon.testing.kube.configmaps) and turned into a
        read-only hostPath the Docker runtime binds at the mount path (the process runtime mounts nothing)."""
        vols = pod["spec"].get("volumes") or []
        if not any(v.get("secret") or v.get("configMap") for v in vols):
            return pod
        with self._mount_lock:  # its containers start on threads of their own
            return self._mount(pod)

    def _mount(self, pod: Obj) -> Obj:
        out = copy.deepcopy(pod)
        base = Path(self.kubelet.secret_dir) / self.uid
        for vol in out["spec"]["volumes"]:
            if not (vol.get("secret") or vol.get("configMap")):
                continue
            files: dict[str, tuple[str | bytes, int]] = dict(
                (secrets.volume_files(self.store, self.namespace, vol) if vol.get("secret")
                 else configmaps.volume_files(self.store, self.namespace, vol)) or {})  # fmt: skip
            target = base / vol["name"]
            target.mkdir(parents=True, exist_ok=True, mode=0o700)
            for rel, (content, mode) in files.items():
                path = target / rel
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(content if isinstance(content, bytes) else content.encode())
                path.chmod(mode)
            vol.pop("secret", None)
            vol.pop("configMap", None)
            vol["hostPath"] = {"path": str(target)}
        for c in [*(out["spec"].get("initContainers") or []), *out["spec"]["containers"]]:
            for m in c.get("volumeMounts") or []:
                if any(v["name"] == m["name"] and str(v["hostPath"]["path"]).startswith(str(base))
                       for v in out["spec"]["volumes"] if v.get("hostPath")):  # fmt: skip
                    m["readOnly"] = True  # secret and configMap volumes are always mounted read-only
        return out

