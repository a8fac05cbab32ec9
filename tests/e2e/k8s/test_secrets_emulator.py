"""The emulator's core/v1 Secrets, each test derived from the upstream documentation it names.

* kubernetes.io/docs/concepts/configuration/secret/ and the Secret API reference
  (kubernetes.io/docs/reference/kubernetes-api/config-and-storage-resources/secret-v1/): ``data`` is base64,
  ``stringData`` is write-only and merged into ``data`` (its keys win), keys match ``[-._a-zA-Z0-9]+``.
* kubernetes.io/docs/tasks/inject-data-application/distribute-credentials-secure/: ``env[].valueFrom.secretKeyRef``
  and ``envFrom[].secretRef`` (with ``prefix``); ``optional`` ("Specify whether the Secret or its key must be
  defined", SecretKeySelector / SecretEnvSource field docs); ``env`` overrides ``envFrom`` for the same name.
* A missing required Secret or key leaves the container waiting with ``CreateContainerConfigError`` and the kubelet's
  message (``secret "X" not found`` / ``couldn't find key K in Secret NS/X``); it starts once the Secret exists.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_emulator import NS, conditions, job_body, pods_of, wait_finished

pytestmark = pytest.mark.k8s

PRINT_ENV = "import json, os; print(json.dumps({k: v for k, v in os.environ.items() if k.startswith('S_')}))"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def secret(name: str, labels: dict[str, str] | None = None, **data: str) -> dict[str, Any]:
    return {"metadata": {"name": name, **({"labels": labels} if labels else {})},
            "data": {k: b64(v) for k, v in data.items()}}  # fmt: skip


def env_of(kube: KubeEmulator, job: str) -> dict[str, str]:
    done = wait_finished(kube, job)
    assert "Complete" in conditions(done), kube.pod_log(pods_of(kube, job)[-1]["metadata"]["name"])
    out: dict[str, str] = json.loads(kube.pod_log(pods_of(kube, job)[-1]["metadata"]["name"]).strip().splitlines()[-1])
    return out


def waiting(kube: KubeEmulator, job: str) -> dict[str, Any]:
    def state() -> dict[str, Any] | None:
        for pod in pods_of(kube, job):
            for cs in pod["status"].get("containerStatuses") or []:
                w = cs["state"].get("waiting") or {}
                if w.get("reason") not in (None, "ContainerCreating"):
                    return {"phase": pod["status"].get("phase"), **w}
        return None

    return kube.wait_for(state, message=f"no pod of {job} waiting")


def test_data_is_base64_and_string_data_merges_into_it(core_api: Any) -> None:
    body = secret("creds", a="from-data", b="kept")
    body["stringData"] = {"a": "from-stringData", "c": "plain"}
    made = core_api.create_namespaced_secret(NS, body)
    assert made.type == "Opaque" and made.string_data is None
    got = core_api.read_namespaced_secret("creds", NS)
    assert {k: base64.b64decode(v).decode() for k, v in got.data.items()} == {
        "a": "from-stringData", "b": "kept", "c": "plain"}  # fmt: skip
    patched = core_api.patch_namespaced_secret("creds", NS, {"stringData": {"b": "changed"}})
    assert base64.b64decode(patched.data["b"]).decode() == "changed" and patched.string_data is None


def test_invalid_base64_and_invalid_keys_are_refused(core_api: Any) -> None:
    with pytest.raises(ApiException) as bad:
        core_api.create_namespaced_secret(NS, {"metadata": {"name": "x"}, "data": {"k": "not base64!"}})
    assert bad.value.status == 400
    with pytest.raises(ApiException) as invalid:
        core_api.create_namespaced_secret(NS, {"metadata": {"name": "x"}, "stringData": {"bad/key": "v"}})
    assert invalid.value.status == 422 and "data[bad/key]" in invalid.value.body


def test_list_by_label_replace_and_delete(core_api: Any) -> None:
    core_api.create_namespaced_secret(NS, secret("one", {"run": "r1"}, k="1"))
    core_api.create_namespaced_secret(NS, secret("two", {"run": "r2"}, k="2"))
    assert [s.metadata.name for s in core_api.list_namespaced_secret(NS, label_selector="run=r1").items] == ["one"]
    with pytest.raises(ApiException) as dup:
        core_api.create_namespaced_secret(NS, secret("one", k="again"))
    assert dup.value.status == 409
    core_api.replace_namespaced_secret("one", NS, secret("one", {"run": "r1"}, k="new"))
    assert base64.b64decode(core_api.read_namespaced_secret("one", NS).data["k"]).decode() == "new"
    core_api.delete_namespaced_secret("one", NS)
    with pytest.raises(ApiException) as gone:
        core_api.read_namespaced_secret("one", NS)
    assert gone.value.status == 404 and json.loads(gone.value.body)["message"] == 'secrets "one" not found'


def test_secret_key_ref_env_from_prefix_and_env_precedence(kube: KubeEmulator, core_api: Any) -> None:
    core_api.create_namespaced_secret(NS, secret("s", S_A="a-from-envFrom", S_B="b", T="t"))
    container = {
        "envFrom": [{"secretRef": {"name": "s"}}, {"prefix": "S_P_", "secretRef": {"name": "s"}},
                    {"secretRef": {"name": "absent", "optional": True}}],
        "env": [{"name": "S_A", "value": "a-from-env"},
                {"name": "S_KEY", "valueFrom": {"secretKeyRef": {"name": "s", "key": "T"}}},
                {"name": "S_OPT", "valueFrom": {"secretKeyRef": {"name": "s", "key": "nokey", "optional": True}}}],
    }  # fmt: skip
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("env", PRINT_ENV, container=container))
    assert env_of(kube, "env") == {"S_A": "a-from-env", "S_B": "b", "S_KEY": "t", "S_P_S_A": "a-from-envFrom",
                                   "S_P_S_B": "b", "S_P_T": "t"}  # fmt: skip


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ({"secretKeyRef": {"name": "later", "key": "k"}}, 'secret "later" not found'),
        ({"secretKeyRef": {"name": "partial", "key": "k"}}, "couldn't find key k in Secret default/partial"),
        (None, 'secret "later" not found'),
    ],
)
def test_missing_required_secret_waits_with_config_error_then_starts(
    kube: KubeEmulator, core_api: Any, ref: dict[str, Any] | None, message: str
) -> None:
    core_api.create_namespaced_secret(NS, secret("partial", other="x"))
    container: dict[str, Any] = (
        {"env": [{"name": "S_K", "valueFrom": ref}]} if ref else {"envFrom": [{"secretRef": {"name": "later"}}]}
    )
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, job_body("wait", PRINT_ENV, container=container))
    state = waiting(kube, "wait")
    assert (state["phase"], state["reason"], state["message"]) == ("Pending", "CreateContainerConfigError", message)
    core_api.create_namespaced_secret(NS, secret("later", k="arrived", S_K="arrived"))
    core_api.replace_namespaced_secret("partial", NS, secret("partial", other="x", k="arrived"))
    assert env_of(kube, "wait") == {"S_K": "arrived"}


# -- the emulator's own doors (issue 12): loopback, JSON bodies only ------------------------------------
def raw(kube: KubeEmulator, method: str, path: str, headers: dict[str, str], body: bytes = b"") -> tuple[int, Any]:
    conn = kube.connection(timeout=30)
    try:
        conn.request(method, path, body=body or None, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def test_it_listens_on_loopback_unless_told_otherwise(kube: KubeEmulator) -> None:
    assert kube.url.startswith("https://127.0.0.1:")


def test_bodies_that_are_not_json_are_refused(kube: KubeEmulator) -> None:
    """The apiserver decodes only the media types it has serializers for (415 otherwise) and answers a body that
    does not decode with 400 BadRequest."""
    path = "/api/v1/namespaces/default/secrets"
    text = {"Content-Type": "text/plain"}
    code, body = raw(kube, "POST", path, text, b"name=x")
    assert (code, body["reason"]) == (415, "UnsupportedMediaType")
    broken = {"Content-Type": "application/json"}
    code, body = raw(kube, "POST", path, broken, b'{"metadata": {"name": ')
    assert (code, body["reason"]) == (400, "BadRequest")
    assert kube.store.snapshot("secrets", NS) == {}


# -- secret volumes (kubernetes.io/docs/concepts/configuration/secret/#using-secrets-as-files-from-a-pod) -----------
def test_a_required_secret_volume_keeps_the_pod_creating_until_the_secret_exists(
    kube: KubeEmulator, core_api: Any
) -> None:
    """The kubelet cannot set the volume up (FailedMount): the container stays waiting in ContainerCreating, and it
    starts once the Secret exists. An optional one that is absent does not hold the pod."""
    spec = {
        "template": {
            "spec": {
                "volumes": [
                    {"name": "creds", "secret": {"secretName": "vol"}},
                    {"name": "maybe", "secret": {"secretName": "nope", "optional": True}},
                ]
            }
        }
    }
    body = job_body("vol", "print('started')", container={"volumeMounts": [
        {"name": "creds", "mountPath": "/etc/creds"}, {"name": "maybe", "mountPath": "/etc/maybe"}]})  # fmt: skip
    body["spec"]["template"]["spec"]["volumes"] = spec["template"]["spec"]["volumes"]
    client.BatchV1Api(kube.api_client()).create_namespaced_job(NS, body)

    def failed_mount() -> dict[str, Any] | None:
        events = core_api.list_namespaced_event(NS).items
        return next(({"reason": e.reason, "message": e.message, "pod": e.involved_object.name} for e in events
                     if e.reason == "FailedMount"), None)  # fmt: skip

    event = kube.wait_for(failed_mount)
    assert event["message"] == 'MountVolume.SetUp failed for volume "creds" : secret "vol" not found'
    (pod,) = pods_of(kube, "vol")
    assert event["pod"] == pod["metadata"]["name"] and pod["status"]["phase"] == "Pending"
    assert pod["status"]["containerStatuses"][0]["state"] == {"waiting": {"reason": "ContainerCreating"}}
    core_api.create_namespaced_secret(NS, secret("vol", token="t"))
    done = wait_finished(kube, "vol")
    assert "Complete" in conditions(done)


@pytest.mark.docker
def test_secret_volume_files_are_named_by_key_under_the_mount_path(kube_docker: KubeEmulator) -> None:
    """Each key is a file under the mount path (``items`` maps a key to a path), read-only; docker runtime only:
    process pods share the host's filesystem and mount nothing."""
    from tests.e2e.k8s.test_emulator_docker import docker_job, finished

    core = client.CoreV1Api(kube_docker.api_client())
    core.create_namespaced_secret(NS, secret("files", token="t0k", other="o"))
    code = ("import os; print(sorted(os.listdir('/etc/creds')), open('/etc/creds/token').read(), "
            "open('/etc/one/sub/renamed').read(), os.access('/etc/creds/token', os.W_OK))")  # fmt: skip
    body = docker_job("files", code)
    pod_spec = body["spec"]["template"]["spec"]
    renamed = {"secretName": "files", "items": [{"key": "other", "path": "sub/renamed"}]}
    pod_spec["volumes"] += [{"name": "creds", "secret": {"secretName": "files"}}, {"name": "one", "secret": renamed}]
    pod_spec["containers"][0]["volumeMounts"] += [{"name": "creds", "mountPath": "/etc/creds"},
                                                  {"name": "one", "mountPath": "/etc/one"}]  # fmt: skip
    client.BatchV1Api(kube_docker.api_client()).create_namespaced_job(NS, body)
    finished(kube_docker, "files")
    (pod,) = [p for p in kube_docker.pods().values() if p["metadata"]["labels"].get("job-name") == "files"]
    assert kube_docker.pod_log(pod["metadata"]["name"]).strip() == "['other', 'token'] t0k o False"
