"""The emulator's kubelet runs init containers, native sidecars and every app container of a pod as upstream does.

Upstream facts these follow:
- kubernetes.io/docs/concepts/workloads/pods/init-containers/: init containers run one at a time in spec order, each
  to completion before the next; a failing one fails a ``restartPolicy: Never`` pod, whose app containers never start.
- kubernetes.io/docs/concepts/workloads/pods/sidecar-containers/ (KEP-753): an init container with
  ``restartPolicy: Always`` is a sidecar: started in order, not waited for, kept running alongside the app containers
  and stopped after they finished; it does not keep a Job's pod from completing.
- pkg/kubelet/kubelet_pods.go getPhase: Running while any app container runs, Succeeded when all terminated with 0,
  Failed when all terminated and one failed (restartPolicy Never); a plain sidecar (an app container) therefore keeps
  the pod Running. convertToAPIContainerStatuses sorts containerStatuses by name; initContainerStatuses keep spec order.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest

from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_emulator import NS, conditions, pods_of, wait_finished

pytestmark = pytest.mark.k8s

PY = sys.executable
# A sidecar that stops on SIGTERM (as PID 1 of its pod's namespace it would otherwise ignore the signal).
SIDECAR = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(3600)"


def ctr(name: str, code: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": "python:3.11-slim", "command": [PY, "-S", "-c", code], **extra}


def note(path: Path, what: str) -> str:
    """Code appending `what` to the file `path`: the order containers ran in."""
    return f"open({str(path)!r}, 'a').write({what!r} + chr(10))"


def job(name: str, containers: list[dict[str, Any]], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"restartPolicy": "Never", "containers": containers, "terminationGracePeriodSeconds": 5}
    if init:
        spec["initContainers"] = init
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": spec}}}  # fmt: skip


def only_pod(kube: KubeEmulator, name: str) -> dict[str, Any]:
    pods = pods_of(kube, name)
    assert len(pods) == 1, [p["metadata"]["name"] for p in pods]
    return pods[0]


def state(statuses: list[dict[str, Any]], name: str) -> dict[str, Any]:
    return next(cs for cs in statuses if cs["name"] == name)["state"]


def test_init_containers_run_in_order_before_the_app_containers(kube: KubeEmulator, batch_api: Any,
                                                                tmp_path: Path) -> None:  # fmt: skip
    order = tmp_path / "order"
    body = job("init-order", [ctr("main", note(order, "main"))],
               init=[ctr("first", note(order, "first")), ctr("second", note(order, "second"))])  # fmt: skip
    batch_api.create_namespaced_job(NS, body)
    assert "Complete" in conditions(wait_finished(kube, "init-order"))
    assert order.read_text().split() == ["first", "second", "main"]
    st = only_pod(kube, "init-order")["status"]
    assert st["phase"] == "Succeeded"
    assert [cs["name"] for cs in st["initContainerStatuses"]] == ["first", "second"]  # spec order
    for cs in st["initContainerStatuses"]:
        assert cs["state"]["terminated"]["exitCode"] == 0 and cs["state"]["terminated"]["reason"] == "Completed"
    assert [cs["name"] for cs in st["containerStatuses"]] == ["main"]
    assert {c["type"]: c["status"] for c in st["conditions"]}["Initialized"] == "True"


def test_a_failing_init_container_fails_the_pod_and_shows_only_in_init_statuses(
    kube: KubeEmulator, batch_api: Any, tmp_path: Path
) -> None:
    order = tmp_path / "order"
    body = job("init-fails", [ctr("main", note(order, "main"))],
               init=[ctr("setup", "import sys; sys.exit(3)"), ctr("later", note(order, "later"))])  # fmt: skip
    batch_api.create_namespaced_job(NS, body)
    assert "Failed" in conditions(wait_finished(kube, "init-fails"))
    assert not order.exists()  # neither the next init container nor the app container ran
    st = only_pod(kube, "init-fails")["status"]
    assert st["phase"] == "Failed"
    term = state(st["initContainerStatuses"], "setup")["terminated"]
    assert (term["exitCode"], term["reason"]) == (3, "Error")
    assert state(st["initContainerStatuses"], "later")["waiting"]["reason"] == "PodInitializing"
    assert state(st["containerStatuses"], "main")["waiting"]["reason"] == "PodInitializing"
    init = {c["type"]: c for c in st["conditions"]}["Initialized"]
    assert (init["status"], init["reason"]) == ("False", "ContainersNotInitialized")


def test_a_native_sidecar_runs_alongside_and_is_stopped_after_the_app_containers(
    kube: KubeEmulator, batch_api: Any, tmp_path: Path
) -> None:
    order = tmp_path / "order"
    sidecar = ctr("proxy", SIDECAR, restartPolicy="Always")
    body = job("native", [ctr("main", note(order, "main"))], init=[sidecar, ctr("after", note(order, "after"))])
    batch_api.create_namespaced_job(NS, body)
    assert "Complete" in conditions(wait_finished(kube, "native"))  # the sidecar was not waited for
    assert order.read_text().split() == ["after", "main"]
    st = only_pod(kube, "native")["status"]
    assert st["phase"] == "Succeeded"
    proxy = next(cs for cs in st["initContainerStatuses"] if cs["name"] == "proxy")
    main = state(st["containerStatuses"], "main")["terminated"]
    assert proxy["state"]["terminated"]["startedAt"] <= main["startedAt"]  # started before the app container
    assert proxy["state"]["terminated"]["finishedAt"] >= main["finishedAt"]  # and stopped after it ended
    assert proxy["state"]["terminated"]["exitCode"] == 0  # stopped by SIGTERM, which it handles


def test_a_failing_app_container_with_a_native_sidecar_fails_the_pod(kube: KubeEmulator, batch_api: Any) -> None:
    body = job("native-fail", [ctr("main", "import sys; sys.exit(4)")],
               init=[ctr("proxy", SIDECAR, restartPolicy="Always")])  # fmt: skip
    batch_api.create_namespaced_job(NS, body)
    assert "Failed" in conditions(wait_finished(kube, "native-fail"))
    st = only_pod(kube, "native-fail")["status"]
    assert st["phase"] == "Failed"
    assert state(st["containerStatuses"], "main")["terminated"]["exitCode"] == 4


def test_container_statuses_are_sorted_by_name(kube: KubeEmulator, batch_api: Any) -> None:
    body = job("sorted", [ctr("zeta", "pass"), ctr("alpha", "pass"), ctr("mid", "pass")])
    batch_api.create_namespaced_job(NS, body)
    assert "Complete" in conditions(wait_finished(kube, "sorted"))
    st = only_pod(kube, "sorted")["status"]
    assert [cs["name"] for cs in st["containerStatuses"]] == ["alpha", "mid", "zeta"]
    assert st["phase"] == "Succeeded"


def test_every_app_container_runs_and_one_failure_fails_the_pod(kube: KubeEmulator, batch_api: Any,
                                                                tmp_path: Path) -> None:  # fmt: skip
    order = tmp_path / "order"
    body = job("two", [ctr("main", "import sys; sys.exit(2)"), ctr("helper", note(order, "helper"))])
    batch_api.create_namespaced_job(NS, body)
    assert "Failed" in conditions(wait_finished(kube, "two"))
    assert order.read_text().split() == ["helper"]
    st = only_pod(kube, "two")["status"]
    assert st["phase"] == "Failed"
    assert state(st["containerStatuses"], "main")["terminated"]["exitCode"] == 2
    assert state(st["containerStatuses"], "helper")["terminated"]["exitCode"] == 0


def test_a_plain_sidecar_keeps_the_pod_running_after_the_main_container_exits(kube: KubeEmulator,
                                                                               batch_api: Any) -> None:  # fmt: skip
    batch_api.create_namespaced_job(NS, job("plain", [ctr("main", "pass"), ctr("mesh", SIDECAR)]))

    def main_ended() -> dict[str, Any] | None:
        pods = pods_of(kube, "plain")
        for cs in (pods[0].get("status") or {}).get("containerStatuses") or [] if pods else []:
            if cs["name"] == "main" and "terminated" in cs["state"]:
                return pods[0]
        return None

    pod = kube.wait_for(main_ended, message="the main container did not end")
    # The status that says main ended still has the sidecar running: the pod is Running, the Job not complete.
    assert pod["status"]["phase"] == "Running"
    assert "running" in state(pod["status"]["containerStatuses"], "mesh")
    assert not {"Complete", "Failed"} & set(conditions(kube.jobs()["plain"]))
    batch_api.delete_namespaced_job("plain", NS, propagation_policy="Background")
    kube.wait_for(lambda: not pods_of(kube, "plain"), message="the pod was not deleted with its Job")
