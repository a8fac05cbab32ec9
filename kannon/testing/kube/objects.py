"""The generic registry's create / replace / delete for simple namespaced kinds (Secrets, ConfigMaps, Leases).

Upstream's generic registry (k8s.io/apiserver/pkg/registry/generic/registry/store.go) does the same for every
kind: a new object gets a server-made uid whatever the client sent; an update with a stale ``resourceVersion``
is 409 Conflict, and identity fields stay the server's; a delete answers a ``Status`` naming the object. Each
kind module only validates (``prepare``) and says what its updates may not change (``check``).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

from kannon.testing.kube.errors import conflict
from kannon.testing.kube.store import Store

_IDENTITY = ("uid", "creationTimestamp", "generation")


def create(store: Store, resource: str, obj: dict[str, Any]) -> dict[str, Any]:
    obj["metadata"].pop("resourceVersion", None)
    obj["metadata"]["uid"] = str(uuid.uuid4())
    return store.create(resource, obj)


def replace(store: Store, resource: str, ns: str, name: str, obj: dict[str, Any],
            check: Callable[[dict[str, Any]], None] | None = None) -> dict[str, Any]:  # fmt: skip
    """PUT (or a patch already applied to the stored object). ``check(current)`` raises what the kind refuses."""
    expected = obj["metadata"].pop("resourceVersion", None)
    with store.cond:
        current = store.require(resource, ns, name)
        if expected and expected != current["metadata"]["resourceVersion"]:
            raise conflict(resource, name)
        if check is not None:
            check(current)
        for key in _IDENTITY:
            if key in current["metadata"]:
                obj["metadata"][key] = current["metadata"][key]
        return store.replace(resource, obj, expected)


def deleted_status(resource: str, name: str, uid: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
            "details": {"name": name, "kind": resource, "uid": uid}}  # fmt: skip


def delete(store: Store, resource: str, ns: str, name: str) -> dict[str, Any]:
    with store.cond:
        current = store.require(resource, ns, name)
        store.remove(resource, ns, name)
    return deleted_status(resource, name, current["metadata"]["uid"])
