"""The part of the emulator's Store that its kubelet uses (get, mutate, remove, create, listeners), served by a real
API server through the official client — so kannon.testing.kube.node's Kubelet and PodWorker run unchanged
against it ("one node implementation serves both the emulator and the real control plane").

Objects travel as plain JSON dicts (camelCase, as the API serves them), the shape the emulator's code works on.
A pod's ``mutate`` writes only its status, through the pods/status subresource, as a kubelet does.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

from kubernetes.client.rest import ApiException

from kannon.testing.kube.store import Change, Obj, Store

_CONFLICT_RETRIES = 20  # a pod's status is also written by the scheduler and controllers: re-read and re-apply


class ApiStore(Store):
    def __init__(self, api_client: Any) -> None:
        super().__init__()
        self.api = api_client
        self.listeners: list[Callable[[Change], None]] = []
        self._uids: dict[tuple[str, str, str], str] = {}  # last uid read per object: remove() deletes that one

    # --- the official client, raw JSON ---------------------------------------------------------------------
    def request(self, method: str, path: str, body: Any = None, query: list[tuple[str, str]] | None = None,
                timeout: float = 30) -> Obj | None:  # fmt: skip
        """One API request; the decoded JSON answer, or None for 404."""
        try:
            resp = self.api.call_api(
                path, method, query_params=query or [], body=body,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False, _return_http_data_only=True,
                _request_timeout=timeout,
            )  # fmt: skip
        except ApiException as e:
            if e.status == 404:
                return None
            raise
        out: Obj = json.loads(resp.data)
        return out

    @staticmethod
    def path(resource: str, namespace: str, name: str = "") -> str:
        base = f"/api/v1/namespaces/{namespace}/{resource}"
        return f"{base}/{name}" if name else base

    # --- the Store interface the kubelet uses --------------------------------------------------------------
    def add_listener(self, fn: Callable[[Change], None]) -> None:
        self.listeners.append(fn)

    def emit(self, change: Change) -> None:
        """Hand a change seen on the API server's watch to the kubelet (as the emulator's store does)."""
        for fn in self.listeners:
            fn(change)

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        obj = self.request("GET", self.path(resource, namespace, name))
        if obj is not None:
            self._uids[(resource, namespace, name)] = obj["metadata"].get("uid", "")
        return obj

    def mutate(self, resource: str, namespace: str, name: str, fn: Callable[[Obj], Obj | None]) -> Obj | None:
        target = self.path(resource, namespace, name) + ("/status" if resource == "pods" else "")
        for _ in range(_CONFLICT_RETRIES):
            current = self.get(resource, namespace, name)
            if current is None:
                return None
            new = fn(copy.deepcopy(current))
            if new is None:
                return None
            try:
                # PUT with the resourceVersion just read: a concurrent writer makes it 409, then we re-apply.
                return self.request("PUT", target, new)
            except ApiException as e:
                if e.status != 409:
                    raise
        raise RuntimeError(f"{resource} {namespace}/{name}: status kept conflicting")

    def create(self, resource: str, obj: Obj) -> Obj:
        namespace = obj["metadata"].get("namespace", "default")
        try:
            out = self.request("POST", self.path(resource, namespace), obj)
        except ApiException as e:
            if e.status != 409:
                raise
            out = obj  # created meanwhile (an event of the same name): good enough for the kubelet's events
        return out or obj

    def remove(self, resource: str, namespace: str, name: str) -> Obj | None:
        """Delete at once (grace 0), as the kubelet does once a deleted pod's containers have stopped; only the
        object last read under this name (uid precondition), never a successor of the same name."""
        body: dict[str, Any] = {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 0}
        uid = self._uids.get((resource, namespace, name))
        if uid:
            body["preconditions"] = {"uid": uid}
        try:
            return self.request("DELETE", self.path(resource, namespace, name), body)
        except ApiException as e:
            if e.status == 409:  # another object of that name now: not ours to delete
                return None
            raise
