"""What a pod's status says on the emulated node: its node name, terminal phases, pod conditions."""

from __future__ import annotations

from typing import Any

from kannon.testing.kube.store import Obj, now_iso

NODE_NAME = "kannon-emulator-node"
TERMINAL = ("Succeeded", "Failed")


def is_terminal(pod: Obj) -> bool:
    return pod.get("status", {}).get("phase") in TERMINAL


def _cond(ctype: str, status: str, reason: str | None = None, message: str | None = None) -> dict[str, Any]:
    c: dict[str, Any] = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": now_iso()}
    if reason:
        c["reason"] = reason
    if message:
        c["message"] = message
    return c


def set_condition(status: dict[str, Any], cond: dict[str, Any]) -> None:
    """Replace the condition of the same type, keeping lastTransitionTime when its status did not change."""
    conds = status.setdefault("conditions", [])
    for i, c in enumerate(conds):
        if c["type"] == cond["type"]:
            if c.get("status") == cond["status"]:
                cond["lastTransitionTime"] = c.get("lastTransitionTime", cond["lastTransitionTime"])
            conds[i] = cond
            return
    conds.append(cond)


# --- several containers ---------------------------------------------------------------------------------------------


def is_sidecar(container: Obj) -> bool:
    """A native sidecar: an init container with ``restartPolicy: Always`` (KEP-753,
    kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/)."""
    return container.get("restartPolicy") == "Always"


def put_status(pod: Obj, key: str, cs: dict[str, Any]) -> None:
    """Replace (or add) one container's status in ``status[key]``, kept in the kubelet's order:
    ``containerStatuses`` sorted by name, ``initContainerStatuses`` in spec order (pkg/kubelet/kubelet_pods.go
    convertToAPIContainerStatuses: sort.Sort(SortedContainerStatuses), SortStatusesOfInitContainers)."""
    st = pod["status"]
    statuses = [s for s in st.get(key) or [] if s["name"] != cs["name"]] + [cs]
    if key == "containerStatuses":
        statuses.sort(key=lambda s: s["name"])
    else:
        order = {c["name"]: i for i, c in enumerate(pod["spec"].get("initContainers") or [])}
        statuses.sort(key=lambda s: order.get(s["name"], len(order)))
    st[key] = statuses


def _state(statuses: dict[str, Obj], name: str) -> tuple[Obj | None, Obj]:
    cs = statuses.get(name)
    return cs, (cs or {}).get("state") or {}


def _last_exit(cs: Obj) -> int | None:
    term = (cs.get("lastState") or {}).get("terminated")
    return None if term is None else int(term.get("exitCode", 0))


def pod_phase(pod: Obj, terminal: bool = False) -> str:
    """The pod's phase from its container statuses, as the kubelet's getPhase (pkg/kubelet/kubelet_pods.go) computes
    it without the ContainerRestartRules gate: a failed init container fails a restartPolicy Never pod; Pending
    until initialized and every app container started; Running while any runs (a native sidecar counts, which is why
    the kubelet stops sidecars once the app containers ended); Succeeded when all app containers ended with 0;
    Failed when all ended, one in failure, with restartPolicy Never — or whatever the restart policy when the pod
    is ``terminal`` (being deleted: nothing is restarted any more)."""
    spec, st = pod["spec"], pod.get("status") or {}
    restart = spec.get("restartPolicy", "Always")
    inits = {cs["name"]: cs for cs in st.get("initContainerStatuses") or []}
    apps = {cs["name"]: cs for cs in st.get("containerStatuses") or []}
    initialized = any(c["type"] == "Initialized" and c["status"] == "True" for c in st.get("conditions") or [])
    pending_init = pending_sidecars = failed_init = 0
    unknown = running = waiting = stopped = succeeded = 0
    for c in spec.get("initContainers") or []:
        cs, state = _state(inits, c["name"])
        if is_sidecar(c):
            if cs is None:
                unknown += 1
            elif "running" in state:
                running += 1
                pending_sidecars += 0 if cs.get("started") else 1
            elif "waiting" in state and _last_exit(cs) is None:
                pending_sidecars += 1
                waiting += 1
            continue  # a terminated sidecar does not count
        if cs is not None and "terminated" in state:
            failed_init += state["terminated"].get("exitCode", 0) != 0
        elif cs is not None and "waiting" in state and (code := _last_exit(cs)) is not None:
            failed_init += code != 0
        else:
            pending_init += 1
    for c in spec.get("containers") or []:
        cs, state = _state(apps, c["name"])
        if cs is None:
            unknown += 1
        elif "running" in state:
            running += 1
        elif "terminated" in state:
            stopped += 1
            succeeded += state["terminated"].get("exitCode", 0) == 0
        elif "waiting" in state and _last_exit(cs) is not None:
            stopped += 1
        else:
            waiting += 1
    if failed_init and restart == "Never":
        return "Failed"
    if pending_init or (pending_sidecars and not initialized) or waiting:
        return "Pending"
    if running and not unknown:
        return "Running"
    if not running and stopped and not unknown:
        if terminal:
            return "Succeeded" if stopped == succeeded else "Failed"
        if restart == "Always":
            return "Running"
        if stopped == succeeded:
            return "Succeeded"
        return "Failed" if restart == "Never" else "Running"
    return "Pending"
