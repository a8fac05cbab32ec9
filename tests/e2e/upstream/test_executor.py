"""K8sJobExecutor's launches on the real control plane and kannon's node, as tests/e2e/k8s/test_k8s_backend.py runs
them against the emulator: a deadline from the timeout hint (the real Job controller's DeadlineExceeded) and
cancellation (kannon deletes the Jobs; the real garbage collector deletes their pods and the node kills them)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.base import RunInfo
from kannon.hints import Hints
from tests.e2e.k8s.test_k8s_backend import ScriptK8sExecutor, launch_of, wait_flag
from tests.support.events import Recorder
from tests.support.procs import wait_until

pytestmark = pytest.mark.upstream

WAIT = 180.0


@pytest.fixture
def make(upstream: Any, namespace: str, kannon_node: str,
         tmp_path: Path) -> Iterator[Callable[..., tuple[ScriptK8sExecutor, Recorder]]]:  # fmt: skip
    made: list[ScriptK8sExecutor] = []

    def factory(sidecars: list[dict[str, Any]] | None = None) -> tuple[ScriptK8sExecutor, Recorder]:
        pod = {"nodeSelector": {"kubernetes.io/hostname": kannon_node},
               "containers": [{"name": "main", "image": "kannon-process"}, *(sidecars or [])]}
        template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": namespace},
                    "spec": {"template": {"spec": pod}}}
        executor = ScriptK8sExecutor(template, api_client=upstream.api_client(), python=sys.executable,
                                     retry_backoff=0.05)  # fmt: skip
        rec = Recorder(timeout=WAIT)
        executor.start(RunInfo("run1", tmp_path / "run"), rec)
        made.append(executor)
        return executor, rec

    yield factory
    for executor in made:
        executor.close()


def test_the_timeout_hint_becomes_the_real_controllers_deadline(make: Any, tmp_path: Path) -> None:
    executor, rec = make()
    launch = launch_of(tmp_path, 1, wait_flag(tmp_path / "never"), hints=Hints(timeout=0.5))
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.failure_class == "DeadlineExceeded" and "1 s" in (fin.reason or "")


def test_cancel_deletes_the_jobs_and_their_pods_stop(make: Any, core: Any, batch: Any, namespace: str,
                                                     tmp_path: Path) -> None:  # fmt: skip
    executor, rec = make()
    launches = [launch_of(tmp_path, n, wait_flag(tmp_path / "never")) for n in (1, 2)]
    for launch in launches:
        executor.launch(launch)
    for launch in launches:
        rec.wait_started(launch.key)
    executor.cancel(launches[0].key)
    fin = rec.wait_finished(launches[0].key)
    assert fin.failure_class == "Cancelled" and fin.exit_code is None
    assert executor.cancel_all(timeout=WAIT) == []
    assert all(rec.wait_finished(launch.key).failure_class == "Cancelled" for launch in launches)
    assert batch.list_namespaced_job(namespace).items == []
    # The garbage collector deletes the pods (gracefully): kannon's node stops them and finishes the deletions.
    wait_until(lambda: not core.list_namespaced_pod(namespace).items, WAIT, "the pods to be gone", max_delay=0.5)


def test_a_plain_sidecar_does_not_keep_a_finished_bullet_running(make: Any, batch: Any, namespace: str,
                                                                 tmp_path: Path) -> None:  # fmt: skip
    # The real API server's statuses and Job controller: the pod stays Running while the proxy runs (the Job would
    # stay active), so kannon ends the attempt with the task's container (found by name: "istio-proxy" sorts
    # first) and deletes the Job.
    proxy = {"name": "istio-proxy", "image": "kannon-process",
             "command": [sys.executable, "-c", "import time; time.sleep(3600)"]}  # fmt: skip
    executor, rec = make(sidecars=[proxy])
    launch = launch_of(tmp_path, 1, "print('task done')")
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.ok and fin.log_tail == ("task done",), fin
    wait_until(lambda: not batch.list_namespaced_job(namespace).items, WAIT, "the Job to be deleted", max_delay=0.5)
