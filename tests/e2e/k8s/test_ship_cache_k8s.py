"""The node's extraction cache for shipped code on Kubernetes (``--k8s-code-cache HOSTPATH``): a second task on the
same node neither fetches nor extracts the archive (tests/support/shipcache.py). The pods (emulator, Docker runtime)
mount the interpreter, venv, kannon checkout and working directory, never the project's code."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_ship_code_k8s import job_template
from tests.support.shipcache import CACHED, build, check_cache
from tests.support.shipcode import PY, Project

pytestmark = [pytest.mark.k8s, pytest.mark.docker]


def test_a_second_task_on_the_node_uses_the_cached_extraction_without_fetching(kube_docker: KubeEmulator,
                                                                               tmp_path: Path) -> None:  # fmt: skip
    project = Project(tmp_path)
    (project.src / "shipwired" / "cached.py").write_text(CACHED)
    template = tmp_path / "job.yaml"
    template.write_text(yaml.safe_dump(job_template(project)))
    kube = ("--backend", "kubernetes", "--job-template", str(template), "--k8s-python", PY)
    env = {"KUBECONFIG": str(kube_docker.write_kubeconfig(tmp_path / "kubeconfig"))}
    check_cache(project, tmp_path / "node-cache", lambda ws, cache: build(
        project, ws, *kube, *(("--k8s-code-cache", str(cache)) if cache else ()), env=env))  # fmt: skip
