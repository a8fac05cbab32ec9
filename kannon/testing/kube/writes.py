"""Writes: create, update (PUT), patch and delete of Jobs and pods, and the handlers of Leases, Secrets and
ConfigMaps (which also answer the GET of one of them); request bodies as the apiserver decodes them.

Behaviour from kubernetes.io/docs/reference/using-api/api-concepts/ (dry run, field validation warnings, update
conflicts), .../kubernetes-api/common-parameters/common-parameters/ (propagationPolicy, orphanDependents,
gracePeriodSeconds, preconditions), RFC 7386 (merge patch; strategic merge patch is treated the same) and RFC 6902
(JSON patch).
"""

from __future__ import annotations

import copy
import json
from typing import TYPE_CHECKING, Any

import yaml

from kannon.testing.kube import configmaps, errors, leases, secrets
from kannon.testing.kube.deletion import delete_job
from kannon.testing.kube.discovery import KINDS
from kannon.testing.kube.errors import ApiError, Cause, bad_request
from kannon.testing.kube.exchange import Exchange, query_bool
from kannon.testing.kube.jobvalidation import prepare_job, validate_job_update
from kannon.testing.kube.schema import check_fields
from kannon.testing.kube.validation import decode_checks

if TYPE_CHECKING:
    from kannon.testing.kube.emulator import KubeEmulator

ORPHAN_WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove '
    'them or set propagationPolicy=Orphan to suppress this warning"'
)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge patch is treated the same: lists are replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch: add / remove / replace / test (what clients send for metadata edits)."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op.get("path", "")).split("/")[1:]]
        if not parts:
            raise bad_request("the server rejected our request due to an error in our request: empty path")
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        kind = op.get("op")
        try:
            if kind in ("add", "replace"):
                if isinstance(parent, list):
                    idx = len(parent) if last == "-" else int(last)
                    if kind == "add":
                        parent.insert(idx, op.get("value"))
                    else:
                        parent[idx] = op.get("value")
                else:
                    if kind == "replace" and last not in parent:
                        raise bad_request(
                            "the server rejected our request: replace operation does not apply: "
                            f"doc is missing key: {op['path']}"
                        )
                    parent[last] = op.get("value")
            elif kind == "remove":
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    del parent[last]
            elif kind == "test":
                cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
                if cur != op.get("value"):
                    raise ApiError(
                        422, "Invalid", f"the server rejected our request: testing value {op['path']} failed"
                    )
            else:
                raise bad_request(f"the server rejected our request: unexpected op {kind!r}")
        except (KeyError, IndexError, ValueError) as exc:
            raise bad_request(f"the server rejected our request: {exc}") from exc
    return doc


class Writes(Exchange):
    """POST, PUT, PATCH and DELETE, and the per-kind handlers of Leases, Secrets and ConfigMaps."""

    def _body(self, raw: bytes) -> Any:
        if not raw:
            return {}
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if self.command in ("POST", "PUT") and ctype not in ("application/json", "application/yaml"):
            # Upstream also decodes protobuf (and CBOR behind a gate); the emulator speaks JSON and YAML only, and
            # says so the way the apiserver refuses a media type it has no serializer for.
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml",
            )
        try:
            if ctype == "application/yaml":
                return yaml.safe_load(raw.decode())
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the server rejected our request due to an error in our request: {exc}") from exc

    def _create_job(self, ns: str, raw: bytes, query: dict[str, str]) -> None:
        emu = self.server.emulator
        import uuid

        uid = str(uuid.uuid4())
        body = self._body(raw)
        warn = _warnings(check_fields(body, "V1Job", "Job", query.get("fieldValidation")))
        job = prepare_job(emu.kueue.mutate_job(body), ns, uid)
        job["metadata"]["uid"] = uid
        job.pop("status", None)
        job["status"] = {}
        if query.get("dryRun") == "All":
            self._send_json(201, job, warn)
            return
        created = emu.store.create("jobs", job)
        self._send_json(201, created, warn)

    def _delete(self, res: str, ns: str, name: str, raw: bytes, query: dict[str, str]) -> None:
        emu = self.server.emulator
        opts = self._body(raw) or {}
        if not isinstance(opts, dict):
            raise bad_request("DeleteOptions must be an object")
        policy = query.get("propagationPolicy") or opts.get("propagationPolicy")
        orphan: Any = query.get("orphanDependents", opts.get("orphanDependents"))
        grace_raw = query.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
        grace = int(grace_raw) if grace_raw not in (None, "") else None
        if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    Cause(
                        "propagationPolicy",
                        f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan", "nil"',
                        "FieldValueNotSupported",
                    )
                ],
            )
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan is True or (isinstance(orphan, str) and query_bool(orphan)) else "Background"
        if res == "pods":
            self._send_json(200, emu.kubelet.delete_pod(ns, name, grace, opts.get("preconditions")))
            return
        if res != "jobs":
            raise errors.method_not_allowed("DELETE")
        headers = {}
        if policy is None:
            headers["Warning"] = ORPHAN_WARNING
        out = delete_job(emu.store, ns, name, policy, opts.get("preconditions"))
        if out["metadata"].get("deletionTimestamp") and name_still_present(emu, ns, name):
            self._send_json(200, out, headers)
            return
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": "batch", "kind": "jobs", "uid": out["metadata"]["uid"]},
        }
        self._send_json(200, status, headers)

    def _update(self, res: str, ns: str, name: str, method: str, raw: bytes, query: dict[str, str]) -> None:
        emu = self.server.emulator
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        body = self._body(raw)
        model, kind_name = ("V1Job", "Job") if res == "jobs" else ("V1Pod", "Pod")
        # A JSON patch (a list) names paths, not fields: only object bodies are checked.
        warn = _warnings(check_fields(body, model, kind_name, query.get("fieldValidation")))
        with emu.store.cond:
            cur = emu.store.require(res, ns, name)
            if method == "PATCH":
                if ctype == "application/json-patch+json":
                    if not isinstance(body, list):
                        raise bad_request("the server rejected our request: json patch must be a list")
                    new = json_patch(cur, body)
                elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                    new = merge_patch(cur, body)
                else:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - "
                        f"accepted media types include: application/json-patch+json, "
                        f"application/merge-patch+json, application/strategic-merge-patch+json ({ctype})",
                    )
                expected = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
            else:
                api_version, kind = KINDS[res]
                new = decode_checks(body, kind, api_version, ns)
                if (new.get("metadata") or {}).get("name") not in (None, name):
                    raise bad_request("the name of the object does not match the name on the URL")
                expected = (new.get("metadata") or {}).get("resourceVersion")
            new = copy.deepcopy(new)
            meta = new.setdefault("metadata", {})
            for key in (
                "uid",
                "creationTimestamp",
                "namespace",
                "name",
                "generation",
                "deletionTimestamp",
                "ownerReferences" if res == "jobs" else "_",
            ):
                if key in cur["metadata"]:
                    meta[key] = cur["metadata"][key]
            new["status"] = cur.get("status", {})  # status is only writable through the status subresource
            new.setdefault("apiVersion", cur.get("apiVersion"))
            new.setdefault("kind", cur.get("kind"))
            if res == "jobs":
                validate_job_update(cur, new)
            elif new.get("spec") != cur.get("spec"):
                raise errors.invalid(
                    "Pod",
                    "",
                    name,
                    [
                        Cause(
                            "spec",
                            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                            "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                            "(only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it "
                            "to be set to 1 if it was previously negative)",
                            "FieldValueForbidden",
                        )
                    ],
                )
            meta["resourceVersion"] = cur["metadata"]["resourceVersion"]
            out = emu.store.replace(res, new, str(expected) if expected else None)
        self._send_json(200, out, warn)

    def _patched(self, cur: dict[str, Any], raw: bytes) -> Any:
        """``cur`` with the request's JSON / merge / strategic-merge patch applied (Secrets have no list keys)."""
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        body = self._body(raw)
        if ctype == "application/json-patch+json":
            if not isinstance(body, list):
                raise bad_request("the server rejected our request: json patch must be a list")
            return json_patch(copy.deepcopy(cur), body)
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return merge_patch(copy.deepcopy(cur), body)
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                       "media types include: application/json-patch+json, application/merge-patch+json, "
                       f"application/strategic-merge-patch+json ({ctype})")  # fmt: skip

    def _leases(self, method: str, ns: str, name: str | None, raw: bytes, query: dict[str, str]) -> None:
        store = self.server.emulator.store
        body = self._body(raw) if method in ("POST", "PUT") else None
        warn = _warnings(check_fields(body, "V1Lease", "Lease", query.get("fieldValidation")))
        if method == "POST" and name is None:
            self._send_json(201, leases.create(store, ns, body), warn)
        elif method == "GET" and name is not None:
            self._send_json(200, store.require("leases", ns, name))
        elif method == "PUT" and name is not None:
            self._send_json(200, leases.update(store, ns, name, body), warn)
        elif method == "DELETE" and name is not None:
            self._send_json(200, leases.delete(store, ns, name, self._body(raw) or {}))
        else:
            raise errors.method_not_allowed(method)

    def _secrets(self, method: str, ns: str, name: str | None, raw: bytes, query: dict[str, str]) -> None:
        store = self.server.emulator.store
        body = self._body(raw) if method in ("POST", "PUT") else None
        warn = _warnings(check_fields(body, "V1Secret", "Secret", query.get("fieldValidation")))
        dry = query.get("dryRun") == "All"
        if method == "POST" and name is None:
            self._send_json(201, secrets.prepare(body, ns, None) if dry else secrets.create(store, ns, body), warn)
        elif method == "GET" and name is not None:
            self._send_json(200, store.require(secrets.RESOURCE, ns, name))
        elif method == "PUT" and name is not None:
            self._send_json(200, secrets.replace(store, ns, name, body), warn)
        elif method == "PATCH" and name is not None:
            self._send_json(200, secrets.replace(store, ns, name, self._patched(store.require("secrets", ns, name),
                                                                                raw)))  # fmt: skip
        elif method == "DELETE" and name is not None:
            self._send_json(200, secrets.delete(store, ns, name))
        else:
            raise errors.method_not_allowed(method)

    def _configmaps(self, method: str, ns: str, name: str | None, raw: bytes, query: dict[str, str]) -> None:
        store = self.server.emulator.store
        body = self._body(raw) if method in ("POST", "PUT") else None
        warn = _warnings(check_fields(body, "V1ConfigMap", "ConfigMap", query.get("fieldValidation")))
        if method == "POST" and name is None:
            dry = query.get("dryRun") == "All"
            made = configmaps.prepare(body, ns, None) if dry else configmaps.create(store, ns, body)
            self._send_json(201, made, warn)
        elif method == "GET" and name is not None:
            self._send_json(200, store.require(configmaps.RESOURCE, ns, name))
        elif method == "PUT" and name is not None:
            self._send_json(200, configmaps.replace(store, ns, name, body), warn)
        elif method == "PATCH" and name is not None:
            current = store.require(configmaps.RESOURCE, ns, name)
            self._send_json(200, configmaps.replace(store, ns, name, self._patched(current, raw)))
        elif method == "DELETE" and name is not None:
            self._send_json(200, configmaps.delete(store, ns, name))
        else:
            raise errors.method_not_allowed(method)


def _warnings(values: list[str]) -> dict[str, str]:
    # One Warning header with comma-separated values is equivalent to several (RFC 7234 §5.5); clients split it.
    return {"Warning": ", ".join(values)} if values else {}


def name_still_present(emu: KubeEmulator, ns: str, name: str) -> bool:
    return emu.store.get("jobs", ns, name) is not None
