"""``--ship-code --k8s-code-via configmap``: the code archive travels in the run's ConfigMap, mounted into each child
pod, not through the workspace (docs/code-shipping.md, kannon/backends/kubernetes/codemap.py).

The pods (emulator, Docker runtime) mount the interpreter, venv, kannon checkout and working directory by hostPath,
never the project's code (tests/support/shipcode.py); a control run without the flag fails."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kannon.backends.kubernetes import codemap
from kannon.backends.kubernetes.api import ApiCaller
from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_emulator import NS
from tests.e2e.k8s.test_ship_code_k8s import job_template
from tests.support.shipcode import PY, Project

pytestmark = [pytest.mark.k8s]


def code_volumes(kube: KubeEmulator) -> set[str]:
    """The ConfigMap names the run's Jobs mount (the Jobs outlive the run: ttlSecondsAfterFinished)."""
    jobs = client.BatchV1Api(kube.api_client()).list_namespaced_job(NS).items
    return {v.config_map.name for j in jobs for v in j.spec.template.spec.volumes or () if v.config_map is not None}


@pytest.mark.docker
def test_code_travels_in_the_runs_config_map_mounted_into_the_pods(kube_docker: KubeEmulator, tmp_path: Path) -> None:
    project = Project(tmp_path)
    template = tmp_path / "job.yaml"
    template.write_text(yaml.safe_dump(job_template(project)))
    kubeconfig = kube_docker.write_kubeconfig(tmp_path / "kubeconfig")
    core = client.CoreV1Api(kube_docker.api_client())

    def run(rev: int, *extra: str) -> Any:
        return project.build(rev, "--backend", "kubernetes", "--job-template", str(template), "--k8s-python", PY,
                             "--k8s-code-via", "configmap", *extra, env={"KUBECONFIG": str(kubeconfig)})  # fmt: skip

    control = run(1)  # the child really lacks the code
    assert control.returncode == 1 and "exit code 8" in control.stdout, control.stdout
    assert code_volumes(kube_docker) == set()

    first = run(1, "--ship-code")
    assert first.returncode == 0, first.stdout
    assert project.output(1) == "hello v1!"
    assert project.archives() == []  # nothing went through the workspace
    assert f"at {codemap.MOUNT_DIR}/" in first.stdout and "shipped code: 4 files" in first.stdout, first.stdout
    (v1,) = code_volumes(kube_docker)
    assert "-code-" in v1
    assert core.list_namespaced_config_map(NS).items == []  # deleted with the run, like the run's Secret

    project.set_greeting("hello v2")  # an edit runs at the next build, with no image change
    second = run(2, "--ship-code")
    assert second.returncode == 0, second.stdout
    assert project.output(2) == "hello v2!"
    assert len(code_volumes(kube_docker) - {v1}) == 1 and project.archives() == []


def test_code_over_what_a_config_map_holds_is_one_line_naming_the_largest_file(kube: KubeEmulator,
                                                                                tmp_path: Path) -> None:  # fmt: skip
    project = Project(tmp_path)
    (project.src / "shipwired" / "model.bin").write_bytes(os.urandom(1536 * 1024))  # incompressible: > 1 MiB
    template = tmp_path / "job.yaml"
    template.write_text(yaml.safe_dump(job_template(project)))
    out = project.build(1, "--backend", "kubernetes", "--job-template", str(template), "--ship-code",
                        "--k8s-code-via", "configmap",
                        env={"KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig"))})  # fmt: skip
    assert out.returncode == 2, out.stdout
    assert "Traceback" not in out.stdout
    (line,) = [x for x in out.stdout.splitlines() if x.startswith("kannon: ")]
    assert "over the 1024.0 KiB a Kubernetes ConfigMap holds" in line and "shipwired/model.bin (1536.0 KiB)" in line
    assert client.CoreV1Api(kube.api_client()).list_namespaced_config_map(NS).items == []
    assert project.archives() == []


def test_a_second_master_of_the_run_with_unchanged_code_creates_nothing(kube: KubeEmulator) -> None:
    from kannon.ship import Archive

    core = client.CoreV1Api(kube.api_client())
    archive = Archive(b"\x1f\x8bnot really", "ab" * 32, 1, 10)
    name = codemap.codemap_name("kannon", "run-1", archive.sha256)
    first = codemap.RunCode(ApiCaller(NS), core, NS, name)
    first.put(codemap.codemap_body(name, NS, "run-1", archive, None))
    made = core.read_namespaced_config_map(name, NS).metadata
    second = codemap.RunCode(ApiCaller(NS), core, NS, name)  # a re-attaching master after a crash
    second.put(codemap.codemap_body(name, NS, "run-1", archive, None))
    again = core.read_namespaced_config_map(name, NS).metadata
    assert (again.uid, again.resource_version) == (made.uid, made.resource_version)
    # an earlier master's ConfigMap of older code is swept; another run's is left alone
    older = codemap.codemap_name("kannon", "run-1", "cd" * 32)
    core.create_namespaced_config_map(NS, codemap.codemap_body(older, NS, "run-1", Archive(b"x", "cd" * 32, 1, 1),
                                                               None))  # fmt: skip
    other = codemap.codemap_name("kannon", "run-2", archive.sha256)
    core.create_namespaced_config_map(NS, codemap.codemap_body(other, NS, "run-2", archive, None))
    second.sweep("run-1")
    second.delete()
    assert [c.metadata.name for c in core.list_namespaced_config_map(NS).items] == [other]


def test_plan_refuses_code_over_what_a_config_map_holds_as_the_build_does(
    kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.test_ship_cli import one_line, run

    project = Project(tmp_path)
    template = tmp_path / "job.yaml"
    template.write_text(yaml.safe_dump(job_template(project)))
    options = ("--backend", "kubernetes", "--job-template", str(template), "--ship-code")
    monkeypatch.setenv("KUBECONFIG", str(kube.write_kubeconfig(tmp_path / "kubeconfig")))
    fits = run(project, "plan", *options, "--k8s-code-via", "configmap")
    assert fits.returncode == 0 and "kannon: would ship code: 4 files" in fits.stderr, fits.stderr
    (project.src / "shipwired" / "model.bin").write_bytes(os.urandom(1536 * 1024))  # incompressible: > 1 MiB
    line = one_line(run(project, "plan", *options, "--k8s-code-via", "configmap"))
    assert "over the 1024.0 KiB a Kubernetes ConfigMap holds" in line and "shipwired/model.bin" in line, line
    assert run(project, "plan", *options).returncode == 0  # through the workspace: no such limit
    assert client.CoreV1Api(kube.api_client()).list_namespaced_config_map(NS).items == []
    assert not project.resources.exists()  # a plan uploads nothing


def test_plan_without_a_kubernetes_api_is_one_line_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.e2e.test_ship_cli import one_line, run

    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "no-kubeconfig"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    line = one_line(run(Project(tmp_path), "plan", "--backend", "kubernetes", "--ship-code"))
    assert "no Kubernetes API to talk to" in line and "KUBECONFIG" in line, line
