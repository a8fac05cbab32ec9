"""``kannon build --ship-code`` on the Kubernetes emulator whose pods are Docker containers: hostPath volumes bring
the interpreter, venv, kannon checkout and the working directory (the workspace, as a PersistentVolume would), never
the project's code (tests/support/shipcode.py)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from kannon.testing import KubeEmulator
from tests.support.services import TEST_IMAGE
from tests.support.shipcode import PY, REPO, Project, check_shipping_scenario

pytestmark = [pytest.mark.k8s, pytest.mark.docker]


def job_template(project: Project) -> dict[str, Any]:
    paths = sorted({sys.prefix, sys.base_prefix, str(REPO), str(project.work)})
    volumes = [{"name": f"v{i}", "hostPath": {"path": p}} for i, p in enumerate(paths)]
    mounts = [{"name": f"v{i}", "mountPath": p, "readOnly": p != str(project.work)} for i, p in enumerate(paths)]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"namespace": "default"},
        "spec": {"template": {"spec": {
            "securityContext": {"runAsUser": os.getuid(), "runAsGroup": os.getgid()},
            "volumes": volumes,
            "containers": [{"name": "main", "image": TEST_IMAGE, "imagePullPolicy": "IfNotPresent",
                            "workingDir": str(project.work), "volumeMounts": mounts,
                            "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}},
    }  # fmt: skip


def test_kubernetes_runs_shipped_code_edits_without_an_image_change_and_uploads_once(
    kube_docker: KubeEmulator, tmp_path: Path
) -> None:
    project = Project(tmp_path)
    template = tmp_path / "job.yaml"
    body = job_template(project)
    template.write_text(yaml.safe_dump(body))
    assert not any(str(project.src) in str(v) for v in body["spec"]["template"]["spec"]["volumes"])
    kubeconfig = kube_docker.write_kubeconfig(tmp_path / "kubeconfig")

    def run(rev: int, *extra: str) -> Any:
        return project.build(rev, "--backend", "kubernetes", "--job-template", str(template), "--k8s-python", PY,
                             *extra, env={"KUBECONFIG": str(kubeconfig)})  # fmt: skip

    check_shipping_scenario(project, run)
