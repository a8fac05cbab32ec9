"""Issue 17 on the Kubernetes backend against the emulator: each bullet's record travels in its container's
termination message, read by the tracker into the events. Process pods: without a memory limit a pod shares the
emulator's cgroup, so its peak comes from getrusage; with one the emulator gives it a memory cgroup of its own
(where the host lets it), whose peak is the pod's."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kannon.backends import _memlimit
from kannon.testing import KubeEmulator
from tests.e2e import usagecheck, usagepipe
from tests.e2e.k8s.test_k8s_backend_build import REPO, template
from tests.support.services import TEST_IMAGE

pytestmark = pytest.mark.k8s
PY = sys.executable


def _build(kube: KubeEmulator, tmp_path: Path, body: dict[str, Any], memory: str | None) -> Path:
    shutil.copy(Path(usagepipe.__file__), tmp_path / "usagepipe.py")
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(body))
    kubeconfig = kube.write_kubeconfig(tmp_path / "kubeconfig")
    env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(REPO),
           **({"USAGEPIPE_MEMORY": memory} if memory else {})}  # fmt: skip
    out = subprocess.run([PY, "-m", "kannon", "build", "usagepipe.py:root", "--backend", "kubernetes",
                          "--job-template", "job.yaml", "--k8s-python", PY, "--events", "ev.jsonl"],
                         cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    return tmp_path / "ev.jsonl"


@pytest.mark.parametrize("memory", [None, "1Gi"])
def test_usage_on_kubernetes_travels_in_the_termination_message(kube: KubeEmulator, tmp_path: Path,
                                                                 memory: str | None) -> None:  # fmt: skip
    own_cgroups = _memlimit._detect().kind != "watchdog"  # else the emulator's pods share its cgroup
    if memory and not own_cgroups:
        pytest.skip("the emulator cannot make memory cgroups here: its pods share its cgroup")
    events = _build(kube, tmp_path, template(tmp_path), memory)
    # Where it can, the emulator gives every pod a memory cgroup of its own, limit or not, as a node does
    by = usagecheck.check_figures(events, ("cgroup-v1", "cgroup-v2") if own_cgroups else "rusage")
    want = {"memory": memory} if memory else None
    assert all(e.get("requested_resources") == want for e in by.values())
    for pod in kube.pods().values():  # the record is the message, and it names no parameter value
        message = pod["status"]["containerStatuses"][0]["state"]["terminated"].get("message", "")
        assert '"kannon_result":1' in message and usagepipe.SECRET not in message


@pytest.mark.docker
def test_usage_on_kubernetes_with_container_pods_is_the_containers_cgroup_peak(kube_docker: KubeEmulator,
                                                                               tmp_path: Path) -> None:  # fmt: skip
    # Pods as Docker containers: each has a memory cgroup of its own, and the termination message file is
    # bind-mounted at /dev/termination-log as on a real node.
    paths = sorted({sys.prefix, sys.base_prefix, str(REPO), str(tmp_path)})
    body = template(tmp_path, image=TEST_IMAGE, imagePullPolicy="IfNotPresent",
                    volumeMounts=[{"name": f"v{i}", "mountPath": p, "readOnly": p != str(tmp_path)}
                                  for i, p in enumerate(paths)])  # fmt: skip
    pod = body["spec"]["template"]["spec"]
    pod["volumes"] = [{"name": f"v{i}", "hostPath": {"path": p}} for i, p in enumerate(paths)]
    pod["securityContext"] = {"runAsUser": os.getuid(), "runAsGroup": os.getgid()}
    events = _build(kube_docker, tmp_path, body, None)
    usagecheck.check_figures(events, ("cgroup-v1", "cgroup-v2"))
