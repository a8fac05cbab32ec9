"""kannon's node with the emulator's Docker runtime against the real control plane: pods bound to it run as
containers on the local engine (the test image, the host's interpreter and venv bind-mounted from hostPath volumes),
with the engine's real memory limit."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.upstream.kube import job_manifest, job_pods
from tests.e2e.upstream.test_node import WAIT, finished, pod_log
from tests.support.procs import wait_until
from tests.support.services import docker_engine, require_test_image

pytestmark = [pytest.mark.upstream, pytest.mark.docker]


@pytest.fixture
def docker_node(upstream: Any, core: Any) -> Iterator[str]:
    """An in-process node agent with the Docker runtime, Ready; its name."""
    from kannon.testing.kube.node.docker_runtime import DockerRuntime
    from kannon.testing.node import NodeAgent

    engine = docker_engine()
    require_test_image(engine)
    name = f"kannon-docker-node-{uuid.uuid4().hex[:6]}"
    tls = (str(upstream.creds.serving_cert), str(upstream.creds.serving_key))
    with NodeAgent(upstream.api_client(), name, DockerRuntime(client=engine), tls=tls):
        wait_until(lambda: not core.read_node(name).spec.taints, WAIT, "the node to be untainted", max_delay=0.5)
        yield name
    core.delete_node(name)


def container_spec(node: str, code: str, **container: Any) -> dict[str, Any]:
    paths = sorted({sys.prefix, sys.base_prefix})
    return {
        "nodeSelector": {"kubernetes.io/hostname": node},
        "volumes": [{"name": f"py{i}", "hostPath": {"path": p}} for i, p in enumerate(paths)],
        "containers": [{"name": "main", "image": require_test_image(docker_engine()),
                        "command": [sys.executable, "-S", "-c", code],
                        "volumeMounts": [{"name": f"py{i}", "mountPath": p, "readOnly": True}
                                         for i, p in enumerate(paths)], **container}],
    }  # fmt: skip


def test_a_job_runs_as_a_container_with_a_secret_volume_and_an_over_limit_one_is_oom_killed(
    batch: Any, core: Any, namespace: str, docker_node: str
) -> None:
    # A secret volume: the node reads the Secret through the API and bind-mounts its files read-only.
    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"}, "stringData": {"token": "s3cr3t"}})
    code = "import os; print('in a container', os.path.exists('/.dockerenv'), open('/etc/creds/token').read())"
    spec = container_spec(docker_node, code)
    spec["volumes"].append({"name": "creds", "secret": {"secretName": "creds"}})
    spec["containers"][0]["volumeMounts"].append({"name": "creds", "mountPath": "/etc/creds"})
    batch.create_namespaced_job(namespace, job_manifest("boxed", pod_spec=spec))
    assert wait_until(lambda: finished(batch, namespace, "boxed"), WAIT, "the Job", max_delay=0.5).type == "Complete"
    pod = job_pods(core, namespace, "boxed")[0]
    status = pod.status.container_statuses[0]
    assert status.container_id.startswith("docker://") and status.image_id.startswith("sha256:")
    assert status.state.terminated.exit_code == 0
    assert pod_log(core, pod.metadata.name, namespace) == "in a container True s3cr3t\n"

    hog = container_spec(docker_node, "b = bytearray(256 * 2**20)", resources={"limits": {"memory": "64Mi"}})
    batch.create_namespaced_job(namespace, job_manifest("hog", backoffLimit=0, pod_spec=hog))
    assert wait_until(lambda: finished(batch, namespace, "hog"), WAIT, "the Job", max_delay=0.5).type == "Failed"
    state = job_pods(core, namespace, "hog")[0].status.container_statuses[0].state.terminated
    assert (state.exit_code, state.reason) == (137, "OOMKilled")
