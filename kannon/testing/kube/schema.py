"""Known fields of the API types, taken from the official client's generated models (their ``openapi_types`` and
``attribute_map`` are generated from upstream's OpenAPI document), and server-side field validation with them.

Upstream (kubernetes.io/docs/reference/using-api/api-concepts/#field-validation): the decoder drops fields the type
does not know; ``fieldValidation=Strict`` turns them into a 400 ``strict decoding error: unknown field "spec.x"``,
``Warn`` (the server's default) into one ``Warning: 299 - "unknown field \\"spec.x\\""`` header each, ``Ignore``
drops them silently.
"""

from __future__ import annotations

import functools
import re
from typing import Any

from kubernetes import client as k8s_client

from kannon.testing.kube.errors import bad_request

# The client generator spells a map ``dict(str, V1X)`` (kubernetes 35) or ``dict[str, V1X]`` (earlier majors).
_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict[\[(]str, (.+)[\])]$")
_SCALARS = {"str", "int", "float", "bool", "date", "datetime", "object"}


def list_item(typ: str) -> str | None:
    """The item type of a client ``list[...]`` type string, or None."""
    m = _LIST.match(typ)
    return m.group(1) if m else None


def map_value(typ: str) -> str | None:
    """The value type of a client map type string (either generator spelling), or None."""
    m = _DICT.match(typ)
    return m.group(1) if m else None


@functools.cache
def model_fields(model: str) -> dict[str, str] | None:
    """JSON field name -> client type string of one generated model (None: not a model, anything goes)."""
    cls = getattr(k8s_client, model, None)
    if cls is None or not hasattr(cls, "openapi_types"):
        return None
    return {cls.attribute_map[attr]: typ for attr, typ in cls.openapi_types.items()}


def unknown_fields(value: Any, typ: str, path: str = "") -> list[str]:
    """Paths of the fields in ``value`` that type ``typ`` does not know, in document order; drops them in place."""
    if value is None or typ in _SCALARS:
        return []
    m = _LIST.match(typ)
    if m:
        out: list[str] = []
        if isinstance(value, list):
            for i, item in enumerate(value):
                out += unknown_fields(item, m.group(1), f"{path}[{i}]")
        return out
    m = _DICT.match(typ)
    if m:
        out = []
        if isinstance(value, dict):
            for k, item in value.items():
                out += unknown_fields(item, m.group(1), f"{path}[{k}]")
        return out
    fields = model_fields(typ)
    if fields is None or not isinstance(value, dict):
        return []  # wrong shapes are the decoder's/validation's business, not this check's
    out = []
    for key in list(value):
        sub = f"{path}.{key}" if path else key
        if key.startswith("$"):
            continue  # strategic-merge-patch directives ($patch, $setElementOrder/...) are not fields
        if key not in fields:
            out.append(sub)
            del value[key]
        else:
            out += unknown_fields(value[key], fields[key], sub)
    return out


def check_fields(body: Any, model: str, kind: str, mode: str | None) -> list[str]:
    """Apply the request's ``fieldValidation`` to ``body`` (in place); return the Warning headers to send."""
    if not isinstance(body, dict):
        return []
    mode = mode or "Warn"
    if mode not in ("Strict", "Warn", "Ignore"):
        raise bad_request(
            f'fieldValidation: Unsupported value: "{mode}": supported values: "Ignore", "Strict", "Warn"'
        )
    unknown = unknown_fields(body, model)
    if not unknown:
        return []
    if mode == "Strict":
        detail = ", ".join(f'unknown field "{f}"' for f in unknown)
        raise bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: strict decoding error: {detail}')
    if mode == "Warn":
        return [f'299 - "unknown field \\"{f}\\""' for f in unknown]
    return []


__all__ = ["check_fields", "model_fields", "unknown_fields"]
