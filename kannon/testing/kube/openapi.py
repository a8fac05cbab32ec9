"""OpenAPI v3 discovery (``/openapi/v3`` and one document per group-version) for what kubectl needs.

kubectl's default ``--validate=strict`` first asks the server's OpenAPI v3 document whether the PATCH operation of
the object's kind takes the ``fieldValidation`` query parameter (k8s.io/cli-runtime resource/query_param_verifier_v3);
if it does, validation is left to the server (schema.py). Without the document, ``kubectl create/apply`` stops with
"failed to download openapi". ``kubectl explain`` reads the schemas (``x-kubernetes-group-version-kind``).

The kubernetes package ships no OpenAPI document, so the schemas are generated from the official client's models
(``openapi_types``/``attribute_map`` and the property docstrings, all generated from upstream's document). Schema
names are the client's class names (upstream uses ``io.k8s.api.batch.v1.Job``); only the served kinds have paths.
Shape: kubernetes.io/docs/concepts/overview/kubernetes-api/#openapi-v3.
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from typing import Any

from kannon.testing.kube.schema import list_item, map_value, model_fields

Obj = dict[str, Any]

# group-version path -> [(resource, kind, client model)]
SERVED: dict[str, list[tuple[str, str, str]]] = {
    "api/v1": [("pods", "Pod", "V1Pod"), ("namespaces", "Namespace", "V1Namespace")],
    "apis/batch/v1": [("jobs", "Job", "V1Job")],
    "apis/coordination.k8s.io/v1": [("leases", "Lease", "V1Lease")],
}
_SCALAR = {
    "str": {"type": "string"},
    "int": {"type": "integer", "format": "int32"},
    "float": {"type": "number", "format": "double"},
    "bool": {"type": "boolean"},
    "date": {"type": "string", "format": "date"},
    "datetime": {"type": "string", "format": "date-time"},
    "object": {},
}
_QUERY = ("dryRun", "fieldManager", "fieldValidation", "force")


def _description(cls: Any, attr: str) -> str:
    doc = getattr(getattr(cls, attr, None), "__doc__", None) or ""
    parts = [p.strip() for p in doc.split("\n\n")]
    text = parts[1] if len(parts) > 2 else ""
    return re.sub(r"\s*# noqa: E501$", "", text)


def _type(typ: str, out: dict[str, Obj]) -> Obj:
    if typ in _SCALAR:
        return dict(_SCALAR[typ])
    item = list_item(typ)
    if item is not None:
        return {"type": "array", "items": _type(item, out)}
    value = map_value(typ)
    if value is not None:
        return {"type": "object", "additionalProperties": _type(value, out)}
    _model(typ, out)
    return {"allOf": [{"$ref": f"#/components/schemas/{typ}"}]}


def _model(name: str, out: dict[str, Obj]) -> None:
    if name in out:
        return
    from kubernetes import client

    cls = getattr(client, name)
    fields = model_fields(name) or {}
    out[name] = {"type": "object", "description": (cls.__doc__ or "").strip().splitlines()[0], "properties": {}}
    props: Obj = {}
    for attr, json_name in cls.attribute_map.items():
        props[json_name] = {**_type(fields[json_name], out), "description": _description(cls, attr)}
    out[name]["properties"] = props


def _gvk(gv: str, kind: str) -> Obj:
    group, _, version = gv.removeprefix("apis/").removeprefix("api/").rpartition("/")
    return {"group": group, "version": version, "kind": kind}


@functools.cache
def group_version_doc(gv: str) -> bytes:
    schemas: dict[str, Obj] = {}
    paths: Obj = {}
    params = [{"name": p, "in": "query", "schema": {"type": "string"}, "uniqueItems": True} for p in _QUERY]
    for resource, kind, model in SERVED[gv]:
        _model(model, schemas)
        gvk = _gvk(gv, kind)
        schemas[model]["x-kubernetes-group-version-kind"] = [gvk]
        ref = {"content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{model}"}}}}

        def op(verb: str, action: str, body: bool, kind: str = kind, ref: Obj = ref, gvk: Obj = gvk) -> Obj:
            o: Obj = {"operationId": f"{verb}{kind}", "parameters": params if body else [],
                      "responses": {"200": {"description": "OK", **ref}},
                      "x-kubernetes-action": action, "x-kubernetes-group-version-kind": gvk}  # fmt: skip
            if body:
                o["requestBody"] = ref
            return o

        base = f"/{gv}/namespaces/{{namespace}}/{resource}" if resource != "namespaces" else f"/{gv}/{resource}"
        paths[base] = {"get": op("list", "list", False), "post": op("create", "post", True)}
        paths[base + "/{name}"] = {
            "get": op("read", "get", False),
            "put": op("replace", "put", True),
            "patch": op("patch", "patch", True),
            "delete": op("delete", "delete", False),
        }
    doc = {"openapi": "3.0.0", "info": {"title": "Kubernetes", "version": "v1.33.13"}, "paths": paths,
           "components": {"schemas": schemas}}  # fmt: skip
    return json.dumps(doc, separators=(",", ":")).encode()


def root() -> Obj:
    """``/openapi/v3``: one entry per group-version, its URL carrying the document's hash (clients cache by it)."""
    paths = {}
    for gv in SERVED:
        digest = hashlib.sha512(group_version_doc(gv)).hexdigest()[:128].upper()
        paths[gv] = {"serverRelativeURL": f"/openapi/v3/{gv}?hash={digest}"}
    return {"paths": paths}


__all__ = ["SERVED", "group_version_doc", "root"]
