"""Validation every kind shares, as kube-apiserver does it: names, label keys and values, annotations, quantities,
generated names, and the decoding checks a request body passes before its kind's validation.

Sources: k8s.io/apimachinery/pkg/util/validation/validation.go (names, labels), k8s.io/apimachinery/pkg/api/resource
(quantities), k8s.io/apiserver/pkg/storage/names (generateName) and k8s.io/apimachinery/pkg/api/validation
(ObjectMeta). A Job's own checks are jobvalidation.py's, its pod template's podvalidation.py's.
"""

from __future__ import annotations

import re
import secrets
from decimal import Decimal
from typing import Any

from kannon.testing.kube.errors import Cause, bad_request

_DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_DNS1123_SUBDOMAIN = _DNS1123_LABEL + r"(\." + _DNS1123_LABEL + r")*"
_QNAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_LABEL_VALUE = r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?"

MSG_SUBDOMAIN = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'example.com', regex used for validation is "
    f"'{_DNS1123_SUBDOMAIN}')"
)
MSG_LABEL = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end "
    f"with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '{_DNS1123_LABEL}')"
)
MSG_LABEL_VALUE = (
    "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start "
    "and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation "
    f"is '{_LABEL_VALUE}')"
)
MSG_QNAME = (
    "name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric "
    f"character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '{_QNAME}')"
)

# Well-known labels (kubernetes.io/docs/reference/labels-annotations-taints/): what the apiserver puts on a Job's pod
# template.
JOB_NAME_LABEL = "batch.kubernetes.io/job-name"
LEGACY_JOB_NAME_LABEL = "job-name"
CONTROLLER_UID_LABEL = "batch.kubernetes.io/controller-uid"
LEGACY_CONTROLLER_UID_LABEL = "controller-uid"


def dns1123_subdomain_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 253:
        errs.append("must be no more than 253 bytes")
    if not re.fullmatch(_DNS1123_SUBDOMAIN, value):
        errs.append(MSG_SUBDOMAIN)
    return errs


def dns1123_label_errors(value: str) -> list[str]:
    errs = []
    if len(value) > 63:
        errs.append("must be no more than 63 bytes")
    if not re.fullmatch(_DNS1123_LABEL, value):
        errs.append(MSG_LABEL)
    return errs


def label_value_errors(value: str) -> list[str]:
    errs = []
    if len(value.encode()) > 63:
        errs.append("must be no more than 63 bytes")
    if not re.fullmatch(_LABEL_VALUE, value):
        errs.append(MSG_LABEL_VALUE)
    return errs


def label_key_errors(key: str) -> list[str]:
    """IsQualifiedName: optional DNS-1123 subdomain prefix + '/' + a 63-byte name part."""
    parts = key.split("/")
    if len(parts) > 2:
        return [MSG_QNAME.replace("name part must", "a qualified name must")]
    name = parts[-1]
    errs = []
    if len(parts) == 2:
        prefix = parts[0]
        if not prefix:
            errs.append("prefix part must be non-empty")
        else:
            errs += [f"prefix part {e}" for e in dns1123_subdomain_errors(prefix)]
    if not name:
        errs.append("name part must be non-empty")
    else:
        if len(name) > 63:
            errs.append("name part must be no more than 63 bytes")
        if not re.fullmatch(_QNAME, name):
            errs.append(MSG_QNAME)
    return errs


# --- quantities (k8s.io/apimachinery/pkg/api/resource/quantity.go) ----------------------------------------------

_QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
QUANTITY_ERROR = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"


def parse_quantity(value: Any) -> Decimal:
    """Parse "500m", "1.5", "128Mi", "1e3"; raise ValueError on anything the apiserver would reject.

    The apiserver's grammar decides what is accepted; the value is computed by the client library's
    ``kubernetes.utils.parse_quantity`` (one quantity parser for the backend and the emulator)."""
    from kubernetes.utils import parse_quantity as client_parse_quantity

    if isinstance(value, bool):
        raise ValueError(QUANTITY_ERROR)
    if isinstance(value, (int, float)):
        return Decimal(str(value))
    if not isinstance(value, str) or not _QUANTITY.match(value.strip()):
        raise ValueError(QUANTITY_ERROR)
    try:
        return Decimal(client_parse_quantity(value.strip()))
    except (ValueError, ArithmeticError) as exc:
        raise ValueError(QUANTITY_ERROR) from exc


# --- names ----------------------------------------------------------------------------------------------------------

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand: no vowels, no confusables


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(n))


def generate_name(base: str) -> str:
    # names.SimpleNameGenerator: base truncated so base+suffix fits 63 bytes.
    return base[: 63 - 5] + random_suffix()


# --- objects --------------------------------------------------------------------------------------------------------


def decode_checks(body: Any, kind: str, api_version: str, namespace: str | None) -> dict[str, Any]:
    """What the apiserver rejects with 400 before validation: wrong kind/apiVersion, namespace mismatch."""
    if not isinstance(body, dict):
        raise bad_request(f'{kind} in version "{api_version.split("/")[-1]}" cannot be handled as a {kind}')
    if body.get("apiVersion") not in (None, api_version):
        raise bad_request(
            f"the API version in the data ({body.get('apiVersion')}) does not match the expected API version "
            f"({api_version})"
        )
    if body.get("kind") not in (None, kind):
        raise bad_request(f"the kind in the data ({body.get('kind')}) does not match the expected kind ({kind})")
    meta = body.get("metadata")
    if meta is not None and not isinstance(meta, dict):
        raise bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: metadata must be an object')
    if namespace is not None and meta and meta.get("namespace") not in (None, "", namespace):
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    return body


def validate_metadata(meta: dict[str, Any], path: str = "metadata") -> list[Cause]:
    causes: list[Cause] = []
    for k, v in (meta.get("labels") or {}).items():
        for e in label_key_errors(k):
            causes.append(Cause(f"{path}.labels", f'Invalid value: "{k}": {e}'))
        if not isinstance(v, str):
            causes.append(Cause(f"{path}.labels", f"Invalid value: {v!r}: label values must be strings"))
            continue
        for e in label_value_errors(v):
            causes.append(Cause(f"{path}.labels", f'Invalid value: "{v}": {e}'))
    ann = meta.get("annotations") or {}
    for k in ann:
        for e in label_key_errors(k.lower()):
            causes.append(Cause(f"{path}.annotations", f'Invalid value: "{k}": {e}'))
    total = sum(len(k) + len(str(v)) for k, v in ann.items())
    if total > 256 * 1024:
        causes.append(
            Cause(
                f"{path}.annotations", f"Too long: may not be more than 262144 bytes (got {total})", "FieldValueTooLong"
            )
        )
    return causes
