"""Slow starts are not stuck (issue 11 §3), against the emulator's kubelet and cluster autoscaler.

What real clusters do: the kubelet records ``Pulling image "<image>"`` while a pull runs and the container waits
in ``ContainerCreating`` (pkg/kubelet/images/image_manager.go); the cluster autoscaler records ``TriggeredScaleUp``
on an unschedulable pod it adds a node for, ``NotTriggerScaleUp`` on one no node group would fit (cluster-autoscaler
FAQ, "What events are emitted by CA?"). Both slow starts take minutes; neither is a stuck pod.

Nothing depends on how long anything takes: each test ends the fault itself (the event the fault returns), and holds
the answer to kannon's create (the pending deadline counts from it) until the pod is in the state the test is about,
so the deadline always finds it there, however slow the machine.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest

from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_k8s_backend import launch_of, requests
from tests.e2e.k8s.test_k8s_backend import make as make  # the fixture
from tests.support.procs import wait_until

pytestmark = pytest.mark.k8s

PENDING = 0.5  # the backend's pending_timeout here: every slow start below lasts longer than that
IMAGE = "kannon-test:latest"  # the template's image (test_k8s_backend.TEMPLATE)


def said(rec: Any, key: str, text: str) -> bool:
    return any(text in line for line in rec.lines(key))


def events(kube: KubeEmulator, reason: str) -> list[dict[str, Any]]:
    return [e for e in kube.store.list_objects("events", "default")[0] if e["reason"] == reason]


def waiting_reason(kube: KubeEmulator) -> str | None:
    for pod in kube.pods().values():
        for cs in pod["status"].get("containerStatuses") or ():
            return str((cs.get("state") or {}).get("waiting", {}).get("reason"))
    return None


def unschedulable(kube: KubeEmulator) -> bool:
    return any(c.get("type") == "PodScheduled" and c.get("status") == "False"
               for p in kube.pods().values() for c in p["status"].get("conditions") or ())  # fmt: skip


def launch_once(kube: KubeEmulator, executor: Any, launch: Any, ready: Any, what: str) -> None:
    """Launch, holding the create's answer (the attempt's pending deadline starts with it) until ``ready()``."""
    answer = kube.faults.hold_answers(1, "POST", r"/jobs$")
    executor.launch(launch)
    try:
        kube.wait_for(ready, 60, what)
    finally:
        answer.set()


def test_a_slow_image_pull_longer_than_pending_timeout_succeeds_without_a_retry(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    executor, rec = make(pending_timeout=PENDING, start_timeout=300, follow=True)
    pulled = kube.faults.slow_image_pull("kannon-")
    launch = launch_of(tmp_path, 1, "print('ran', flush=True)")
    launch_once(kube, executor, launch, lambda: waiting_reason(kube) == "ContainerCreating" and events(kube, "Pulling"),
                "the pod did not start pulling")  # fmt: skip
    # the live view says what it waits for once pending_timeout has passed; the pod is still pulling (the test holds
    # the pull until it has seen that), so the attempt is past its pending deadline and was not failed
    wait_until(lambda: said(rec, launch.key, f"pulling image {IMAGE} for"), timeout=60)
    assert rec.finished() == [] and rec.started() == []
    assert waiting_reason(kube) == "ContainerCreating"
    pulled.set()
    fin = rec.wait_finished(launch.key)
    assert fin.ok, fin
    lines = launch.log_path.read_text().splitlines()
    assert lines[-1] == "ran" and f"pulling image {IMAGE}" in lines[0] and "start_timeout" in lines[0], lines
    assert len(requests(kube, "POST", "/jobs")) == 1  # the same Job: no retry, no second attempt
    (pull,) = events(kube, "Pulled")
    assert pull["message"].startswith(f'Successfully pulled image "{IMAGE}" in ')


def test_a_scale_up_longer_than_pending_timeout_succeeds_without_a_retry(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    executor, rec = make(pending_timeout=PENDING, start_timeout=300, follow=True)
    node_added = kube.faults.scale_up("kannon-")
    launch = launch_of(tmp_path, 1, "print('ran', flush=True)")
    launch_once(kube, executor, launch, lambda: unschedulable(kube) and events(kube, "TriggeredScaleUp"),
                "no scale-up was triggered")  # fmt: skip
    wait_until(lambda: said(rec, launch.key, "waiting for scale-up: pod triggered scale-up:"), timeout=60)
    assert rec.finished() == [] and rec.started() == []
    node_added.set()
    fin = rec.wait_finished(launch.key)
    assert fin.ok, fin
    lines = launch.log_path.read_text().splitlines()
    assert lines[-1] == "ran" and "waiting for scale-up" in lines[0], lines
    assert len(requests(kube, "POST", "/jobs")) == 1
    assert events(kube, "FailedScheduling") and events(kube, "Scheduled")  # as the scheduler records them


def test_a_pod_no_scale_up_can_fit_fails_at_pending_timeout_with_the_autoscalers_message(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """start_timeout is far beyond the Recorder's 60 s wait: finishing at all proves it failed at pending_timeout."""
    executor, rec = make(pending_timeout=PENDING, start_timeout=3600)
    kube.faults.pod_behaviour("kannon-", "NotTriggerScaleUp")
    launch = launch_of(tmp_path, 1, "print('never runs')")
    launch_once(kube, executor, launch, lambda: unschedulable(kube) and events(kube, "NotTriggerScaleUp"),
                "the autoscaler said nothing")  # fmt: skip
    fin = rec.wait_finished(launch.key)
    assert (fin.failure_class, fin.infra) == ("Unschedulable", False), fin
    assert fin.reason is not None and "NotTriggerScaleUp: pod didn't trigger scale-up:" in fin.reason
    assert "Insufficient cpu" in fin.reason
    kube.wait_for(lambda: not kube.jobs(), timeout=30, message="job not cleaned up")


def test_a_slow_start_past_start_timeout_fails_saying_what_it_waited_for(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    executor, rec = make(pending_timeout=PENDING, start_timeout=2.0)
    kube.faults.slow_image_pull("kannon-")  # never released: the pull outlasts start_timeout
    launch = launch_of(tmp_path, 1, "print('never runs')")
    launch_once(kube, executor, launch, lambda: events(kube, "Pulling"), "the pod did not start pulling")
    fin = rec.wait_finished(launch.key)
    assert (fin.failure_class, fin.infra) == ("StartTimeout", False), fin
    assert fin.reason is not None and f"still pulling image {IMAGE}" in fin.reason and "(2 s)" in fin.reason
    assert "StartTimeout" in launch.log_path.read_text()
    kube.wait_for(lambda: not kube.jobs(), timeout=30, message="job not cleaned up")


def test_without_list_events_a_slow_pull_fails_at_pending_timeout_as_before(
    kube: KubeEmulator, make: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Events are an optional permission: without them kannon cannot tell a pull from a hang, says so once, and
    keeps the pending_timeout deadline."""
    kube.faults.forbid("list", "events")
    executor, rec = make(pending_timeout=PENDING, start_timeout=3600)
    kube.faults.slow_image_pull("kannon-")
    launch = launch_of(tmp_path, 1, "print('never runs')")
    with caplog.at_level(logging.WARNING, logger="kannon.kubernetes"):
        launch_once(kube, executor, launch, lambda: waiting_reason(kube) == "ContainerCreating",
                    "the pod did not start pulling")  # fmt: skip
        fin = rec.wait_finished(launch.key)
    assert fin.failure_class == "PendingTimeout" and "ContainerCreating" in (fin.reason or ""), fin
    assert any("cannot list events" in r.getMessage() and "list events" in r.getMessage() for r in caplog.records)


def init_running(kube: KubeEmulator) -> bool:
    return any((cs.get("state") or {}).get("running") for p in kube.pods().values()
               for cs in p["status"].get("initContainerStatuses") or ())  # fmt: skip


def test_an_init_container_at_work_past_pending_timeout_is_a_slow_start_not_a_stuck_pod(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """The Job template's init container (a download, say) runs longer than pending_timeout: the pod is Pending and
    the task's container waits as PodInitializing meanwhile (kubelet getPhase), which is progress, not a stuck pod.
    The init container waits for a file the test writes once kannon has said what it waits for."""
    import sys

    from tests.e2e.k8s.test_k8s_sidecars import template

    release = tmp_path / "release"
    fetch = {"name": "fetch", "image": IMAGE, "command": [sys.executable, "-S", "-c",
             f"import os, time\nwhile not os.path.exists({str(release)!r}): time.sleep(0.05)"]}  # fmt: skip
    executor, rec = make(template_job=template(init=[fetch]), pending_timeout=PENDING, start_timeout=300,
                         follow=True)  # fmt: skip
    launch = launch_of(tmp_path, 1, "print('ran', flush=True)")
    launch_once(kube, executor, launch, lambda: init_running(kube), "the init container did not start")
    wait_until(lambda: said(rec, launch.key, "init container 'fetch' running for"), timeout=60)
    assert rec.finished() == [] and rec.started() == []
    release.write_text("go")
    fin = rec.wait_finished(launch.key)
    assert fin.ok, fin
    lines = launch.log_path.read_text().splitlines()
    assert lines[-1] == "ran" and "init container 'fetch' running" in lines[0], lines
    assert len(requests(kube, "POST", "/jobs")) == 1  # the same Job: no retry, no second attempt
