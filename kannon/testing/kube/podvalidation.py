"""Defaulting and validation of a pod template's spec, the way kube-apiserver does it for a Job's template.

Sources: pkg/apis/core/v1/defaults.go (SetDefaults_PodSpec, SetDefaults_Container) and pkg/apis/core/validation
(ValidatePodSpec: containers, volumes, env, resources, tolerations), messages as kube-apiserver v1.33 answers them.
"""

from __future__ import annotations

import re
from typing import Any

from kannon.testing.kube.errors import Cause, bad_request
from kannon.testing.kube.validation import dns1123_label_errors, label_key_errors, label_value_errors, parse_quantity


def _image_pull_policy(image: str) -> str:
    # SetDefaults_Container: Always for :latest or an untagged image, else IfNotPresent.
    last = image.rsplit("/", 1)[-1]
    if "@" in last:
        return "IfNotPresent"
    if ":" not in last or last.endswith(":latest"):
        return "Always"
    return "IfNotPresent"


def default_pod_spec(spec: dict[str, Any]) -> None:
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


def check_quantities(spec: dict[str, Any], kind: str) -> None:
    for c in spec.get("containers") or []:
        if not isinstance(c, dict):
            continue
        for section in ("requests", "limits"):
            for v in ((c.get("resources") or {}).get(section) or {}).values():
                try:
                    parse_quantity(v)
                except ValueError as exc:
                    raise bad_request(f'{kind} in version "v1" cannot be handled as a {kind}: {exc}') from exc


def _fmt(q: Any) -> str:
    return str(q)


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
