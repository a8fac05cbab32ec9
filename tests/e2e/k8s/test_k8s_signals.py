"""Signals as a real node delivers them: the container's process is PID 1 of its own PID namespace.

pid_namespaces(7): the kernel drops a signal sent to a namespace's init unless init handles it (SIGKILL from the
node excepted). Kubernetes stops a container with SIGTERM, then SIGKILL after ``terminationGracePeriodSeconds``
(kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination), so a child without a SIGTERM handler
runs on for the whole grace period after a cancel. The emulator's process runtime gives each pod a PID namespace when
it runs as root (CI does: these tests never skip there).
"""

from __future__ import annotations

import json
import os
import re
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kannon.backends.kubernetes import K8sJobExecutor
from kannon.cli import load_target
from kannon.result import KannonBuildError
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from tests.support.procs import gone, wait_until

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[3]
PY = sys.executable
GRACE = 600  # far beyond every wait below: a pod that outlives its SIGTERM is noticed, not waited out

if os.geteuid() != 0 and not os.environ.get("CI"):
    pytest.skip("PID namespaces need root (CI runs as root, where this never skips)", allow_module_level=True)


STUCK = """
import json, os, time
from pathlib import Path
import gokart, kannon

class Pid1Sleeper(kannon.TaskOnBullet[str]):
    def run(self) -> None:
        # /proc is the node's: /proc/self names this process's PID outside its namespace.
        info = {"pid": os.getpid(), "node_pid": int(os.readlink("/proc/self"))}
        with open(os.environ["PID1_INFO"] + ".tmp", "w") as f:
            json.dump(info, f)
        os.replace(os.environ["PID1_INFO"] + ".tmp", os.environ["PID1_INFO"])
        time.sleep(3600)
        self.dump("never")

class Pid1Trigger(kannon.TaskOnBullet[str]):
    # Fails once the sleeper runs (its SIGTERM handler is in place by then): keep_going=False cancels the sleeper.
    def run(self) -> None:
        while not Path(os.environ["PID1_INFO"]).exists():
            time.sleep(0.05)
        raise RuntimeError("fail on purpose: cancel the run")

class Pid1Join(gokart.TaskOnKart[str]):
    def requires(self):
        return [Pid1Sleeper(), Pid1Trigger()]

root = Pid1Join()
"""


def test_a_cancelled_bullet_running_as_pid_1_is_gone_within_seconds(kube: KubeEmulator, tmp_path: Path) -> None:
    path = tmp_path / f"k8s_pid1_{uuid.uuid4().hex[:8]}.py"
    path.write_text(STUCK)
    root, extra = load_target(f"{path}:root")
    info = tmp_path / "pid1.json"
    template = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
        "spec": {"template": {"spec": {"terminationGracePeriodSeconds": GRACE, "containers": [{
            "name": "main", "image": "kannon-test:latest", "workingDir": str(tmp_path),
            "env": [{"name": "PYTHONPATH", "value": str(REPO)}, {"name": "PID1_INFO", "value": str(info)}]}]}}},
    }  # fmt: skip
    ex = K8sJobExecutor(template, api_client=kube.api_client(), python=PY, retry_backoff=0.05)
    with pytest.raises(KannonBuildError, match="fail on purpose"):  # on the main thread, as build() requires
        Kannon(executor=ex, sys_path=extra, retries=0, keep_going=False, max_parallel=2).build(root)
    seen = json.loads(info.read_text())
    assert seen["pid"] == 1  # the task ran as PID 1 of its pod, as in a real container
    # Cancelled when the trigger failed: gone within seconds, not after the 600 s grace period (then SIGKILL).
    wait_until(lambda: gone(seen["node_pid"]), timeout=60, what="the cancelled bullet's process to end")


def test_a_pod_process_is_pid_1_and_sigterm_without_a_handler_is_dropped(kube: KubeEmulator, tmp_path: Path) -> None:
    """Upstream semantics the emulator must keep: PID 1 without a handler outlives SIGTERM until the grace period
    ends (then SIGKILL); with a handler it ends on SIGTERM."""
    batch = client.BatchV1Api(kube.api_client())
    show = "import os\nprint(os.getpid(), os.readlink('/proc/self'), flush=True)\n"
    scripts = {
        "ignores": show + "import time\ntime.sleep(600)",
        "handles": show + "import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *a: sys.exit(143))\n"
                          "time.sleep(600)",
    }  # fmt: skip
    for name, code in scripts.items():
        batch.create_namespaced_job("default", {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {
                "restartPolicy": "Never", "terminationGracePeriodSeconds": GRACE,
                "containers": [{"name": "main", "image": "x", "command": [PY, "-c", code]}]}}}})  # fmt: skip
    core = client.CoreV1Api(kube.api_client())

    def pod(job: str) -> Any:
        pods = core.list_namespaced_pod("default", label_selector=f"job-name={job}").items
        return pods[0] if pods else None

    def printed(job: str) -> list[int]:
        p = pod(job)
        if p is None or p.status.phase != "Running":
            return []
        words = re.findall(r"\d+", str(core.read_namespaced_pod_log(p.metadata.name, "default")))
        return [int(w) for w in words] if len(words) == 2 else []

    pids = {name: wait_until(lambda name=name: printed(name), timeout=120, what=f"{name} to run") for name in scripts}
    assert pids["ignores"][0] == pids["handles"][0] == 1
    names = {name: pod(name).metadata.name for name in scripts}
    for name in scripts:
        core.delete_namespaced_pod(names[name], "default", grace_period_seconds=5)
    wait_until(lambda: gone(pids["handles"][1]), timeout=60, what="the pod that handles SIGTERM to end")
    assert not gone(pids["ignores"][1])  # SIGTERM was dropped: it runs on until the grace period ends
    wait_until(lambda: gone(pids["ignores"][1]), timeout=60, what="SIGKILL after the grace period")
