"""The Kubernetes backend with pods of several containers, against the emulator's kubelet (which runs them as
upstream does: tests/e2e/k8s/test_emulator_sidecars.py).

On a real cluster an injected sidecar (a service mesh proxy, a log shipper) is a second app container that never
exits: the pod stays Running after the task's container ended (kubelet getPhase), so the Job would stay active
until its deadline. Container statuses come sorted by name, so the task's container is found by its name, never as
the first status. An init container's failure shows only in ``initContainerStatuses``.
(kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/, .../pod-lifecycle/#pod-phase)
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.kubernetes import job_name
from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_k8s_backend import TEMPLATE, launch_of
from tests.e2e.k8s.test_k8s_backend import make as make  # the fixture

pytestmark = pytest.mark.k8s

PY = sys.executable
# Sorted before "main": the first container status is the sidecar's on a real cluster and on the emulator.
MESH = {"name": "istio-proxy", "image": "kannon-test:latest",
        "command": [PY, "-S", "-c", "import time; print('proxy up', flush=True); time.sleep(3600)"]}  # fmt: skip


def template(*, containers: list[dict[str, Any]] | None = None, init: list[dict[str, Any]] | None = None,
             ) -> dict[str, Any]:  # fmt: skip
    tmpl = copy.deepcopy(TEMPLATE)
    spec = tmpl["spec"]["template"]["spec"]
    spec["containers"] = [*spec["containers"], *(containers or [])]
    if init:
        spec["initContainers"] = init
    return tmpl


def job_of(launch: Any) -> str:
    return job_name("kannon", "run1", launch.task_id, 1, "Script")


def test_a_plain_sidecar_does_not_keep_a_finished_bullet_running(kube: KubeEmulator, make: Any,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    executor, rec = make(template_job=template(containers=[MESH]))
    launch = launch_of(tmp_path, 1, "print('task done')")
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.ok, fin
    assert fin.log_tail == ("task done",)  # the task container's log, not the proxy's
    assert fin.where is not None and fin.where.startswith("pod kannon-script-")
    # kannon deleted the Job: nothing else would end it while the proxy runs (no deadline, no TTL while active)
    kube.wait_for(lambda: job_of(launch) not in kube.jobs(), message="the Job with a running sidecar was kept")


def test_a_failing_task_with_a_sidecar_fails_as_the_task(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make(template_job=template(containers=[MESH]))
    launch = launch_of(tmp_path, 2, "import sys; print('bad input'); sys.exit(6)")
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert (fin.exit_code, fin.failure_class, fin.infra) == (6, "TaskFailed", False), fin
    assert fin.log_tail == ("bad input",)
    kube.wait_for(lambda: job_of(launch) not in kube.jobs(), message="the Job with a running sidecar was kept")


def test_a_native_sidecar_bullet_finishes_with_its_pod(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    proxy = {**MESH, "restartPolicy": "Always",
             "command": [PY, "-S", "-c", "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: "
                         "sys.exit(0)); time.sleep(3600)"]}  # fmt: skip
    executor, rec = make(template_job=template(init=[proxy]))
    launch = launch_of(tmp_path, 3, "print('task done')")
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.ok and fin.log_tail == ("task done",), fin


def test_an_init_container_failure_is_reported_as_such(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    fetch = {"name": "fetch-data", "image": "kannon-test:latest",
             "command": [PY, "-S", "-c", "import sys; print('no data'); sys.exit(3)"]}  # fmt: skip
    executor, rec = make(template_job=template(init=[fetch]))
    launch = launch_of(tmp_path, 4, "print('never runs')")
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.failure_class == "InitContainerFailed", fin
    assert fin.exit_code is None and not fin.infra  # the task never ran; the template's init container failed
    assert fin.reason is not None and "'fetch-data'" in fin.reason and "exit code 3" in fin.reason
    assert not launch.log_path.exists() or "never runs" not in launch.log_path.read_text()
