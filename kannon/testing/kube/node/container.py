"""One container of a pod, run by the kubelet on a thread of its own: waiting (image, configuration, volumes),
started, running, terminated, and restarted in place as its restart policy says.

Init containers and app containers run with the pod's ``restartPolicy`` (restarted on failure with OnFailure); a
native sidecar (an init container with ``restartPolicy: Always``) is restarted whenever it exits, until the pod
worker stops it after the app containers ended (kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/).
The pod worker (podworker.py) decides the order; this module only runs one container.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kannon.testing.kube import secrets
from kannon.testing.kube.node.env import ConfigError, container_env, expand
from kannon.testing.kube.node.runtime import ContainerHandle, ImageError, StartError
from kannon.testing.kube.node.status import _cond, is_sidecar, set_condition
from kannon.testing.kube.node.termination import termination_file, termination_message
from kannon.testing.kube.store import Obj, now_iso

if TYPE_CHECKING:
    from kannon.testing.kube.node.podworker import PodWorker

log = logging.getLogger("kannon.testing.kube")

INIT, SIDECAR, APP = "init", "sidecar", "app"


class ContainerRun:
    """Runs ``container`` of the worker's pod to its end; ``code`` is its last exit code (None: it never ran)."""

    def __init__(self, worker: PodWorker, container: Obj, kind: str, behaviour: str | None = None) -> None:
        self.worker = worker
        self.container = container
        self.name: str = container["name"]
        self.kind = kind
        self.key = "containerStatuses" if kind == APP else "initContainerStatuses"
        self.behaviour = behaviour  # an injected fault (kannon.testing.kube.faults): the pod's main container only
        self.wake = threading.Event()
        self.exited = threading.Event()
        self.started = threading.Event()  # running, or over without having run: the next init container may go
        self.done = threading.Event()
        self.stop_requested = False
        self.grace = 30.0
        self.handle: ContainerHandle | None = None
        self.code: int | None = None
        self.disruption: str | None = None
        self._result: list[tuple[int, bool]] = []
        self.thread = threading.Thread(target=self._run, daemon=True, name=f"ctr-{worker.name}-{self.name}")

    # Called under the store lock (through the worker): only flag and wake.
    def request_stop(self, grace: float) -> None:
        self.grace = min(self.grace, grace) if self.stop_requested else grace
        self.stop_requested = True
        self.wake.set()

    @property
    def stopping(self) -> bool:
        return self.stop_requested or self.worker.kubelet.stopping

    def _run(self) -> None:
        try:
            self._life()
        except Exception:
            log.exception("container %s of pod %s/%s crashed", self.name, self.worker.namespace, self.worker.name)
        finally:
            self.started.set()
            self.done.set()
            self.worker.wake.set()

    def _wait_for_stop(self) -> None:
        while not self.stopping:
            self.wake.wait()
            self.wake.clear()

    def _life(self) -> None:
        worker, container, cname = self.worker, self.container, self.name
        kubelet = worker.kubelet
        runtime = kubelet.runtime
        restarts = 0
        while not self.stopping:
            pod = worker.store.get("pods", worker.namespace, worker.name)
            if pod is None or pod["metadata"].get("uid") != worker.uid:
                return
            waiting: tuple[str, str] | None = None
            retry = False
            image_id = ""
            env: dict[str, str] = {}
            run_pod = pod
            if self.behaviour in ("ErrImagePull", "ImagePullBackOff"):
                waiting = ("ErrImagePull", f'Failed to pull image "{container["image"]}": injected by kannon emulator')
            elif self.behaviour == "CreateContainerConfigError":
                waiting = ("CreateContainerConfigError", 'secret "kannon-emulator-missing" not found')
            else:
                try:
                    run_pod = worker.mount_secret_volumes(pod)
                except secrets.SecretMissing as exc:  # volume setup: the container is not even being created
                    worker.warning_event("FailedMount", str(exc))
                    waiting, retry = ("ContainerCreating", ""), True
                try:
                    image_id = runtime.check_image(container["image"]) if waiting is None else ""
                    env = container_env(pod, container, runtime.base_env(), worker.store) if waiting is None else {}
                except ImageError as exc:
                    waiting = ("ErrImagePull", str(exc))
                    self.behaviour = "ImagePullBackOff"
                except ConfigError as exc:
                    waiting = ("CreateContainerConfigError", str(exc))
                    retry = True
            if waiting is not None:
                self.set_waiting(restarts, *waiting)
                if retry:  # the kubelet retries at each sync: a Secret created later lets the container start
                    self.wake.wait()
                    self.wake.clear()
                    continue
                if self.behaviour == "ImagePullBackOff":
                    # The kubelet's image back-off: ErrImagePull first, then ImagePullBackOff.
                    self.wake.wait(0.2)
                    self.set_waiting(restarts, "ImagePullBackOff", f'Back-off pulling image "{container["image"]}"')
                self._wait_for_stop()  # Never starts, never fails: the Job does not fail by itself.
                return
            out = kubelet.new_log(worker.uid, cname)
            argv = [expand(a, env) for a in (container.get("command") or []) + (container.get("args") or [])]
            term_dir = Path(kubelet.secret_dir) / worker.uid / "termination"
            run_pod, run_ctr, env, term_file = termination_file(run_pod, cname, env, term_dir / f"{cname}-{restarts}",
                                                                runtime.name)  # fmt: skip
            try:
                handle = runtime.start(run_pod, run_ctr, argv, env, out)
            except StartError as exc:
                out.finish()
                restart = self._restarts_after(128)
                self._terminate(restarts, 128, "StartError", str(exc), "", None, restart)
                if not restart:
                    return
                restarts += 1
                continue
            self.handle = handle
            started = now_iso()
            self._result = []
            waiter = threading.Thread(target=self._await_exit, args=(handle,), daemon=True)
            waiter.start()
            self._running(restarts, started, image_id or handle.image_id, handle.container_id)
            self.started.set()
            worker.wake.set()
            if self.behaviour in ("OOMKilled", "Evicted", "Preempted"):
                self.disruption, self.behaviour = self.behaviour, None
                worker.disrupt(self.disruption, handle)
            # Wait for exit, or for a deletion (or the end of the app containers, for a sidecar) to stop it.
            while not self.exited.is_set():
                self.wake.wait()
                self.wake.clear()
                if self.stopping and not self.exited.is_set():
                    self._stop_container(handle)
            waiter.join()
            code, oom = self._result[0] if self._result else (137, False)
            out.finish()
            reason = "OOMKilled" if oom or self.disruption == "OOMKilled" else ("Completed" if code == 0 else "Error")
            if self.disruption == "OOMKilled":
                code = 137
            message = termination_message(term_file, container, code, out)
            restart = self._restarts_after(code)
            self._terminate(restarts, code, reason, message, handle.container_id, started, restart)
            handle.cleanup()  # after the status, as a kubelet removes a container after reporting its end
            self.code = code
            if not restart:
                return
            restarts += 1
            self.exited.clear()

    def _restarts_after(self, code: int) -> bool:
        """Is the container restarted in place after exiting with ``code``?"""
        if self.stopping or self.worker.kill_requested:
            return False
        if is_sidecar(self.container):
            policy = "Always"
        else:
            policy = "OnFailure" if self.worker.restart_policy == "OnFailure" and code != 0 else "Never"
        if policy == "Never" or self.disruption == "Evicted":
            return False
        cur = self.worker.store.get("pods", self.worker.namespace, self.worker.name)
        return cur is not None and not cur["metadata"].get("deletionTimestamp")

    def _await_exit(self, handle: ContainerHandle) -> None:
        try:
            self._result.append(handle.wait())
        finally:
            self.exited.set()
            self.wake.set()

    def _stop_container(self, handle: ContainerHandle) -> None:
        # Graceful termination: SIGTERM, then SIGKILL after the grace period (pod-lifecycle "Termination of Pods").
        # A later, shorter grace period (a second delete, the emulator's shutdown) shortens the wait, as upstream.
        since = time.monotonic()
        if self.grace > 0 and not self.worker.kubelet.stopping:
            handle.signal(signal.SIGTERM)
        while not self.exited.is_set():
            left = since + (0.0 if self.worker.kubelet.stopping else self.grace) - time.monotonic()
            if left <= 0:
                break
            self.wake.wait(left)
            self.wake.clear()
        if not self.exited.is_set():
            handle.signal(signal.SIGKILL)
            self.exited.wait(10)

    # --- status -----------------------------------------------------------------------------------------------------

    def status(self, state: dict[str, Any], restarts: int = 0, prev: Obj | None = None) -> dict[str, Any]:
        cs: dict[str, Any] = {
            "name": self.name,
            "image": self.container["image"],
            "imageID": "",
            "ready": False,
            "restartCount": restarts,
            "started": False,
            "state": state,
            "lastState": {},
        }
        last = self.previous(prev) if prev is not None else None
        if last is not None:
            if "terminated" in last.get("state", {}):
                cs["lastState"] = {"terminated": last["state"]["terminated"]}
            else:
                cs["lastState"] = last.get("lastState", {})
        return cs

    def previous(self, pod: Obj) -> Obj | None:
        """This container's status in ``pod`` (None: none yet)."""
        return next((s for s in pod["status"].get(self.key) or [] if s["name"] == self.name), None)

    def set_waiting(self, restarts: int, reason: str, message: str) -> None:
        state = {"reason": reason, "message": message} if message else {"reason": reason}
        self.worker.set_status(self, lambda p: self.status({"waiting": state}, restarts, prev=p))

    def _running(self, restarts: int, started: str, image_id: str, cid: str) -> None:
        def make(p: Obj) -> dict[str, Any]:
            cs = self.status({"running": {"startedAt": started}}, restarts, prev=p)
            cs.update({"ready": True, "started": True, "containerID": cid, "imageID": image_id})
            return cs

        self.worker.set_status(self, make)

    def _terminate(self, restarts: int, code: int, reason: str, message: str | None, cid: str,
                   started: str | None, restart: bool) -> None:  # fmt: skip
        finished = now_iso()
        term: dict[str, Any] = {"exitCode": code, "reason": reason, "startedAt": started or finished,
                                "finishedAt": finished}  # fmt: skip
        if message:
            term["message"] = message
        if cid:
            term["containerID"] = cid

        def make(p: Obj) -> dict[str, Any]:
            cs = self.status({"terminated": term}, restarts)
            prev_cs = self.previous(p) or {}
            cs["lastState"] = prev_cs.get("lastState", {})
            cs["imageID"] = prev_cs.get("imageID", "")
            if cid:
                cs["containerID"] = cid
            if restart:
                # CrashLoopBackOff: the container waits to be restarted in place, its end kept as its last state.
                message = f"back-off 10s restarting failed container={self.name}"
                cs["state"] = {"waiting": {"reason": "CrashLoopBackOff", "message": message}}
                cs["lastState"] = {"terminated": term}
            return cs

        def evicted(p: Obj) -> None:
            if self.disruption == "Evicted":
                st = p["status"]
                st["reason"], st["message"], st["phase"] = "Evicted", self.worker.evict_message, "Failed"

        self.worker.set_status(self, make, evicted)


def unready_message(names: list[str]) -> str:
    return f"containers with unready status: [{' '.join(names)}]"


def ready_conditions(pod: Obj, names: list[str]) -> None:
    """Ready / ContainersReady from the app containers and sidecars that do not run (``names``)."""
    st = pod["status"]
    if names:
        set_condition(st, _cond("Ready", "False", "ContainersNotReady", unready_message(names)))
        set_condition(st, _cond("ContainersReady", "False", "ContainersNotReady", unready_message(names)))
    else:
        set_condition(st, _cond("Ready", "True"))
        set_condition(st, _cond("ContainersReady", "True"))

