"""``coordination.k8s.io/v1`` Leases: create, get, list, watch, update (optimistic concurrency), delete.

Follows the Lease API reference (kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/) and the
apiserver's generic registry: ``spec.holderIdentity``, ``leaseDurationSeconds``, ``acquireTime`` and ``renewTime``
(MicroTime: RFC 3339 with microseconds), ``leaseTransitions``; validation as pkg/apis/coordination/validation
(``leaseDurationSeconds`` > 0, ``leaseTransitions`` >= 0); a PUT carrying a stale ``metadata.resourceVersion``
answers 409 Conflict, one without a resourceVersion is an unconditional update (the Lease strategy allows it); a
DELETE honours ``preconditions`` (uid, resourceVersion) with 409 Conflict. The server knows nothing of holders:
who may take a Lease over is entirely the clients' business, as upstream.
"""

from __future__ import annotations

import copy
from datetime import datetime, timezone
from typing import Any

from kannon.testing.kube import objects
from kannon.testing.kube.errors import ApiError, Cause, bad_request, invalid
from kannon.testing.kube.store import Store
from kannon.testing.kube.validation import dns1123_subdomain_errors

GROUP = "coordination.k8s.io"
GROUP_VERSION = f"{GROUP}/v1"
RESOURCE = "leases"
_SPEC_FIELDS = {"holderIdentity", "leaseDurationSeconds", "acquireTime", "renewTime", "leaseTransitions",
                "preferredHolder", "strategy"}  # fmt: skip
_MICRO_TIMES = ("acquireTime", "renewTime")


def discovery_group() -> dict[str, Any]:
    gv = {"groupVersion": GROUP_VERSION, "version": "v1"}
    return {"kind": "APIGroup", "apiVersion": "v1", "name": GROUP, "versions": [gv], "preferredVersion": gv}


def discovery_resources() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": GROUP_VERSION,
        "resources": [{
            "name": RESOURCE, "singularName": "lease", "namespaced": True, "kind": "Lease",
            "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
        }],
    }  # fmt: skip


def micro_time(value: Any, field: str) -> str:
    """A MicroTime in its canonical wire form (``2006-01-02T15:04:05.000000Z``); 400 when it is no time at all."""
    if not isinstance(value, str):
        raise bad_request(f"{field}: a MicroTime must be a string, got {type(value).__name__}")
    text = value.strip()
    try:
        stamp = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
    except ValueError as exc:
        raise bad_request(f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": cannot parse') from exc
    if stamp.tzinfo is None:
        raise bad_request(f'parsing time "{value}" as "2006-01-02T15:04:05.000000Z07:00": missing time zone')
    return stamp.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def prepare(body: Any, ns: str, path_name: str | None) -> dict[str, Any]:
    """The Lease to store from a request body: validated, times normalised, server fields dropped."""
    if not isinstance(body, dict):
        raise bad_request("the body of a Lease must be a JSON object")
    lease = copy.deepcopy(body)
    if lease.get("kind") not in (None, "Lease") or lease.get("apiVersion") not in (None, GROUP_VERSION):
        raise bad_request(f"the API version in the data ({lease.get('apiVersion')}) does not match the expected "
                          f"API version ({GROUP_VERSION})")  # fmt: skip
    meta = lease.setdefault("metadata", {})
    if not isinstance(meta, dict):
        raise bad_request("metadata must be an object")
    name = meta.get("name") or path_name or ""
    if path_name is not None and meta.get("name") not in (None, path_name):
        raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                          f"({path_name})")  # fmt: skip
    if meta.get("namespace") not in (None, ns):
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    meta["name"], meta["namespace"] = name, ns
    causes: list[Cause] = []
    if not name:
        causes.append(Cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired"))
    for err in dns1123_subdomain_errors(name) if name else ():
        causes.append(Cause("metadata.name", f'Invalid value: "{name}": {err}'))
    spec = lease.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise bad_request("spec must be an object")
    for key in [k for k in spec if k not in _SPEC_FIELDS]:
        spec.pop(key)  # unknown fields are dropped (fieldValidation=Warn, the default)
    duration = spec.get("leaseDurationSeconds")
    if duration is not None and (not _whole(duration) or duration <= 0):
        causes.append(Cause("spec.leaseDurationSeconds", f"Invalid value: {duration}: must be greater than 0"))
    transitions = spec.get("leaseTransitions")
    if transitions is not None and (not _whole(transitions) or transitions < 0):
        causes.append(Cause("spec.leaseTransitions",
                            f"Invalid value: {transitions}: must be greater than or equal to 0"))  # fmt: skip
    if causes:
        raise invalid("Lease", GROUP, name, causes)
    for key in _MICRO_TIMES:
        if spec.get(key) is not None:
            spec[key] = micro_time(spec[key], f"spec.{key}")
    for key in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "selfLink"):
        meta.pop(key, None)  # the server's (resourceVersion stays: an update compares it)
    lease.pop("status", None)
    lease["apiVersion"], lease["kind"] = GROUP_VERSION, "Lease"
    return lease


def create(store: Store, ns: str, body: Any) -> dict[str, Any]:
    return objects.create(store, RESOURCE, prepare(body, ns, None))


def update(store: Store, ns: str, name: str, body: Any) -> dict[str, Any]:
    """PUT: 409 Conflict on a stale resourceVersion; identity fields stay the server's."""
    return objects.replace(store, RESOURCE, ns, name, prepare(body, ns, name))


def delete(store: Store, ns: str, name: str, options: dict[str, Any]) -> dict[str, Any]:
    """DELETE with optional ``preconditions``; answers the Status the generic registry answers."""
    pre = options.get("preconditions") or {}
    with store.cond:
        current = store.require(RESOURCE, ns, name)
        meta = current["metadata"]
        for key, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
            if pre.get(key) not in (None, meta[key]):
                raise ApiError(409, "Conflict", f"Precondition failed: {label} in precondition: {pre[key]}, "
                               f"{label} in object meta: {meta[key]}", {"name": name, "group": GROUP,
                                                                         "kind": RESOURCE})  # fmt: skip
        store.remove(RESOURCE, ns, name)
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "group": GROUP, "kind": RESOURCE, "uid": meta["uid"]}}  # fmt: skip
