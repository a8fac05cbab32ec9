"""The emulator's docker runtime: pods run as containers on the local engine (real limits, real OOM kills)."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from kubernetes import client

from kannon.testing import KubeEmulator
from tests.support.services import TEST_IMAGE

pytestmark = [pytest.mark.k8s, pytest.mark.docker]

NS = "default"


def host_python_mounts() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """hostPath volumes + mounts that bring the host's interpreter and venv into a container at the same paths."""
    paths = sorted({sys.prefix, sys.base_prefix})
    volumes = [{"name": f"py{i}", "hostPath": {"path": p}} for i, p in enumerate(paths)]
    mounts = [{"name": f"py{i}", "mountPath": p, "readOnly": True} for i, p in enumerate(paths)]
    return volumes, mounts


def docker_job(
    name: str,
    code: str,
    *,
    limits: dict[str, str] | None = None,
    image: str = TEST_IMAGE,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    volumes, mounts = host_python_mounts()
    ctr: dict[str, Any] = {
        "name": "main",
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": [sys.executable, "-S", "-c", code],
        "volumeMounts": mounts,
        "env": env or [],
    }
    if limits:
        ctr["resources"] = {"limits": limits}
    return {
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": {"restartPolicy": "Never", "containers": [ctr], "volumes": volumes}},
        },
    }


def finished(kube: KubeEmulator, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        job = kube.jobs().get(name)
        conds = {c["type"] for c in (job or {}).get("status", {}).get("conditions") or [] if c["status"] == "True"}
        return job if conds & {"Complete", "Failed"} else None

    return kube.wait_for(done, timeout=60)


def only_pod(kube: KubeEmulator, job: str) -> dict[str, Any]:
    (pod,) = [p for p in kube.pods().values() if p["metadata"]["labels"]["job-name"] == job]
    return pod


def test_container_runs_with_env_limits_and_binds(kube_docker: KubeEmulator) -> None:
    api = client.BatchV1Api(kube_docker.api_client())
    env = [{"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}, {"name": "X", "value": "42"}]
    api.create_namespaced_job(
        NS,
        docker_job(
            "dok",
            "import os; print(os.environ['POD'], os.environ['X'])",
            limits={"memory": "256Mi", "cpu": "500m"},
            env=env,
        ),
    )
    job = finished(kube_docker, "dok")
    assert job["status"]["succeeded"] == 1
    pod = only_pod(kube_docker, "dok")
    cs = pod["status"]["containerStatuses"][0]
    assert cs["containerID"].startswith("docker://") and cs["imageID"].startswith("sha256:")
    assert kube_docker.pod_log(pod["metadata"]["name"]).split() == [pod["metadata"]["name"], "42"]
    # The kubelet removes the container once its exit state and log are written: after the Job finished, not before.
    engine = kube_docker.kubelet.runtime.client  # type: ignore[attr-defined]
    label = f"kannon.io/emulator-pod={NS}.{pod['metadata']['name']}"
    kube_docker.wait_for(lambda: engine.containers.list(all=True, filters={"label": label}) == [], 30, "container left")


def test_real_oom_kill_under_a_memory_limit(kube_docker: KubeEmulator) -> None:
    api = client.BatchV1Api(kube_docker.api_client())
    hog = "b = []\nwhile True: b.append(bytearray(16 * 1024 * 1024))"
    api.create_namespaced_job(NS, docker_job("hog", hog, limits={"memory": "64Mi"}))
    job = finished(kube_docker, "hog")
    assert any(c["type"] == "Failed" for c in job["status"]["conditions"])
    term = only_pod(kube_docker, "hog")["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (term["exitCode"], term["reason"]) == (137, "OOMKilled")


def test_missing_image_is_err_image_pull_then_back_off(kube_docker: KubeEmulator) -> None:
    api = client.BatchV1Api(kube_docker.api_client())
    api.create_namespaced_job(NS, docker_job("noimg", "pass", image="kannon-emulator-absent:never"))

    def waiting_reason() -> str | None:
        for p in kube_docker.pods().values():
            for cs in p["status"].get("containerStatuses") or []:
                reason = cs["state"].get("waiting", {}).get("reason")
                if reason == "ImagePullBackOff":
                    return str(reason)
        return None

    assert kube_docker.wait_for(waiting_reason) == "ImagePullBackOff"
    assert not [c for c in kube_docker.jobs()["noimg"]["status"].get("conditions") or [] if c["type"] == "Failed"]
