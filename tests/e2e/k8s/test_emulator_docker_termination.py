"""Termination messages on the emulator's docker runtime: the kubelet's file is bind-mounted at
terminationMessagePath, as on a real node, and kannon's record writer gets through that mount (a bind-mounted file
cannot be replaced by a rename: it is written in place)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_emulator_docker import NS, docker_job, finished

pytestmark = [pytest.mark.k8s, pytest.mark.docker]
REPO = Path(__file__).resolve().parents[3]

WRITE = """
import sys
sys.path.insert(0, sys.argv[1])
from kannon import childresult
record = childresult.ChildResult(task="t" * 32, spec_sha256="s" * 64, attempt=1, outcome="ok", exit_code=0)
childresult.write_atomic("/dev/termination-log", record)
"""


def test_a_record_written_in_a_container_is_its_termination_message(kube_docker: KubeEmulator) -> None:
    body: dict[str, Any] = docker_job("record", WRITE)
    pod = body["spec"]["template"]["spec"]
    pod["volumes"].append({"name": "repo", "hostPath": {"path": str(REPO)}})
    pod["containers"][0]["volumeMounts"].append({"name": "repo", "mountPath": str(REPO), "readOnly": True})
    pod["containers"][0]["command"] = [c for c in pod["containers"][0]["command"] if c != "-S"] + [str(REPO)]
    client.BatchV1Api(kube_docker.api_client()).create_namespaced_job(NS, body)
    finished(kube_docker, "record")
    (p,) = client.CoreV1Api(kube_docker.api_client()).list_namespaced_pod(
        NS, label_selector="batch.kubernetes.io/job-name=record").items
    term = p.status.container_statuses[0].state.terminated
    assert term.exit_code == 0, term
    assert json.loads(term.message)["task"] == "t" * 32
