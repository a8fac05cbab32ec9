"""API semantics through the official client against the real API server: field validation, optimistic
concurrency on Leases, RBAC for a token without bindings, and watch resumption from a stale resourceVersion."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from tests.e2e.upstream.kube import job_manifest
from tests.support.procs import wait_until

pytestmark = pytest.mark.upstream


def test_strict_field_validation_refuses_an_unknown_field(batch: Any, namespace: str) -> None:
    body = job_manifest("strict", suspend=True)
    body["spec"]["backoffLimitt"] = 3
    with pytest.raises(ApiException) as refused:
        batch.create_namespaced_job(namespace, body, field_validation="Strict")
    assert refused.value.status == 400
    status = json.loads(refused.value.body)
    assert status["reason"] == "BadRequest"
    assert status["message"].endswith('strict decoding error: unknown field "spec.backoffLimitt"')

    # Ignore (and the server's default, Warn) drop the field and create the Job.
    created = batch.create_namespaced_job(namespace, body, field_validation="Ignore")
    assert created.spec.backoff_limit == 6  # the default, not the misspelled 3


def test_lease_update_with_a_stale_resource_version_conflicts(api_client: Any, namespace: str) -> None:
    leases = client.CoordinationV1Api(api_client)
    body = {"metadata": {"name": "run-lock"}, "spec": {"holderIdentity": "master-a", "leaseDurationSeconds": 30}}
    created = leases.create_namespaced_lease(namespace, body)
    assert created.metadata.resource_version

    stale = leases.read_namespaced_lease("run-lock", namespace)
    fresh = leases.read_namespaced_lease("run-lock", namespace)
    fresh.spec.holder_identity = "master-b"
    leases.replace_namespaced_lease("run-lock", namespace, fresh)

    stale.spec.holder_identity = "master-c"
    with pytest.raises(ApiException) as conflict:
        leases.replace_namespaced_lease("run-lock", namespace, stale)
    assert conflict.value.status == 409
    assert json.loads(conflict.value.body)["reason"] == "Conflict"
    assert leases.read_namespaced_lease("run-lock", namespace).spec.holder_identity == "master-b"

    with pytest.raises(ApiException) as exists:
        leases.create_namespaced_lease(namespace, body)
    assert exists.value.status == 409 and json.loads(exists.value.body)["reason"] == "AlreadyExists"


def test_restricted_token_is_refused_until_a_role_binding_allows_it(upstream: Any, api_client: Any,
                                                                   namespace: str) -> None:  # fmt: skip
    restricted = client.CoreV1Api(upstream.api_client("kannon-restricted"))
    with pytest.raises(ApiException) as refused:
        restricted.list_namespaced_pod(namespace)
    assert refused.value.status == 403
    status = json.loads(refused.value.body)
    assert status["reason"] == "Forbidden"
    assert 'User "kannon-restricted" cannot list resource "pods"' in status["message"]

    rbac = client.RbacAuthorizationV1Api(api_client)
    rbac.create_namespaced_role(namespace, {
        "metadata": {"name": "pod-reader"},
        "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list", "watch"]}],
    })  # fmt: skip
    rbac.create_namespaced_role_binding(namespace, {
        "metadata": {"name": "pod-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "pod-reader"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": "kannon-restricted"}],
    })  # fmt: skip

    def allowed() -> bool:
        try:
            restricted.list_namespaced_pod(namespace)
        except ApiException as e:
            if e.status != 403:
                raise
            return False
        return True

    wait_until(allowed, 60, "the RoleBinding to take effect", max_delay=0.5)
    # Only what the Role grants: still no creating pods here, and nothing in another namespace.
    with pytest.raises(ApiException) as create:
        restricted.create_namespaced_pod(namespace, {"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "c", "image": "busybox"}]}})  # fmt: skip
    assert create.value.status == 403
    with pytest.raises(ApiException) as elsewhere:
        restricted.list_namespaced_pod("kube-system")
    assert elsewhere.value.status == 403


def test_watch_from_a_stale_resource_version_is_gone(core: Any, namespace: str) -> None:
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "c"}, "data": {"k": "v"}})
    # resourceVersion 1 lies before anything the server still keeps: the watch must be refused with 410 Gone,
    # which the client raises so that a caller re-lists.
    with pytest.raises(ApiException) as gone:
        for _ in watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version="1",
                                      timeout_seconds=30):  # fmt: skip
            pass
    assert gone.value.status == 410

    # A current resourceVersion watches fine and sees the next change.
    current = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.patch_namespaced_config_map("c", namespace, {"data": {"k": "w"}})
    # (Only ours: the root-CA publisher may add kube-root-ca.crt to a new namespace at any time.)
    stream = watch.Watch().stream(core.list_namespaced_config_map, namespace, resource_version=current,
                                  field_selector="metadata.name=c", timeout_seconds=30)  # fmt: skip
    event = next(iter(stream))
    assert event["type"] == "MODIFIED" and event["object"].data == {"k": "w"}
