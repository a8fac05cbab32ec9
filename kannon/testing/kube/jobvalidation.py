"""Defaulting and validation of Jobs, the way kube-apiserver does it: create (prepare_job) and update.

Sources: pkg/apis/batch/validation and pkg/apis/batch/v1/defaults.go (Job), pkg/registry/batch/job/strategy.go
(generated selector and the labels copied onto the template), and the Job API reference
(kubernetes.io/docs/reference/kubernetes-api/workload-resources/job-v1/). The pod template's checks are
podvalidation.py's, names and labels validation.py's.
"""

from __future__ import annotations

from typing import Any

from kannon.testing.kube.errors import Cause, bad_request, invalid
from kannon.testing.kube.podvalidation import check_quantities, default_pod_spec, validate_pod_spec
from kannon.testing.kube.validation import (
    CONTROLLER_UID_LABEL,
    JOB_NAME_LABEL,
    LEGACY_CONTROLLER_UID_LABEL,
    LEGACY_JOB_NAME_LABEL,
    decode_checks,
    dns1123_subdomain_errors,
    generate_name,
    validate_metadata,
)


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
    check_quantities(pod_spec, "Job")

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
    default_pod_spec(pod_spec)

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
