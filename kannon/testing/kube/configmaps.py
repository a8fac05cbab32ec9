"""core/v1 ConfigMaps: the REST object (create, get, list, watch, replace, patch, delete) and ``configMap`` volumes.

The object follows kubernetes.io/docs/concepts/configuration/configmap/ and the ConfigMap API reference
(kubernetes.io/docs/reference/kubernetes-api/config-and-storage-resources/config-map-v1/): ``data`` holds UTF-8
strings, ``binaryData`` base64-encoded bytes (not base64: a decode error, 400); keys in both must match
``[-._a-zA-Z0-9]+`` and must not overlap ("duplicate of key present in data"); "The data stored in a ConfigMap cannot
exceed 1 MiB" — the apiserver sums the lengths of every ``data`` value and every decoded ``binaryData`` value
(pkg/apis/core/validation ValidateConfigMap, limit ``core.MaxSecretSize``) and refuses more with ``Too long: must
have at most 1048576 bytes``; an ``immutable`` ConfigMap's data cannot change.

A ``configMap`` volume (kubernetes.io/docs/concepts/storage/volumes/#configmap) has one file per key of ``data``
and ``binaryData`` (or per ``items`` entry), mode ``defaultMode`` (0644) unless an item says otherwise; a required
ConfigMap that is absent fails the volume set-up (``MountVolume.SetUp failed ... configmap "X" not found``) and
the pod stays ContainerCreating until it appears. The mount is read-only.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from typing import Any

from kannon.testing.kube import objects
from kannon.testing.kube.errors import Cause, bad_request, invalid
from kannon.testing.kube.secrets import SecretMissing
from kannon.testing.kube.store import Store
from kannon.testing.kube.validation import decode_checks, dns1123_subdomain_errors

RESOURCE = "configmaps"
MAX_DATA = 1024 * 1024  # core.MaxSecretSize, which ValidateConfigMap applies to data + binaryData together
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
            "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")  # fmt: skip


def _cannot(detail: str) -> Exception:
    return bad_request(f'ConfigMap in version "v1" cannot be handled as a ConfigMap: {detail}')


def prepare(body: Any, ns: str, path_name: str | None) -> dict[str, Any]:
    """The ConfigMap to store from a request body: validated (keys, overlap, total size, name)."""
    cm = copy.deepcopy(decode_checks(body, "ConfigMap", "v1", ns))
    meta = cm.setdefault("metadata", {})
    if path_name is not None and meta.get("name") not in (None, path_name):
        raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                          f"({path_name})")  # fmt: skip
    name = meta.get("name") or path_name or ""
    meta["name"], meta["namespace"] = name, ns
    data, binary = cm.get("data") or {}, cm.get("binaryData") or {}
    if not isinstance(data, dict) or not isinstance(binary, dict):
        raise _cannot("data and binaryData must be objects")
    if not all(isinstance(v, str) for v in (*data.values(), *binary.values())):
        raise _cannot("data and binaryData values must be strings")
    decoded: dict[str, bytes] = {}
    for key, value in binary.items():
        try:
            decoded[key] = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise _cannot(f"illegal base64 data at binaryData[{key}]") from exc
    causes: list[Cause] = []
    if not name:
        causes.append(Cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired"))
    for err in dns1123_subdomain_errors(name) if name else ():
        causes.append(Cause("metadata.name", f'Invalid value: "{name}": {err}'))
    for field, keys in (("data", data), ("binaryData", binary)):
        for key in keys:
            if not _KEY.match(key) or key in (".", ".."):
                causes.append(Cause(f"{field}[{key}]", f'Invalid value: "{key}": {_KEY_MSG}'))
    for key in binary:
        if key in data:
            causes.append(Cause(f"binaryData[{key}]", f'Invalid value: "{key}": duplicate of key present in data'))
    if sum(len(v.encode()) for v in data.values()) + sum(len(v) for v in decoded.values()) > MAX_DATA:
        causes.append(Cause("", f"Too long: must have at most {MAX_DATA} bytes", "FieldValueTooLong"))
    if causes:
        raise invalid("ConfigMap", "", name, causes)
    for key in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "selfLink"):
        meta.pop(key, None)
    cm["apiVersion"], cm["kind"] = "v1", "ConfigMap"
    return cm


def create(store: Store, ns: str, body: Any) -> dict[str, Any]:
    return objects.create(store, RESOURCE, prepare(body, ns, None))


def replace(store: Store, ns: str, name: str, body: Any) -> dict[str, Any]:
    """PUT (or a patch already applied to the stored object): 409 on a stale resourceVersion."""
    cm = prepare(body, ns, name)

    def check(current: dict[str, Any]) -> None:
        if current.get("immutable") and (cm.get("data") != current.get("data") or cm.get("binaryData") !=
                                         current.get("binaryData") or cm.get("immutable") is not True):  # fmt: skip
            raise invalid("ConfigMap", "", name, [Cause("data", "Forbidden: field is immutable when `immutable` is "
                                                        "set", "FieldValueForbidden")])  # fmt: skip

    return objects.replace(store, RESOURCE, ns, name, cm, check)


def delete(store: Store, ns: str, name: str) -> dict[str, Any]:
    return objects.delete(store, RESOURCE, ns, name)


# -- the kubelet's side -------------------------------------------------------------------------------------------


def volume_files(store: Store, ns: str, volume: dict[str, Any]) -> dict[str, tuple[bytes, int]] | None:
    """A ``configMap`` volume's files: {relative path: (bytes, mode)}. None: an optional ConfigMap that is absent
    (an empty directory). A required absent ConfigMap (or key) raises: the pod stays ContainerCreating."""
    src = volume["configMap"]
    name = str(src.get("name") or "")
    obj = store.get(RESOURCE, ns, name)
    if obj is None:
        if src.get("optional"):
            return None
        raise SecretMissing(f'MountVolume.SetUp failed for volume "{volume.get("name")}" : configmap "{name}" not '
                            "found")  # fmt: skip
    data = {k: v.encode() for k, v in (obj.get("data") or {}).items()}
    data.update({k: base64.b64decode(v) for k, v in (obj.get("binaryData") or {}).items()})
    mode = int(src.get("defaultMode", 0o644))
    items = src.get("items")
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    out = {}
    for item in items:
        if item.get("key") not in data:
            if src.get("optional"):
                continue
            raise SecretMissing(f'MountVolume.SetUp failed for volume "{volume.get("name")}" : configmap references '
                                f'non-existent config key: {item.get("key")}')  # fmt: skip
        out[str(item["path"])] = (data[item["key"]], int(item.get("mode", mode)))
    return out
