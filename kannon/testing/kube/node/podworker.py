"""A pod worker: drives one pod through scheduling, container creation, running and termination on its own thread."""

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
from kannon.testing.kube.node.env import ConfigError, container_env, expand
from kannon.testing.kube.node.runtime import ContainerHandle, ImageError, StartError
from kannon.testing.kube.node.status import NODE_NAME, _cond, set_condition
from kannon.testing.kube.node.termination import termination_file, termination_message
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
        self.exited = threading.Event()
        self.finished = False
        self.handle: ContainerHandle | None = None
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"pod-{namespace}-{name}")

    # Called under the store lock: only flag and wake.
    def request_kill(self, grace: float) -> None:
        self.grace = min(self.grace, grace) if self.kill_requested else grace
        self.kill_requested = True
        self.wake.set()

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
        container = pod["spec"]["containers"][0]
        cname = container["name"]

        slow = {s.kind: s for s in self.kubelet.faults.take_slow_starts(job_name, self.name)}
        bound = scheduling.schedule(self, pod, behaviour, slow.get("scale-up"))
        if bound is None:
            return  # never scheduled, or deleted while a node was being added
        pod = bound
        pull = scheduling.Pull(self.store, pod, container["image"], slow["pull"]) if "pull" in slow else None

        def creating(p: Obj) -> None:
            st = p["status"]
            st.update({"hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}], "startTime": now_iso()})
            set_condition(st, _cond("PodReadyToStartContainers", "True"))
            set_condition(st, _cond("Initialized", "True"))
            set_condition(
                st, _cond("Ready", "False", "ContainersNotReady", f"containers with unready status: [{cname}]")
            )
            set_condition(
                st,
                _cond("ContainersReady", "False", "ContainersNotReady", f"containers with unready status: [{cname}]"),
            )
            st["containerStatuses"] = [self._status(container, {"waiting": {"reason": "ContainerCreating"}})]

        self._update(creating)
        if pull is not None and not pull.wait(lambda: self.kill_requested or self.kubelet.stopping):
            return  # deleted while its image was being pulled
        if self.kill_requested:
            return

        runtime = self.kubelet.runtime
        restarts = 0
        while True:
            waiting: tuple[str, str] | None = None
            retry = False
            image_id = ""
            env: dict[str, str] = {}
            if behaviour in ("ErrImagePull", "ImagePullBackOff"):
                waiting = ("ErrImagePull", f'Failed to pull image "{container["image"]}": injected by kannon emulator')
            elif behaviour == "CreateContainerConfigError":
                waiting = ("CreateContainerConfigError", 'secret "kannon-emulator-missing" not found')
            else:
                run_pod = pod
                try:
                    run_pod = self._mount_secret_volumes(pod)
                except secrets.SecretMissing as exc:  # volume setup: the container is not even being created
                    self._warning_event("FailedMount", str(exc))
                    waiting, retry = ("ContainerCreating", ""), True
                try:
                    image_id = runtime.check_image(container["image"]) if waiting is None else ""
                    env = container_env(pod, container, runtime.base_env(), self.store) if waiting is None else {}
                except ImageError as exc:
                    waiting = ("ErrImagePull", str(exc))
                    behaviour = "ImagePullBackOff"
                except ConfigError as exc:
                    waiting = ("CreateContainerConfigError", str(exc))
                    retry = True
            if waiting is not None:
                self._set_waiting(container, restarts, *waiting)
                if retry:  # the kubelet retries at each sync: a Secret created later lets the container start
                    self.wake.wait()
                    self.wake.clear()
                    if self.kill_requested or self.kubelet.stopping:
                        return
                    continue
                if behaviour == "ImagePullBackOff":
                    # The kubelet's image back-off: ErrImagePull first, then ImagePullBackOff.
                    self.wake.wait(0.2)
                    self._set_waiting(
                        container, restarts, "ImagePullBackOff", f'Back-off pulling image "{container["image"]}"'
                    )
                self._wait_for_kill()  # Never starts, never fails: the Job does not fail by itself.
                return
            out = self.kubelet.new_log(self.uid, cname)
            argv = [expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
            term_dir = Path(self.kubelet.secret_dir) / self.uid / "termination"
            run_pod, env, term_file = termination_file(run_pod, env, term_dir / f"{cname}-{restarts}", runtime.name)
            try:
                handle = runtime.start(run_pod, run_pod["spec"]["containers"][0], argv, env, out)
            except StartError as exc:
                out.finish()
                self._terminate(container, restarts, 128, "StartError", str(exc), None, "")
                if not self._maybe_restart(pod):
                    return
                restarts += 1
                continue
            self.handle = handle
            started = now_iso()
            waiter = threading.Thread(target=self._await_exit, args=(handle,), daemon=True)
            result: list[tuple[int, bool]] = []
            self._result = result
            waiter.start()

            def running(
                p: Obj,
                image_id: str = image_id or handle.image_id,
                cid: str = handle.container_id,
                started: str = started,
                restarts: int = restarts,
            ) -> None:
                st = p["status"]
                st["phase"] = "Running"
                st["podIP"], st["podIPs"] = "127.0.0.1", [{"ip": "127.0.0.1"}]
                set_condition(st, _cond("Ready", "True"))
                set_condition(st, _cond("ContainersReady", "True"))
                cs = self._status(container, {"running": {"startedAt": started}}, restarts, prev=st)
                cs.update({"ready": True, "started": True, "containerID": cid, "imageID": image_id})
                st["containerStatuses"] = [cs]

            self._update(running)
            disruption = None
            if behaviour in ("OOMKilled", "Evicted", "Preempted"):
                disruption = behaviour
                behaviour = None
                self._disrupt(disruption, handle)
            # Wait for exit, or for a deletion to ask us to stop it.
            while not self.exited.is_set():
                self.wake.wait()
                self.wake.clear()
                if (self.kill_requested or self.kubelet.stopping) and not self.exited.is_set():
                    self._stop_container(handle)
            waiter.join()
            code, oom = result[0] if result else (137, False)
            out.finish()
            handle.cleanup()
            reason = "OOMKilled" if oom or disruption == "OOMKilled" else ("Completed" if code == 0 else "Error")
            if disruption == "OOMKilled":
                code = 137
            message = termination_message(term_file, container, code, out)
            self._terminate(container, restarts, code, reason, message, disruption, handle.container_id, started)
            if code == 0 or not self._maybe_restart(pod):
                return
            restarts += 1
            self.exited.clear()

    def _await_exit(self, handle: ContainerHandle) -> None:
        try:
            self._result.append(handle.wait())
        finally:
            self.exited.set()
            self.wake.set()

    def _stop_container(self, handle: ContainerHandle) -> None:
        # Graceful termination: SIGTERM, then SIGKILL after the grace period (pod-lifecycle "Termination of Pods").
        grace = 0.0 if self.kubelet.stopping else self.grace
        if grace > 0:
            handle.signal(signal.SIGTERM)
            if self.exited.wait(grace):
                return
        handle.signal(signal.SIGKILL)
        self.exited.wait(10)

    def _disrupt(self, kind: str, handle: ContainerHandle) -> None:
        if kind == "OOMKilled":
            handle.signal(signal.SIGKILL)
            return
        if kind == "Evicted":
            msg = "The node was low on resource: memory. Threshold quantity: 100Mi, available: 51200Ki. "
            self._evict_message = msg
            # Node-pressure eviction: the kubelet marks the pod with DisruptionTarget (TerminationByKubelet) and
            # kills it; the pod ends Failed with status.reason Evicted.
            self._update(
                lambda p: set_condition(p["status"], _cond("DisruptionTarget", "True", "TerminationByKubelet", msg))
            )
            handle.signal(signal.SIGKILL)
            return
        # Preemption: the scheduler adds DisruptionTarget (PreemptionByScheduler) and deletes the pod gracefully.
        msg = f"{NODE_NAME}: preempting to accommodate a higher priority pod"

        def preempt(p: Obj) -> None:
            set_condition(p["status"], _cond("DisruptionTarget", "True", "PreemptionByScheduler", msg))
            p["metadata"]["deletionTimestamp"] = now_iso()
            p["metadata"]["deletionGracePeriodSeconds"] = 0

        self._update(preempt)
        handle.signal(signal.SIGKILL)

    def _maybe_restart(self, pod: Obj) -> bool:
        if pod["spec"].get("restartPolicy") != "OnFailure" or self.kill_requested or self.kubelet.stopping:
            return False
        cur = self.store.get("pods", self.namespace, self.name)
        return cur is not None and not cur["metadata"].get("deletionTimestamp")

    def _status(
        self, container: Obj, state: dict[str, Any], restarts: int = 0, prev: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        cs: dict[str, Any] = {
            "name": container["name"],
            "image": container["image"],
            "imageID": "",
            "ready": False,
            "restartCount": restarts,
            "started": False,
            "state": state,
            "lastState": {},
        }
        if prev and prev.get("containerStatuses"):
            last = prev["containerStatuses"][0]
            if "terminated" in last.get("state", {}):
                cs["lastState"] = {"terminated": last["state"]["terminated"]}
            else:
                cs["lastState"] = last.get("lastState", {})
        return cs

    def _warning_event(self, reason: str, message: str) -> None:
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

    def _mount_secret_volumes(self, pod: Obj) -> Obj:
        """The pod as the runtime sees it: each ``secret`` and ``configMap`` volume written to a private directory
        (files named by key, kubernetes.io/docs/concepts/configuration/secret/#using-secrets-as-files-from-a-pod,
        kubernetes.io/docs/concepts/storage/volumes/#configmap; kannon.testing.kube.configmaps) and turned into a
        read-only hostPath the Docker runtime binds at the mount path (the process runtime mounts nothing)."""
        vols = pod["spec"].get("volumes") or []
        if not any(v.get("secret") or v.get("configMap") for v in vols):
            return pod
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
        for c in out["spec"]["containers"]:
            for m in c.get("volumeMounts") or []:
                if any(v["name"] == m["name"] and str(v["hostPath"]["path"]).startswith(str(base))
                       for v in out["spec"]["volumes"] if v.get("hostPath")):  # fmt: skip
                    m["readOnly"] = True  # secret and configMap volumes are always mounted read-only
        return out

    def _set_waiting(self, container: Obj, restarts: int, reason: str, message: str) -> None:
        def apply(p: Obj) -> None:
            st = p["status"]
            state = {"reason": reason, "message": message} if message else {"reason": reason}
            cs = self._status(container, {"waiting": state}, restarts, prev=st)
            st["containerStatuses"] = [cs]

        self._update(apply)

    def _terminate(
        self,
        container: Obj,
        restarts: int,
        code: int,
        reason: str,
        message: str | None,
        disruption: str | None,
        cid: str,
        started: str | None = None,
    ) -> None:
        finished = now_iso()
        restart_policy = None

        def apply(p: Obj) -> None:
            nonlocal restart_policy
            restart_policy = p["spec"].get("restartPolicy")
            st = p["status"]
            term: dict[str, Any] = {
                "exitCode": code,
                "reason": reason,
                "startedAt": started or finished,
                "finishedAt": finished,
            }
            if message:
                term["message"] = message
            if cid:
                term["containerID"] = cid
            cs = self._status(container, {"terminated": term}, restarts, prev=None)
            prev_cs = (st.get("containerStatuses") or [{}])[0]
            cs["lastState"] = prev_cs.get("lastState", {})
            cs["imageID"] = prev_cs.get("imageID", "")
            cs["containerID"] = cid or None
            if not cid:
                cs.pop("containerID")
            will_restart = (
                code != 0
                and restart_policy == "OnFailure"
                and not p["metadata"].get("deletionTimestamp")
                and not self.kill_requested
            )
            if will_restart:
                # CrashLoopBackOff: the pod stays Running and the kubelet restarts the container in place.
                cs["state"] = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off 10s restarting failed container={container['name']}",
                    }
                }
                cs["lastState"] = {"terminated": term}
                st["containerStatuses"] = [cs]
                set_condition(
                    st,
                    _cond(
                        "Ready", "False", "ContainersNotReady", f"containers with unready status: [{container['name']}]"
                    ),
                )
                set_condition(
                    st,
                    _cond(
                        "ContainersReady",
                        "False",
                        "ContainersNotReady",
                        f"containers with unready status: [{container['name']}]",
                    ),
                )
                return
            st["containerStatuses"] = [cs]
            st["phase"] = "Succeeded" if code == 0 else "Failed"
            done = "PodCompleted" if code == 0 else "PodFailed"
            set_condition(st, _cond("Ready", "False", done))
            set_condition(st, _cond("ContainersReady", "False", done))
            set_condition(st, _cond("PodReadyToStartContainers", "False"))
            if disruption == "Evicted":
                st["reason"] = "Evicted"
                st["message"] = getattr(self, "_evict_message", "evicted")
                st["phase"] = "Failed"

        self._update(apply)
