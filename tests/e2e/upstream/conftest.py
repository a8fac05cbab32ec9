"""Fixtures for the upstream tier: a real kube-apiserver, etcd, kube-controller-manager and kube-scheduler built from
source (kannon.testing.upstream), started once per session on 127.0.0.1.

The build (tens of minutes when the machine's cache is cold) runs at collection time, only when tests of this tier
were selected, so it is outside every test's timeout. Without Go, or when the build fails, the tier is skipped with
the reason — and under CI=true fails instead (tests/support/services.py).

``kannon_node`` runs kannon's node agent (``python -m kannon.testing.node``, warm process runtime) for the session: pods
bound to it really run. Controller tests that need a pod in an exact state instead bind it to a bare Node object
(``node``) and write its status through the pods/status subresource as a kubelet would.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.upstream.kube import node_manifest
from tests.support.procs import wait_until
from tests.support.services import service_unavailable

HERE = Path(__file__).parent
BUILD_HINT = "run `python -m kannon.testing.upstream build` (needs Go 1.24+ and the Go module proxy); docs/upstream.md"
_build_problem: str | None = None


@pytest.hookimpl(trylast=True)  # after `-m`/`-k` deselection: build only for tests that will run
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    global _build_problem
    if any(HERE in Path(str(item.path)).parents for item in items):
        from kannon.testing.upstream import BuildError, ensure_built

        try:
            ensure_built()
        except BuildError as e:
            _build_problem = f"the upstream Kubernetes programs could not be built: {e}"


@pytest.fixture(scope="session")
def upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The running control plane (kannon.testing.upstream.ControlPlane)."""
    if _build_problem:
        service_unavailable(_build_problem, BUILD_HINT)
    if not shutil.which("kubectl"):
        service_unavailable("no kubectl on PATH", "install kubectl 1.32-1.34 (within one minor of the server)")
    from kannon.testing.upstream import ControlPlane

    with ControlPlane(tmp_path_factory.mktemp("upstream"), die_with_parent=True) as plane:
        yield plane


@pytest.fixture(scope="session")
def api_client(upstream: Any) -> Any:
    """The official client, as the admin user (system:masters)."""
    return upstream.api_client()


@pytest.fixture
def core(api_client: Any) -> Any:
    from kubernetes import client

    return client.CoreV1Api(api_client)


@pytest.fixture
def batch(api_client: Any) -> Any:
    from kubernetes import client

    return client.BatchV1Api(api_client)


@pytest.fixture
def namespace(core: Any, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace whose `default` ServiceAccount exists (pods are refused before it does)."""
    name = f"t-{request.node.name[5:30].replace('_', '-').strip('-').lower()}-{uuid.uuid4().hex[:5]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_until(lambda: _exists(core.read_namespaced_service_account, "default", name), 60, "default ServiceAccount",
               max_delay=0.5)  # fmt: skip
    yield name
    # Without a kubelet a bound pod never finishes a graceful deletion: remove the test's pods at once.
    for pod in core.list_namespaced_pod(name).items:
        _ignore_404(core.delete_namespaced_pod, pod.metadata.name, name, grace_period_seconds=0)
    core.delete_namespace(name)


@pytest.fixture
def node(core: Any) -> Iterator[str]:
    """A registered, Ready Node (as a kubelet registers it) that no kubelet backs; deleted afterwards."""
    name = f"kannon-node-{uuid.uuid4().hex[:8]}"
    core.create_node(node_manifest(name))
    # Admission taints a new Node not-ready until the node-lifecycle controller has seen its Ready condition.
    wait_until(lambda: not core.read_node(name).spec.taints, 60, "the not-ready taint to go", max_delay=0.5)
    yield name
    _ignore_404(core.delete_node, name)


def _exists(read: Any, *args: Any) -> bool:
    from kubernetes.client.rest import ApiException

    try:
        read(*args)
    except ApiException as e:
        if e.status == 404:
            return False
        raise
    return True


def _ignore_404(call: Any, *args: Any, **kwargs: Any) -> None:
    from kubernetes.client.rest import ApiException

    try:
        call(*args, **kwargs)
    except ApiException as e:
        if e.status != 404:
            raise


NODE_NAME = "kannon-node-0"


@pytest.fixture(scope="session")
def kannon_node(upstream: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """kannon's node agent as its own process (process runtime), registered and Ready; its name. Its log is in the
    session's temporary directory (printed on a start failure)."""
    from kubernetes import client

    core = client.CoreV1Api(upstream.api_client())
    directory = tmp_path_factory.mktemp("kannon-node")
    log = (directory / "node.log").open("wb")
    # Warm process pods (forked from a zygote that imported gokart once): a cold interpreter per pod would put ~1 s
    # of imports per pod on the master's two cores; the cold path is covered by the node-restart test.
    command = [sys.executable, "-m", "kannon.testing.node", *upstream.node_flags(), f"--name={NODE_NAME}",
               f"--workdir={directory}", "--warm-import=gokart", "--warm-import=kannon.childwarm:warm_up"]
    proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            preexec_fn=_die_with_parent)  # fmt: skip
    log.close()

    def ready() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"the node agent exited ({proc.returncode}):\n{(directory / 'node.log').read_text()}")
        try:
            node = core.read_node(NODE_NAME)
        except client.ApiException:
            return False
        # Admission taints a new Node not-ready until the node-lifecycle controller has seen it Ready.
        return not node.spec.taints and any(c.type == "Ready" and c.status == "True" for c in node.status.conditions)

    try:
        wait_until(ready, 120, "kannon's node to be Ready and untainted", max_delay=0.5)
        yield NODE_NAME
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
        _ignore_404(core.delete_node, NODE_NAME)


def _die_with_parent() -> None:
    import ctypes

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: a killed session leaves no node
