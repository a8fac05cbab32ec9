"""The Job body of one attempt: the user's template (a file, a dict, a ``V1Job`` or the master's own pod) with
kannon's name, labels, command, hints and environment merged in, and the plan-time checks of what goes into it."""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kannon import childresult, measure
from kannon.backends.base import BackendError, Launch
from kannon.backends.kubernetes.names import (
    ANNOTATION_FAMILY,
    ANNOTATION_KEY,
    ANNOTATION_RUN,
    ANNOTATION_SPEC_HASH,
    ANNOTATION_TASK,
    LABEL_KEY,
    LABEL_VALUE,
    job_labels,
)
from kannon.backends.kubernetes.raw import View
from kannon.backends.kubernetes.secret import env_refs
from kannon.hints import Hints

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, V1Pod

log = logging.getLogger("kannon.kubernetes")

SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TERMINATION_MESSAGE_PATH = "/dev/termination-log"  # the Kubernetes default, set explicitly
#: labels the Job controller puts on a Job's pod template; a template copied from an existing Job must lose them
_CONTROLLER_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                      "batch.kubernetes.io/job-name")  # fmt: skip
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")

def load_template(template: Any) -> dict[str, Any]:
    """A Job template in API (camelCase) form, from a ``V1Job``, a dict, or a path to a YAML file."""
    if template is None:
        raise BackendError("no Job template given")
    if isinstance(template, (str, os.PathLike)):
        import yaml

        path = Path(template)
        try:
            docs = [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]
        except OSError as e:
            raise BackendError(f"cannot read the Job template {str(path)!r}: {e}") from e
        except yaml.YAMLError as e:
            raise BackendError(f"the Job template {str(path)!r} is not valid YAML: {e}") from e
        jobs = [d for d in docs if isinstance(d, dict) and d.get("kind", "Job") == "Job"]
        if len(jobs) != 1:
            raise BackendError(f"the Job template {str(path)!r} must hold exactly one Job, found {len(jobs)}")
        data: Any = jobs[0]
    elif isinstance(template, Mapping):
        data = copy.deepcopy(dict(template))
        if _snake_case(data):
            raise BackendError("a dict Job template must be in the API's YAML/JSON form (camelCase keys such as "
                               "apiVersion); pass the V1Job object itself instead of V1Job.to_dict()")  # fmt: skip
    elif type(template).__name__ == "V1Job":
        from kubernetes.client import ApiClient

        data = ApiClient().sanitize_for_serialization(template)
    else:
        raise BackendError(f"template_job must be a V1Job, a dict or a YAML file path, not {type(template).__name__}")
    containers = (((data.get("spec") or {}).get("template") or {}).get("spec") or {}).get("containers")
    if not containers:
        raise BackendError("the Job template has no spec.template.spec.containers; it needs at least one container")
    return dict(data)

def template_container(pod_spec: Mapping[str, Any], container: str | None, python: str) -> dict[str, Any]:
    """The template container that runs the task; BackendError if there is none or it sets its own command."""
    containers: list[dict[str, Any]] = pod_spec.get("containers") or []
    target = next((c for c in containers if container is None or c.get("name") == container), None)
    if target is None:
        raise BackendError(f"the Job template has no container named {container!r}")
    if target.get("command"):
        raise BackendError(
            f"the Job template's container {target.get('name')!r} sets `command`; kannon replaces it with "
            f"`{python} -m kannon run-task ...`. Remove `command` (and `args`) from the template; set the "
            "backend's python=... if the image's interpreter is not `python`."
        )
    return target

def _snake_case(data: Mapping[str, Any]) -> bool:
    """A dict from ``V1Job.to_dict()`` (snake_case keys) rather than the API form."""
    spec = data.get("spec") or {}
    pod = ((spec.get("template") or {}).get("spec") or {}) if isinstance(spec, Mapping) else {}
    keys = [*data, *(spec if isinstance(spec, Mapping) else ()), *(pod if isinstance(pod, Mapping) else ())]
    return any("_" in str(k) for k in keys)

def template_from_pod(pod: V1Pod, api_client: ApiClient, container: str | None = None) -> dict[str, Any]:
    """A child Job template derived from the master's own pod: same image, env, volumes, service account, resources.

    Probes, ports, lifecycle hooks, labels and the command are not copied; the service-account token volume that
    admission injects into every pod is dropped (the child gets its own, and a copied one would clash)."""
    spec = api_client.sanitize_for_serialization(pod.spec) or {}
    containers = spec.get("containers") or []
    chosen = next((c for c in containers if container is None or c.get("name") == container), None)
    if chosen is None:
        raise BackendError(f"the master pod {pod.metadata.name!r} has no container {container!r} to copy")
    token_vols = {v["name"] for v in spec.get("volumes") or [] if str(v.get("name", "")).startswith("kube-api-access-")}
    child: dict[str, Any] = {"name": chosen.get("name") or "kannon"}
    for key in ("image", "imagePullPolicy", "env", "envFrom", "resources", "workingDir", "securityContext"):
        if chosen.get(key):
            child[key] = chosen[key]
    mounts = [
        m for m in chosen.get("volumeMounts") or []
        if m.get("name") not in token_vols and m.get("mountPath") != str(SERVICEACCOUNT_DIR)
    ]  # fmt: skip
    if mounts:
        child["volumeMounts"] = mounts
    used = {m["name"] for m in mounts}
    pod_spec: dict[str, Any] = {"containers": [child], "restartPolicy": "Never"}
    volumes = [v for v in spec.get("volumes") or [] if v.get("name") in used]
    if volumes:
        pod_spec["volumes"] = volumes
    for key in ("serviceAccountName", "imagePullSecrets", "securityContext", "nodeSelector", "tolerations",
                "priorityClassName"):  # fmt: skip
        if spec.get(key):
            pod_spec[key] = spec[key]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"namespace": pod.metadata.namespace},
        "spec": {"template": {"spec": pod_spec}},
    }

def _quantity(value: str | float | int, what: str, example: str) -> Decimal:
    """A Kubernetes quantity as the client library reads it (``kubernetes.utils.parse_quantity``); must be > 0."""
    from kubernetes.utils import parse_quantity

    try:
        number = Decimal(parse_quantity(value.strip() if isinstance(value, str) else value))
    except (ValueError, TypeError) as e:
        raise ValueError(f"{what} {value!r} is not a quantity like {example}") from e
    if isinstance(value, bool) or not number.is_finite() or number <= 0:
        raise ValueError(f"{what} {value!r} must be a positive quantity like {example}")
    return number

def cpu_quantity(value: str | float) -> str:
    """``value`` as the cpu quantity written into the Job (numbers become millicores, at least 1m)."""
    cores = _quantity(value, "cpu", "'500m', '2' or 0.5")
    if isinstance(value, str):
        return value.strip()
    return f"{max(1, round(cores * 1000))}m"

def memory_quantity(value: str | int) -> str:
    """``value`` as the memory quantity written into the Job (bytes; at least one byte)."""
    if _quantity(value, "memory", "'512Mi', '2Gi' or '1G'") < 1:
        raise ValueError(f"memory {value!r} is less than one byte")
    return str(value).strip()

def merge_env(current: list[dict[str, Any]], extra: Mapping[str, str]) -> list[dict[str, Any]]:
    """Container env with ``extra`` replacing entries of the same name (kept in place) and appending the rest."""
    return replace_env(current, [{"name": name, "value": value} for name, value in extra.items()])


def replace_env(current: list[dict[str, Any]], entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Container env with ``entries`` replacing entries of the same name (kept in place) and appending the rest."""
    out = [dict(e) for e in current]
    index = {e.get("name"): i for i, e in enumerate(out)}
    for entry in entries:
        if entry["name"] in index:
            out[index[entry["name"]]] = entry
        else:
            index[entry["name"]] = len(out)
            out.append(entry)
    return out

#: resources a pack's pod holds for all its members (multiplied); a bullet needing any other is never packed
SCALED_RESOURCES = frozenset({"cpu", "memory", "ephemeral-storage"})


def build_job(
    template: Mapping[str, Any],
    launch: Launch,
    *,
    name: str,
    namespace: str,
    python: str = "python",
    container: str | None = None,
    owner: Mapping[str, Any] | None = None,
    secrets: Mapping[str, str] | None = None,
    secret_name: str | None = None,
    ttl_seconds: int | None = 3600,
    gpu_resource: str = "nvidia.com/gpu",
    command: list[str] | None = None,
    members: int = 1,
) -> dict[str, Any]:
    """The Job body for one attempt: the template with kannon's name, labels, command, hints and env merged in.

    ``command`` defaults to ``launch.argv(python)``, the child entrypoint, as an argv list (never a shell string)."""
    job = copy.deepcopy(dict(template))
    job["apiVersion"], job["kind"] = "batch/v1", "Job"
    job.pop("status", None)
    meta = job.setdefault("metadata", {}) or {}
    job["metadata"] = meta
    for key in ("generateName", "resourceVersion", "uid", "creationTimestamp", "selfLink", "managedFields",
                "deletionTimestamp", "generation"):  # fmt: skip
        meta.pop(key, None)
    labels = job_labels(launch)
    meta.update(name=name, namespace=namespace)
    meta["labels"] = {**(meta.get("labels") or {}), **labels}
    meta["annotations"] = {
        **(meta.get("annotations") or {}),
        ANNOTATION_TASK: launch.task_id,
        ANNOTATION_FAMILY: launch.family,
        ANNOTATION_RUN: launch.run_id,
        ANNOTATION_KEY: launch.key,
    }
    if owner is not None:
        refs = [r for r in meta.get("ownerReferences") or [] if r.get("uid") != owner.get("uid")]
        meta["ownerReferences"] = [*refs, dict(owner)]

    spec = job.setdefault("spec", {})
    # kannon owns retries (each attempt is its own Job, classified before the next): the Job controller must not
    # retry on its own, and a selector copied from an existing Job would point at that Job's pods.
    spec["backoffLimit"] = 0
    spec["completions"], spec["parallelism"] = 1, 1
    for key in ("selector", "manualSelector", "podFailurePolicy", "completionMode", "suspend"):
        spec.pop(key, None)
    if ttl_seconds is not None:
        spec["ttlSecondsAfterFinished"] = int(ttl_seconds)
    hints = launch.hints
    if hints.timeout is not None:
        spec["activeDeadlineSeconds"] = max(1, math.ceil(hints.timeout))

    pod = spec.setdefault("template", {})
    pod_meta = pod.setdefault("metadata", {}) or {}
    pod["metadata"] = pod_meta
    pod_labels = {k: v for k, v in (pod_meta.get("labels") or {}).items() if k not in _CONTROLLER_LABELS}
    pod_meta["labels"] = {**pod_labels, **labels}
    pod_meta.pop("name", None)
    pod_spec = pod.setdefault("spec", {})
    if pod_spec.get("restartPolicy") not in (None, "Never"):
        log.info("Job template restartPolicy %r replaced by 'Never': kannon retries attempts itself",
                 pod_spec.get("restartPolicy"))  # fmt: skip
    pod_spec["restartPolicy"] = "Never"

    target = template_container(pod_spec, container, python)
    if target.get("args"):
        log.warning("Job template container %r: `args` dropped (kannon sets the whole command line)",
                    target.get("name"))  # fmt: skip
        target.pop("args")
    target["command"] = list(command) if command is not None else launch.argv(python)
    if hints.image:
        target["image"] = hints.image
    if not target.get("image"):
        raise BackendError(f"the Job template's container {target.get('name')!r} has no image; set it in the "
                           "template or with Hints(image=...)")  # fmt: skip
    resources = target.setdefault("resources", {}) or {}
    target["resources"] = resources
    requests = dict(resources.get("requests") or {})
    limits = dict(resources.get("limits") or {})
    if hints.cpu is not None:
        requests["cpu"] = limits["cpu"] = cpu_quantity(hints.cpu)
    if hints.memory is not None:
        requests["memory"] = limits["memory"] = memory_quantity(hints.memory)
    if hints.gpu is not None:
        if hints.gpu > 0:
            limits[gpu_resource] = str(hints.gpu)
        else:
            limits.pop(gpu_resource, None)
            requests.pop(gpu_resource, None)
    if members > 1:  # a pack (kannon.pack): its pod holds the members' resources, summed
        for values in (requests, limits):
            for res in SCALED_RESOURCES & set(values):
                total = _quantity(values[res], res, "'500m' or '512Mi'") * members
                values[res] = f"{max(1, math.ceil(total * 1000))}m" if res == "cpu" else str(math.ceil(total))
    for key, values in (("requests", requests), ("limits", limits)):
        if values:
            resources[key] = values
        else:
            resources.pop(key, None)
    child_env(target, launch, secrets or {}, secret_name)
    termination_message(target)
    if hints.node_selector:
        pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **hints.node_selector}
    if hints.tolerations:
        tolerations = [dict(t) for t in pod_spec.get("tolerations") or []]
        tolerations += [dict(t) for t in hints.tolerations if dict(t) not in tolerations]
        pod_spec["tolerations"] = tolerations
    meta["annotations"][ANNOTATION_SPEC_HASH] = spec_hash(pod_spec, target)
    return job


def child_env(target: dict[str, Any], launch: Launch, secrets: Mapping[str, str], secret_name: str | None) -> None:
    """The child container's env: template env < the run's secrets < ``Launch.env`` (the core's single merge of
    ``Hints.env`` and the reserved KANNON_* names; see kannon.scheduler.env). The only place this backend merges.
    The secrets' values never appear: each name refers to the run's Secret ``secret_name`` (:mod:`.secret`)."""
    refs = [k for k in secrets if k not in launch.env]
    if refs and secret_name is None:
        raise BackendError("the run's secrets need the run's Secret: start() did not create it")
    if refs:
        assert secret_name is not None
        target["env"] = replace_env(target.get("env") or [], env_refs(secret_name, refs))
    if launch.env:
        target["env"] = merge_env(target.get("env") or [], launch.env)


def termination_message(target: dict[str, Any]) -> None:
    """The child writes its record (kannon.childresult) to the container's termination message file, which the
    kubelet returns as ``state.terminated.message`` (at most 4096 bytes). A path or policy the template set is kept
    (with FallbackToLogsOnError a failed child that wrote nothing reports its log tail, which is no record). The
    container is this attempt's alone: its memory cgroup's peak is the task's (kannon.measure)."""
    path = target.setdefault("terminationMessagePath", TERMINATION_MESSAGE_PATH)
    target.setdefault("terminationMessagePolicy", "File")
    target["env"] = merge_env(target.get("env") or [], {childresult.RESULT_PATH_ENV: path,
                                                         measure.OWN_CONTAINER_ENV: "1"})  # fmt: skip


def _summary(pod_spec: Mapping[str, Any], target: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "image": target.get("image"),
        "command": target.get("command"),
        "resources": target.get("resources") or {},
        "nodeSelector": pod_spec.get("nodeSelector") or {},
        "tolerations": pod_spec.get("tolerations") or [],
    }


def spec_hash(pod_spec: Mapping[str, Any], target: Mapping[str, Any]) -> str:
    """What the attempt runs: image, command (which carries the hand-off spec's sha256), resources and placement.

    Env values are left out: they may carry per-invocation values, and secrets must not be hashed into metadata."""
    what = _summary(pod_spec, target)
    return hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:32]


def spec_changes(existing: Any, body: Mapping[str, Any], container: str | None) -> list[str]:
    """What an existing Job (a :mod:`.raw` view or a client model) runs differently from ``body``, the Job kannon
    would create now: ``[]`` when it runs the same thing (and may be adopted). Its spec-hash annotation decides when
    it has one; a Job made before the annotation existed is compared field by field."""
    from kubernetes.client import ApiClient

    def parts(job: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        pod = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
        containers = pod.get("containers") or [{}]
        target = next((c for c in containers if container is None or c.get("name") == container), containers[0])
        return pod, target

    # a Job read or listed by kannon is a JSON view (.raw) already; a client model is turned back into the API form
    old = dict(existing.raw) if isinstance(existing, View) else ApiClient().sanitize_for_serialization(existing) or {}
    new_summary, old_summary = _summary(*parts(body)), _summary(*parts(old))
    diff = [key for key, value in new_summary.items() if old_summary.get(key) != value]
    old_hash = ((old.get("metadata") or {}).get("annotations") or {}).get(ANNOTATION_SPEC_HASH)
    if old_hash is None:
        return diff
    if old_hash == body["metadata"]["annotations"][ANNOTATION_SPEC_HASH]:
        return []
    return diff or ["spec hash"]


def job_error_problems(hints: Hints, gpu_resource: str | None) -> list[str]:
    """Hints this backend cannot turn into a valid Job (checked at plan time, before anything is created)."""
    problems: list[str] = []
    if hints.gpu and gpu_resource is None:
        problems.append("gpu hint given but this backend was configured without a GPU resource name")
    for t in hints.tolerations or ():
        if not isinstance(t, Mapping):
            continue
        op, effect = t.get("operator", "Equal"), t.get("effect")
        key, value = str(t.get("key") or ""), str(t.get("value") or "")
        if op not in _TOLERATION_OPERATORS:
            problems.append(f"toleration {dict(t)!r}: operator must be one of {list(_TOLERATION_OPERATORS)}")
        if op == "Exists" and t.get("value"):
            problems.append(f"toleration {dict(t)!r}: operator Exists takes no value")
        # the API server's ValidateTolerations (pkg/apis/core/validation) refuses these too
        if not key and op != "Exists":
            problems.append(f"toleration {dict(t)!r}: operator must be Exists when the key is empty (it then "
                            "matches every taint)")  # fmt: skip
        if key and (len(key) > 316 or not LABEL_KEY.match(key)):
            problems.append(f"toleration {dict(t)!r}: key is not a valid label name")
        if op in ("Equal", "") and (len(value) > 63 or not LABEL_VALUE.match(value)):
            problems.append(f"toleration {dict(t)!r}: value is not a valid label value")
        if t.get("tolerationSeconds") is not None and effect != "NoExecute":
            problems.append(f"toleration {dict(t)!r}: tolerationSeconds needs effect NoExecute (the time a pod "
                            "stays on a node that gets the taint)")  # fmt: skip
        if effect is not None and effect not in _TOLERATION_EFFECTS:
            problems.append(f"toleration {dict(t)!r}: effect must be one of {list(_TOLERATION_EFFECTS)}")
        seconds = t.get("tolerationSeconds")
        if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool)):
            problems.append(f"toleration {dict(t)!r}: tolerationSeconds must be a whole number")
    for label in (hints.node_selector or {}).values():
        if isinstance(label, str) and not LABEL_VALUE.match(label):
            problems.append(f"node_selector value {label!r} is not a valid label value")
    return problems

def owner_reference(pod: V1Pod) -> dict[str, Any]:
    """The master pod's controlling Job if it has one (children then survive a restart of the master's pod and can
    be re-attached), else the pod itself. Deleting the owner garbage-collects every child Job."""
    for ref in pod.metadata.owner_references or ():
        if ref.kind == "Job" and ref.controller:
            return {"apiVersion": ref.api_version or "batch/v1", "kind": "Job", "name": ref.name, "uid": ref.uid}
    return {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "uid": pod.metadata.uid}

