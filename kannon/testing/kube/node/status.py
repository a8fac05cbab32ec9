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
