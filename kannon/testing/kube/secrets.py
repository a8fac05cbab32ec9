"""core/v1 Secrets: the REST object (create, get, list, watch, replace, patch, delete) and how a kubelet reads them.

The object follows kubernetes.io/docs/concepts/configuration/secret/ and the Secret API reference
(kubernetes.io/docs/reference/kubernetes-api/config-and-storage-resources/secret-v1/): ``data`` values travel
base64-encoded (a value that is not base64 is a decode error, 400); ``stringData`` is write-only, merged into
``data`` on write (its keys win over ``data``'s) and never stored or returned; keys must match ``[-._a-zA-Z0-9]+``;
``type`` defaults to ``Opaque``; the whole ``data`` may be at most 1 MiB; an ``immutable`` Secret's data cannot
change.

How pods consume them follows kubernetes.io/docs/tasks/inject-data-application/distribute-credentials-secure/ and
the ``EnvFromSource`` / ``SecretKeySelector`` field docs (``optional``: "Specify whether the Secret or its key must
be defined"), with the kubelet's own messages (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables): a missing
required Secret is the apiserver's ``secret "X" not found``, a missing required key ``couldn't find key K in Secret
NS/X``; both leave the container waiting with reason ``CreateContainerConfigError`` until the Secret appears (the
kubelet retries at every pod sync). ``envFrom`` entries come first, ``env`` entries override them; an
``envFrom`` ``prefix`` is prepended to every key; keys that are no valid env var name are skipped.
"""

from __future__ import annotations

import base64
import binascii
import copy
import re
from typing import Any

from kannon.testing.kube import objects
from kannon.testing.kube.errors import Cause, bad_request, invalid
from kannon.testing.kube.store import Store
from kannon.testing.kube.validation import decode_checks, dns1123_subdomain_errors

RESOURCE = "secrets"
MAX_DATA = 1024 * 1024  # corev1.MaxSecretSize
_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
_ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")  # validation.IsEnvVarName
_KEY_MSG = ("a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or "
            "'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')")  # fmt: skip


class SecretMissing(Exception):
    """A required Secret or key is absent: the kubelet's CreateContainerConfigError message."""


def _decode(value: Any, key: str) -> bytes:
    if not isinstance(value, str):
        raise bad_request(f'Secret in version "v1" cannot be handled as a Secret: data[{key}] must be a string')
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(f'Secret in version "v1" cannot be handled as a Secret: illegal base64 data at data[{key}]'
                          ) from exc  # fmt: skip


def prepare(body: Any, ns: str, path_name: str | None) -> dict[str, Any]:
    """The Secret to store from a request body: validated, ``stringData`` folded into ``data``."""
    secret = copy.deepcopy(decode_checks(body, "Secret", "v1", ns))
    meta = secret.setdefault("metadata", {})
    if path_name is not None and meta.get("name") not in (None, path_name):
        raise bad_request(f"the name of the object ({meta.get('name')}) does not match the name on the URL "
                          f"({path_name})")  # fmt: skip
    name = meta.get("name") or path_name or ""
    meta["name"], meta["namespace"] = name, ns
    data = secret.get("data") or {}
    string_data = secret.pop("stringData", None) or {}
    if not isinstance(data, dict) or not isinstance(string_data, dict):
        raise bad_request('Secret in version "v1" cannot be handled as a Secret: data must be an object')
    raw = {k: _decode(v, k) for k, v in data.items()}
    raw.update({k: str(v).encode() for k, v in string_data.items()})
    causes: list[Cause] = []
    if not name:
        causes.append(Cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired"))
    for err in dns1123_subdomain_errors(name) if name else ():
        causes.append(Cause("metadata.name", f'Invalid value: "{name}": {err}'))
    for key in raw:
        if not _KEY.match(key) or key in (".", ".."):
            causes.append(Cause(f"data[{key}]", f'Invalid value: "{key}": {_KEY_MSG}'))
    if sum(len(v) for v in raw.values()) > MAX_DATA:
        causes.append(Cause("data", f"Too long: must have at most {MAX_DATA} bytes", "FieldValueTooLong"))
    if causes:
        raise invalid("Secret", "", name, causes)
    secret["data"] = {k: base64.b64encode(v).decode() for k, v in raw.items()}
    secret.setdefault("type", "Opaque")
    for key in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "selfLink"):
        meta.pop(key, None)
    secret["apiVersion"], secret["kind"] = "v1", "Secret"
    return secret


def create(store: Store, ns: str, body: Any) -> dict[str, Any]:
    return objects.create(store, RESOURCE, prepare(body, ns, None))


def replace(store: Store, ns: str, name: str, body: Any) -> dict[str, Any]:
    """PUT (or a patch already applied to the stored object): 409 on a stale resourceVersion."""
    secret = prepare(body, ns, name)

    def check(current: dict[str, Any]) -> None:
        if current.get("immutable") and (secret.get("data") != current.get("data")
                                         or secret.get("immutable") is not True):  # fmt: skip
            raise invalid("Secret", "", name, [Cause("data", "Forbidden: field is immutable when `immutable` is set",
                                                     "FieldValueForbidden")])  # fmt: skip
        if secret.get("type") != current.get("type"):
            raise invalid("Secret", "", name, [Cause("type", f'Invalid value: "{secret.get("type")}": field is '
                                                     "immutable")])  # fmt: skip

    return objects.replace(store, RESOURCE, ns, name, secret, check)


def delete(store: Store, ns: str, name: str) -> dict[str, Any]:
    return objects.delete(store, RESOURCE, ns, name)


# -- the kubelet's side -------------------------------------------------------------------------------------------


def decoded(store: Store, ns: str, name: str) -> dict[str, str] | None:
    obj = store.get(RESOURCE, ns, name)
    if obj is None:
        return None
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}


def env_from(store: Store, ns: str, ref: dict[str, Any], prefix: str) -> dict[str, str]:
    """One ``envFrom[].secretRef``: every key (with ``prefix``) that is a valid env var name."""
    name = str(ref.get("name") or "")
    data = decoded(store, ns, name)
    if data is None:
        if ref.get("optional"):
            return {}
        raise SecretMissing(f'secret "{name}" not found')
    return {prefix + k: v for k, v in data.items() if _ENV_NAME.match(prefix + k)}


def key_ref(store: Store, ns: str, ref: dict[str, Any]) -> str | None:
    """One ``valueFrom.secretKeyRef``: the value, or None when optional and absent (the variable is then unset)."""
    name, key = str(ref.get("name") or ""), str(ref.get("key") or "")
    data = decoded(store, ns, name)
    if data is None:
        if ref.get("optional"):
            return None
        raise SecretMissing(f'secret "{name}" not found')
    if key not in data:
        if ref.get("optional"):
            return None
        raise SecretMissing(f"couldn't find key {key} in Secret {ns}/{name}")
    return data[key]


def volume_files(store: Store, ns: str, volume: dict[str, Any]) -> dict[str, tuple[str, int]] | None:
    """A ``secret`` volume's files: {relative path: (content, mode)}, one per key (or per ``items`` entry), mode
    ``defaultMode`` (0644) unless the item says otherwise. None: an optional Secret that is absent (empty dir).
    A required absent Secret raises: the kubelet's volume setup fails and the pod stays ContainerCreating."""
    src = volume["secret"]
    name = str(src.get("secretName") or "")
    data = decoded(store, ns, name)
    if data is None:
        if src.get("optional"):
            return None
        raise SecretMissing(f'MountVolume.SetUp failed for volume "{volume.get("name")}" : secret "{name}" not found')
    mode = int(src.get("defaultMode", 0o644))
    items = src.get("items")
    if not items:
        return {k: (v, mode) for k, v in data.items()}
    out = {}
    for item in items:
        if item.get("key") not in data:
            if src.get("optional"):
                continue
            raise SecretMissing(f'MountVolume.SetUp failed for volume "{volume.get("name")}" : references non-existent '
                                f'secret key: {item.get("key")}')  # fmt: skip
        out[str(item["path"])] = (data[item["key"]], int(item.get("mode", mode)))
    return out
