"""Termination messages: the file at terminationMessagePath and what the kubelet reports from it."""

from __future__ import annotations

import copy
from pathlib import Path

from kannon.testing.kube.node.logs import ContainerLog
from kannon.testing.kube.store import Obj

# kubernetes.io/docs/tasks/debug/debug-application/determine-reason-pod-failure/: the kubelet makes a file per
# container instance, mounts it at terminationMessagePath, and after the exit puts what it holds (its last 4096
# bytes) in state.terminated.message; with FallbackToLogsOnError, an empty file and a non-zero exit, the log's last
# 80 lines / 2048 bytes instead.
TERMINATION_MESSAGE_MAX = 4096  # kubelet: MaxContainerTerminationMessageLength
FALLBACK_LOG_LINES, FALLBACK_LOG_BYTES = 80, 2048  # MaxContainerTerminationMessageLog{Lines,Length}


def termination_file(pod: Obj, env: dict[str, str], path: Path, runtime: str) -> tuple[Obj, dict[str, str], Path]:
    """Create the container instance's termination message file and put it at the container's
    terminationMessagePath: the Docker runtime bind-mounts it there (as the kubelet does); a process pod has no
    mount namespace, so an env value naming that path is pointed at the file instead (its stand-in for the mount)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"")
    path.chmod(0o666)  # the container may run as another user (runAsUser)
    container = pod["spec"]["containers"][0]
    target = container.get("terminationMessagePath") or "/dev/termination-log"
    if runtime == "docker":
        pod = copy.deepcopy(pod)
        volume = {"name": "kannon-emu-termination", "hostPath": {"path": str(path)}}
        pod["spec"].setdefault("volumes", []).append(volume)
        pod["spec"]["containers"][0].setdefault("volumeMounts", []).append(
            {"name": volume["name"], "mountPath": target})
    else:
        env = {k: (str(path) if v == target else v) for k, v in env.items()}
    return pod, env, path


def termination_message(path: Path, container: Obj, code: int, out: ContainerLog) -> str | None:
    try:
        with path.open("rb") as f:
            f.seek(max(0, path.stat().st_size - TERMINATION_MESSAGE_MAX))
            data = f.read(TERMINATION_MESSAGE_MAX)
    except OSError:
        data = b""
    if not data and code != 0 and container.get("terminationMessagePolicy") == "FallbackToLogsOnError":
        with out.cond:
            lines = [line for _, line in out.lines[-FALLBACK_LOG_LINES:]]
        data = b"".join(lines)[-FALLBACK_LOG_BYTES:]
    return data.decode("utf-8", errors="replace") or None
