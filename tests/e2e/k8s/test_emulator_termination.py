"""The emulator's termination messages, as the kubelet makes them
(kubernetes.io/docs/tasks/debug/debug-application/determine-reason-pod-failure/): what the container writes to its
terminationMessagePath is ``state.terminated.message`` (its last 4096 bytes); with FallbackToLogsOnError, an empty
file and a non-zero exit, the log's tail instead. Read only through the official client."""

from __future__ import annotations

from typing import Any

import pytest

from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_emulator import NS, job_body, wait_finished

pytestmark = pytest.mark.k8s

WRITE = "import os, sys; open(os.environ['MSG'], 'w').write(sys.argv[1]); sys.exit(int(sys.argv[2]))"


def _message(kube: KubeEmulator, core_api: Any, name: str, text: str, code: int = 0, **container: Any) -> Any:
    env = [{"name": "MSG", "value": "/dev/termination-log"}]
    body = job_body(name, WRITE, container={"env": env, **container}, backoffLimit=0)
    body["spec"]["template"]["spec"]["containers"][0]["command"] += [text, str(code)]
    from kubernetes import client

    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, body)
    wait_finished(kube, name)
    (pod,) = core_api.list_namespaced_pod(NS, label_selector=f"batch.kubernetes.io/job-name={name}").items
    assert pod.spec.containers[0].termination_message_path == "/dev/termination-log"  # the API server's default
    return pod.status.container_statuses[0].state.terminated


def test_what_the_container_writes_is_the_termination_message(kube: KubeEmulator, core_api: Any) -> None:
    term = _message(kube, core_api, "says", "all done")
    assert term.exit_code == 0 and term.message == "all done"


def test_a_failed_container_reports_its_message_too(kube: KubeEmulator, core_api: Any) -> None:
    term = _message(kube, core_api, "fails", "it broke", 3)
    assert term.exit_code == 3 and term.message == "it broke"


def test_only_the_last_4096_bytes_are_kept(kube: KubeEmulator, core_api: Any) -> None:
    term = _message(kube, core_api, "long", "a" * 1000 + "b" * 4096)
    assert term.message == "b" * 4096


def test_an_empty_message_file_leaves_no_message(kube: KubeEmulator, core_api: Any) -> None:
    term = _message(kube, core_api, "silent", "", 1)
    assert term.exit_code == 1 and term.message is None


def test_fallback_to_logs_on_error_uses_the_log_tail(kube: KubeEmulator, core_api: Any) -> None:
    code = "import sys; [print(f'line {i}') for i in range(100)]; sys.exit(2)"
    body = job_body("fallback", code, container={"terminationMessagePolicy": "FallbackToLogsOnError"}, backoffLimit=0)
    from kubernetes import client

    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, body)
    wait_finished(kube, "fallback")
    (pod,) = core_api.list_namespaced_pod(NS, label_selector="batch.kubernetes.io/job-name=fallback").items
    message = pod.status.container_statuses[0].state.terminated.message
    assert message.splitlines() == [f"line {i}" for i in range(20, 100)]  # the last 80 lines
