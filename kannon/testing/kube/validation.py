"""Defaulting and validation of Jobs, the way kube-apiserver does it.

Sources: k8s.io/apimachinery/pkg/util/validation/validation.go (names, labels), pkg/apis/batch/validation and
pkg/apis/batch/v1/defaults.go (Job), pkg/apis/core/validation (pod template), pkg/registry/batch/job/strategy.go
(generated selector and the labels copied onto the template), and the Job API reference
(kubernetes.io/docs/reference/kubernetes-api/workload-resources/job-v1/).
"""

from __future__ import annotations

import re
import secrets
from decimal import Decimal
from typing import Any

from kannon.testing.kube.errors import ApiError, Cause, bad_request, invalid

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
_SUFFIX = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3,
    "M": Decimal(10) ** 6,
    "G": Decimal(10) ** 9,
    "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15,
    "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10,
    "Mi": Decimal(2) ** 20,
    "Gi": Decimal(2) ** 30,
    "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50,
    "Ei": Decimal(2) ** 60,
}
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


def _fmt(q: Any) -> str:
    return str(q)


# --- names ----------------------------------------------------------------------------------------------------------

_NAME_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand: no vowels, no confusables


def random_suffix(n: int = 5) -> str:
    return "".join(secrets.choice(_NAME_ALPHABET) for _ in range(n))


def generate_name(base: str) -> str:
    # names.SimpleNameGenerator: base truncated so base+suffix fits 63 bytes.
    return base[: 63 - 5] + random_suffix()


# --- Job defaulting + validation ------------------------------------------------------------------------------------


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


def _image_pull_policy(image: str) -> str:
    # SetDefaults_Container: Always for :latest or an untagged image, else IfNotPresent.
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def _default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for c in spec.get("containers") or []:
        if not isinstance(c, dict):
            continue
        if isinstance(c.get("image"), str):
            c.setdefault("imagePullPolicy", _image_pull_policy(c["image"]))
        c.setdefault("terminationMessagePath", "/dev/termination-log")
        c.setdefault("terminationMessagePolicy", "File")
        res = c.setdefault("resources", {})
        if isinstance(res, dict) and isinstance(res.get("limits"), dict):
            # Requests default to limits for every resource that only has a limit.
            req = res.setdefault("requests", {})
            for k, v in res["limits"].items():
                req.setdefault(k, v)


def _check_quantities(spec: dict[str, Any], kind: str) -> None:
    for c in spec.get("containers") or []:
        if not isinstance(c, dict):
            continue
        for section in ("requests", "limits"):
            for v in ((c.get("resources") or {}).get(section) or {}).values():
                try:
                    parse_quantity(v)
                except ValueError as exc:
                    raise bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: {exc}') from exc


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


def _validate_env(c: dict[str, Any], p: str) -> list[Cause]:
    causes: list[Cause] = []
    for j, e in enumerate(c.get("env") or []):
        ep = f"{p}.env[{j}]"
        name = e.get("name") if isinstance(e, dict) else None
        if not name:
            causes.append(Cause(f"{ep}.name", "Required value", "FieldValueRequired"))
        elif not re.fullmatch(r"[\x20-\x3c\x3e-\x7e]+", name):
            # RelaxedEnvironmentVariableValidation (default since 1.32): printable ASCII except '='.
            causes.append(
                Cause(
                    f"{ep}.name",
                    f'Invalid value: "{name}": a valid environment variable name must consist only of printable '
                    "ASCII characters other than '='",
                )
            )
        if isinstance(e, dict) and e.get("value") is not None and e.get("valueFrom") is not None:
            causes.append(Cause(f"{ep}.valueFrom", 'Invalid value: "": may not be specified when `value` is not empty'))
    return causes


def _validate_resources(c: dict[str, Any], p: str) -> list[Cause]:
    causes: list[Cause] = []
    res = c.get("resources") or {}
    req = res.get("requests") or {}
    lim = res.get("limits") or {}
    for name, v in {**req, **lim}.items():
        if parse_quantity(v) < 0:
            causes.append(
                Cause(f"{p}.resources.limits[{name}]", f'Invalid value: "{v}": must be greater than or equal to 0')
            )
    for name, v in req.items():
        if name in lim and parse_quantity(v) > parse_quantity(lim[name]):
            causes.append(
                Cause(
                    f"{p}.resources.requests",
                    f'Invalid value: "{_fmt(v)}": must be less than or equal to {name} limit of {_fmt(lim[name])}',
                )
            )
        if "/" in name and not name.startswith("kubernetes.io/") and name in lim and str(v) != str(lim[name]):
            causes.append(
                Cause(f"{p}.resources.requests[{name}]", f'Invalid value: "{v}": must be equal to {name} limit')
            )
    return causes


def validate_pod_spec(spec: dict[str, Any], path: str) -> list[Cause]:
    causes: list[Cause] = []
    containers = spec.get("containers")
    if not containers:
        causes.append(Cause(f"{path}.containers", "Required value", "FieldValueRequired"))
    volumes = spec.get("volumes") or []
    vol_names: set[str] = set()
    for i, v in enumerate(volumes):
        vname = v.get("name", "") if isinstance(v, dict) else ""
        vp = f"{path}.volumes[{i}].name"
        if not vname:
            causes.append(Cause(vp, "Required value", "FieldValueRequired"))
        else:
            causes += [Cause(vp, f'Invalid value: "{vname}": {e}') for e in dns1123_label_errors(vname)]
            if vname in vol_names:
                causes.append(Cause(vp, f'Duplicate value: "{vname}"', "FieldValueDuplicate"))
            vol_names.add(vname)
    seen: set[str] = set()
    for i, c in enumerate(containers or []):
        p = f"{path}.containers[{i}]"
        if not isinstance(c, dict):
            causes.append(Cause(p, "Invalid value: must be an object"))
            continue
        name = c.get("name")
        if not name:
            causes.append(Cause(f"{p}.name", "Required value", "FieldValueRequired"))
        else:
            causes += [Cause(f"{p}.name", f'Invalid value: "{name}": {e}') for e in dns1123_label_errors(name)]
            if name in seen:
                causes.append(Cause(f"{p}.name", f'Duplicate value: "{name}"', "FieldValueDuplicate"))
            seen.add(name)
        if not c.get("image"):
            causes.append(Cause(f"{p}.image", "Required value", "FieldValueRequired"))
        for key in ("command", "args"):
            val = c.get(key)
            if val is not None and (not isinstance(val, list) or not all(isinstance(a, str) for a in val)):
                causes.append(Cause(f"{p}.{key}", "Invalid value: must be a list of strings"))
        causes += _validate_env(c, p)
        causes += _validate_resources(c, p)
        for j, m in enumerate(c.get("volumeMounts") or []):
            mname = m.get("name") if isinstance(m, dict) else None
            if mname not in vol_names:
                causes.append(Cause(f"{p}.volumeMounts[{j}].name", f'Not found: "{mname}"', "FieldValueNotFound"))
            if not (isinstance(m, dict) and m.get("mountPath")):
                causes.append(Cause(f"{p}.volumeMounts[{j}].mountPath", "Required value", "FieldValueRequired"))
    grace = spec.get("terminationGracePeriodSeconds")
    if isinstance(grace, int) and grace < 0:
        causes.append(Cause(f"{path}.terminationGracePeriodSeconds", f"Invalid value: {grace}: must be >= 0"))
    for i, t in enumerate(spec.get("tolerations") or []):
        causes += _validate_toleration(t if isinstance(t, dict) else {}, f"{path}.tolerations[{i}]")
    return causes


_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


def _validate_toleration(t: dict[str, Any], p: str) -> list[Cause]:
    """ValidateTolerations (pkg/apis/core/validation); messages as kube-apiserver v1.33.13 answers them."""
    causes: list[Cause] = []
    key, op, value, effect = (str(t.get(k) or "") for k in ("key", "operator", "value", "effect"))
    if key:
        causes += [Cause(f"{p}.key", f'Invalid value: "{key}": {e}') for e in label_key_errors(key)]
    if not key and op != "Exists":
        causes.append(Cause(f"{p}.operator", f'Invalid value: "{op}": operator must be Exists when `key` is empty, '
                            'which means "match all values and all keys"'))  # fmt: skip
    if t.get("tolerationSeconds") is not None and effect != "NoExecute":
        causes.append(Cause(f"{p}.effect", f'Invalid value: "{effect}": effect must be \'NoExecute\' when '
                            "`tolerationSeconds` is set"))  # fmt: skip
    if op in ("", "Equal"):
        causes += [Cause(f"{p}.operator", f'Invalid value: "{value}": {e}') for e in label_value_errors(value)]
    elif op == "Exists":
        if value:
            causes.append(Cause(f"{p}.operator", f'Invalid value: "{value}": value must be empty when `operator` is '
                                "'Exists'"))  # fmt: skip
    else:
        causes.append(Cause(f"{p}.operator", f'Unsupported value: "{op}": supported values: "Equal", "Exists"',
                            "FieldValueNotSupported"))  # fmt: skip
    if effect and effect not in _EFFECTS:
        causes.append(Cause(f"{p}.effect", f'Unsupported value: "{effect}": supported values: '
                            + ", ".join(f'"{e}"' for e in _EFFECTS), "FieldValueNotSupported"))  # fmt: skip
    return causes


def _validate_pod_failure_policy(spec: dict[str, Any]) -> list[Cause]:
    pfp = spec.get("podFailurePolicy")
    if pfp is None:
        return []
    causes: list[Cause] = []
    restart = spec["template"]["spec"].get("restartPolicy")
    if restart != "Never":
        causes.append(
            Cause(
                "spec.template.spec.restartPolicy",
                f'Invalid value: "{restart}": only "Never" is supported when podFailurePolicy is specified',
            )
        )
    rules = pfp.get("rules") or []
    if len(rules) > 20:
        causes.append(
            Cause(
                "spec.podFailurePolicy.rules",
                f"Too many: {len(rules)}: must have at most 20 items",
                "FieldValueTooMany",
            )
        )
    for i, r in enumerate(rules):
        p = f"spec.podFailurePolicy.rules[{i}]"
        action = r.get("action")
        if action == "FailIndex":
            causes.append(
                Cause(f"{p}.action", 'Invalid value: "FailIndex": requires the backoffLimitPerIndex to be set')
            )
        elif action not in ("Count", "FailJob", "Ignore"):
            causes.append(
                Cause(
                    f"{p}.action",
                    f'Unsupported value: "{action}": supported values: "Count", "FailIndex", "FailJob", "Ignore"',
                    "FieldValueNotSupported",
                )
            )
        codes, conds = r.get("onExitCodes"), r.get("onPodConditions")
        if (codes is None) == (conds is None):
            causes.append(Cause(p, "Invalid value: specifying one of OnExitCodes and OnPodConditions is required"))
            continue
        if codes is not None:
            op = codes.get("operator")
            if op not in ("In", "NotIn"):
                causes.append(
                    Cause(
                        f"{p}.onExitCodes.operator",
                        f'Unsupported value: "{op}": supported values: "In", "NotIn"',
                        "FieldValueNotSupported",
                    )
                )
            values = codes.get("values") or []
            if not values:
                causes.append(
                    Cause(f"{p}.onExitCodes.values", "Invalid value: []int32{}: at least one value is required")
                )
            if len(values) > 255:
                causes.append(
                    Cause(
                        f"{p}.onExitCodes.values",
                        f"Too many: {len(values)}: must have at most 255 items",
                        "FieldValueTooMany",
                    )
                )
            for j, v in enumerate(values):
                if op == "In" and v == 0:
                    causes.append(
                        Cause(f"{p}.onExitCodes.values[{j}]", "Invalid value: 0: must not be 0 for the In operator")
                    )
                if j and v <= values[j - 1]:
                    causes.append(Cause(f"{p}.onExitCodes.values[{j}]", f"Invalid value: {v}: must be ordered"))
        else:
            for j, pat in enumerate(conds or []):
                cp = f"{p}.onPodConditions[{j}]"
                if not pat.get("type"):
                    causes.append(Cause(f"{cp}.type", "Required value", "FieldValueRequired"))
                status = pat.setdefault("status", "True")
                if status not in ("True", "False", "Unknown"):
                    causes.append(
                        Cause(
                            f"{cp}.status",
                            f'Unsupported value: "{status}": supported values: "True", "False", "Unknown"',
                            "FieldValueNotSupported",
                        )
                    )
    return causes


def prepare_job(body: Any, namespace: str, uid: str) -> dict[str, Any]:
    """Default and validate a Job for create; return the object to store (without rv/timestamps)."""
    job = decode_checks(body, "Job", "batch/v1", namespace)
    job = dict(job)
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    meta = dict(job.get("metadata") or {})
    job["metadata"] = meta
    spec = job.setdefault("spec", {})
    if not isinstance(spec, dict):
        raise bad_request('Job in version "v1" cannot be handled as a Job: spec must be an object')
    tmpl = spec.setdefault("template", {})
    tmpl_meta = tmpl.setdefault("metadata", {}) or {}
    tmpl["metadata"] = tmpl_meta
    pod_spec = tmpl.setdefault("spec", {}) or {}
    tmpl["spec"] = pod_spec
    _check_quantities(pod_spec, "Job")

    if not meta.get("name") and meta.get("generateName"):
        meta["name"] = generate_name(str(meta["generateName"]))
    name = str(meta.get("name") or "")
    meta["namespace"] = namespace
    for server_owned in ("uid", "resourceVersion", "creationTimestamp", "deletionTimestamp", "generation"):
        meta.pop(server_owned, None)

    # pkg/apis/batch/v1/defaults.go
    if spec.get("completions") is None and spec.get("parallelism") is None:
        spec["completions"] = 1
        spec["parallelism"] = 1
    spec.setdefault("parallelism", 1)
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    # The v1.33 apiserver stores manualSelector: false when unset (docs/upstream.md).
    if spec.get("manualSelector") is None:
        spec["manualSelector"] = False
    spec.setdefault("podReplacementPolicy", "Failed" if spec.get("podFailurePolicy") else "TerminatingOrFailed")
    _default_pod_spec(pod_spec)

    causes: list[Cause] = []
    if not name:
        causes.append(Cause("metadata.name", "Required value: name or generateName is required", "FieldValueRequired"))
    else:
        causes += [Cause("metadata.name", f'Invalid value: "{name}": {e}') for e in dns1123_subdomain_errors(name)]
    if spec.get("selector") is not None and not spec.get("manualSelector"):
        causes.append(Cause("spec.selector", "Invalid value: `selector` will be auto-generated", "FieldValueInvalid"))

    # pkg/registry/batch/job/strategy.go generateSelector: the uid/name labels go on the template (and on the Job's
    # own labels when the user gave none, because defaulting copies the template labels there).
    tlabels = dict(tmpl_meta.get("labels") or {})
    tlabels[CONTROLLER_UID_LABEL] = uid
    tlabels[LEGACY_CONTROLLER_UID_LABEL] = uid
    tlabels[JOB_NAME_LABEL] = name
    tlabels[LEGACY_JOB_NAME_LABEL] = name
    tmpl_meta["labels"] = tlabels
    if not spec.get("manualSelector"):
        spec["selector"] = {"matchLabels": {CONTROLLER_UID_LABEL: uid}}
    if not meta.get("labels"):
        meta["labels"] = dict(tlabels)

    causes += validate_metadata(meta)
    causes += validate_metadata(tmpl_meta, "spec.template.metadata")
    # apiserver reports template label problems under spec.template.labels.
    for c in causes:
        if c.field == "spec.template.metadata.labels":
            c.field = "spec.template.labels"
    for key in ("parallelism", "completions", "backoffLimit"):
        v = spec.get(key)
        if v is not None and (not isinstance(v, int) or v < 0):
            causes.append(Cause(f"spec.{key}", f"Invalid value: {v}: must be greater than or equal to 0"))
    for key in ("activeDeadlineSeconds",):
        v = spec.get(key)
        if v is not None and (not isinstance(v, int) or v <= 0):
            causes.append(Cause(f"spec.{key}", f"Invalid value: {v}: must be greater than 0"))
    ttl = spec.get("ttlSecondsAfterFinished")
    if ttl is not None and (not isinstance(ttl, int) or ttl < 0):
        causes.append(
            Cause("spec.ttlSecondsAfterFinished", f"Invalid value: {ttl}: must be greater than or equal to 0")
        )
    if spec.get("completionMode") != "NonIndexed":
        # Emulator limitation: Indexed Jobs are not implemented, so they are refused rather than run wrongly.
        causes.append(
            Cause(
                "spec.completionMode",
                f'Unsupported value: "{spec.get("completionMode")}": supported values: '
                '"NonIndexed" (the kannon emulator does not implement Indexed Jobs)',
                "FieldValueNotSupported",
            )
        )
    for key in ("successPolicy", "backoffLimitPerIndex", "maxFailedIndexes"):
        if spec.get(key) is not None:
            causes.append(Cause(f"spec.{key}", "Invalid value: requires indexed completion mode"))
    restart = pod_spec.get("restartPolicy")
    if restart not in ("Never", "OnFailure"):
        causes.append(
            Cause(
                "spec.template.spec.restartPolicy",
                f'Unsupported value: "{restart}": supported values: "OnFailure", "Never"',
                "FieldValueNotSupported",
            )
        )
    causes += validate_pod_spec(pod_spec, "spec.template.spec")
    causes += _validate_pod_failure_policy(spec)
    if causes:
        raise invalid("Job", "batch", name, causes)
    return job


IMMUTABLE_JOB_SPEC = ("template", "completions", "completionMode", "selector", "podFailurePolicy")


def validate_job_update(old: dict[str, Any], new: dict[str, Any]) -> None:
    """Spec fields a Job update may not change (pkg/apis/batch/validation ValidateJobSpecUpdate)."""
    causes: list[Cause] = []
    for key in IMMUTABLE_JOB_SPEC:
        if old["spec"].get(key) != new.get("spec", {}).get(key):
            causes.append(Cause(f"spec.{key}", "Invalid value: field is immutable"))
    causes += validate_metadata(new.get("metadata") or {})
    if causes:
        raise invalid("Job", "batch", old["metadata"]["name"], causes)


def ensure_api_error(exc: Exception) -> ApiError:
    return exc if isinstance(exc, ApiError) else bad_request(str(exc))
