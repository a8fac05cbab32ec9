"""Helpers of the upstream tier: manifests, and the kubelet-side writes a test does itself (no node agent yet)."""

from __future__ import annotations

import os
import subprocess
from typing import Any


def node_manifest(name: str) -> dict[str, Any]:
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    resources = {"cpu": "4", "memory": "8Gi", "pods": "110"}
    return {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name, "kannon.test/node": name}},
        "status": {
            "capacity": resources, "allocatable": resources,
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "message": "registered by a test",
                            "lastHeartbeatTime": now, "lastTransitionTime": now}],
        },
    }  # fmt: skip


def job_manifest(name: str, **spec: Any) -> dict[str, Any]:
    """A batch/v1 Job of one pod; ``spec`` keys go into the Job spec, ``pod_spec`` into the pod template's."""
    pod_spec = {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox", "command": ["true"]}]}
    pod_spec.update(spec.pop("pod_spec", {}))
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
        "spec": {"template": {"spec": pod_spec}, **spec},
    }  # fmt: skip


def job_pods(core: Any, namespace: str, job: str) -> list[Any]:
    return list(core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}").items)


def condition(obj: Any, kind: str) -> Any:
    """The status condition of type ``kind`` whose status is "True", else None."""
    for c in (obj.status.conditions or []) if obj.status else []:
        if c.type == kind and c.status == "True":
            return c
    return None


def set_pod_phase(core: Any, namespace: str, pod: str, phase: str) -> None:
    """Write the pod's status as a kubelet would (pods/status subresource): Running, or Succeeded/Failed."""
    from datetime import datetime, timezone

    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if phase == "Running":
        state: dict[str, Any] = {"running": {"startedAt": now}}
    else:
        code = 0 if phase == "Succeeded" else 1
        reason = "Completed" if code == 0 else "Error"
        state = {"terminated": {"exitCode": code, "reason": reason, "startedAt": now, "finishedAt": now}}
    status = {
        "phase": phase, "startTime": now, "hostIP": "127.0.0.1", "podIP": "127.0.0.1",
        "containerStatuses": [{"name": "main", "image": "busybox", "imageID": "", "ready": phase == "Running",
                               "restartCount": 0, "started": phase == "Running", "state": state}],
    }  # fmt: skip
    core.patch_namespaced_pod_status(pod, namespace, {"status": status})


def kubectl(upstream: Any, *args: str, check: bool = True,
            stdin: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
    """The machine's real kubectl against the control plane, as the admin user."""
    env = {**os.environ, "KUBECONFIG": str(upstream.kubeconfig)}
    result = subprocess.run(["kubectl", *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} failed ({result.returncode}): {result.stderr}")
    return result
