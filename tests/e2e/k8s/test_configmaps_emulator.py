"""The emulator's core/v1 ConfigMaps, each test derived from the upstream documentation it names.

* kubernetes.io/docs/concepts/configuration/configmap/ and the ConfigMap API reference
  (kubernetes.io/docs/reference/kubernetes-api/config-and-storage-resources/config-map-v1/): ``binaryData`` values are
  base64 bytes, keys of ``data`` and ``binaryData`` must not overlap, "The data stored in a ConfigMap cannot exceed
  1 MiB" (data and decoded binaryData together; the apiserver's ``Too long: must have at most 1048576 bytes``).
* kubernetes.io/docs/concepts/storage/volumes/#configmap: a ``configMap`` volume has a file per key under the mount
  path (``items`` maps a key to a path), mounted read-only; a required ConfigMap that is absent keeps the pod in
  ContainerCreating (FailedMount) until it exists.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_emulator import NS, conditions, job_body, pods_of, wait_finished

pytestmark = pytest.mark.k8s

BINARY = bytes(range(256))  # not UTF-8: what binaryData is for


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_binary_data_round_trips_and_lists_by_label(core_api: Any) -> None:
    body = {"metadata": {"name": "bin", "labels": {"app": "x"}}, "data": {"text": "hello"},
            "binaryData": {"blob.bin": b64(BINARY)}}  # fmt: skip
    core_api.create_namespaced_config_map(NS, body)
    got = core_api.read_namespaced_config_map("bin", NS)
    assert got.data == {"text": "hello"} and base64.b64decode(got.binary_data["blob.bin"]) == BINARY
    assert [c.metadata.name for c in core_api.list_namespaced_config_map(NS, label_selector="app").items] == ["bin"]
    with pytest.raises(ApiException) as again:
        core_api.create_namespaced_config_map(NS, body)
    assert again.value.status == 409
    core_api.delete_namespaced_config_map("bin", NS)
    assert core_api.list_namespaced_config_map(NS).items == []


def test_overlapping_keys_bad_base64_and_more_than_1_mib_are_refused(core_api: Any) -> None:
    def refused(body: dict[str, Any]) -> tuple[int, str]:
        with pytest.raises(ApiException) as e:
            core_api.create_namespaced_config_map(NS, {"metadata": {"name": "x"}, **body})
        return e.value.status, str(e.value.body)

    status, text = refused({"data": {"k": "v"}, "binaryData": {"k": b64(b"v")}})
    assert status == 422 and "duplicate of key present in data" in text
    assert refused({"binaryData": {"k": "not base64!"}})[0] == 400
    status, text = refused({"data": {"a": "x" * 1024}, "binaryData": {"b": b64(b"\0" * (1024 * 1024 - 1023))}})
    assert status == 422 and "Too long: must have at most 1048576 bytes" in text
    core_api.create_namespaced_config_map(NS, {"metadata": {"name": "fits"}, "binaryData": {"b": b64(b"\0" * 2**20)}})


def test_a_required_config_map_volume_keeps_the_pod_creating_until_it_exists(
    kube: KubeEmulator, core_api: Any
) -> None:
    body = job_body("cmvol", "print('started')", container={"volumeMounts": [{"name": "code", "mountPath": "/c"}]})
    body["spec"]["template"]["spec"]["volumes"] = [{"name": "code", "configMap": {"name": "later"}}]
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, body)

    def failed_mount() -> str | None:
        return next((e.message for e in core_api.list_namespaced_event(NS).items if e.reason == "FailedMount"), None)

    assert kube.wait_for(failed_mount) == 'MountVolume.SetUp failed for volume "code" : configmap "later" not found'
    (pod,) = pods_of(kube, "cmvol")
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    core_api.create_namespaced_config_map(NS, {"metadata": {"name": "later"}, "data": {"k": "v"}})
    assert "Complete" in conditions(wait_finished(kube, "cmvol"))


@pytest.mark.docker
def test_config_map_volume_files_hold_the_bytes_of_each_key_read_only(kube_docker: KubeEmulator) -> None:
    from tests.e2e.k8s.test_emulator_docker import docker_job, finished

    core = client.CoreV1Api(kube_docker.api_client())
    core.create_namespaced_config_map(NS, {"metadata": {"name": "files"}, "data": {"t.txt": "text"},
                                           "binaryData": {"b.bin": b64(BINARY)}})  # fmt: skip
    code = ("import os; print(sorted(os.listdir('/etc/cm')), open('/etc/cm/b.bin', 'rb').read() == bytes(range(256)), "
            "open('/etc/cm/t.txt').read(), open('/etc/one/sub/x').read(), os.access('/etc/cm/t.txt', os.W_OK))")
    body = docker_job("files", code)
    pod_spec = body["spec"]["template"]["spec"]
    items = {"name": "files", "items": [{"key": "t.txt", "path": "sub/x"}]}
    pod_spec["volumes"] += [{"name": "cm", "configMap": {"name": "files"}}, {"name": "one", "configMap": items}]
    pod_spec["containers"][0]["volumeMounts"] += [{"name": "cm", "mountPath": "/etc/cm"},
                                                  {"name": "one", "mountPath": "/etc/one"}]  # fmt: skip
    client.BatchV1Api(kube_docker.api_client()).create_namespaced_job(NS, body)
    finished(kube_docker, "files")
    (pod,) = [p for p in kube_docker.pods().values() if p["metadata"]["labels"].get("job-name") == "files"]
    assert kube_docker.pod_log(pod["metadata"]["name"]).strip() == "['b.bin', 't.txt'] True text text False"
