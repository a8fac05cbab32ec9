"""The Kubernetes backend: each bullet attempt is one ``batch/v1`` Job.

Shape of a run (see docs/kubernetes.md for the user's view):

* ``start`` lists the run's Jobs and pods once (label ``kannon.io/run-id``), which gives both the resourceVersion to
  watch from and the leftovers of an earlier master of the same run: running Jobs are adopted when their task is
  launched again, finished ones are deleted. Then one Job watch and one pod watch follow the run.
* ``launch`` creates a Job with a deterministic name from (prefix, run, task, attempt): a retried or repeated create
  hits 409 and adopts the existing Job instead of making a duplicate.
* Watch events drive everything: the pod running → ``Started``; a waiting reason that never resolves → delete and
  fail fast; a terminal Job condition → fetch the pod log once (written to ``launch.log_path``), classify, ``Finished``.
  Per task that is one create and one log read, however long the task runs.
* Every API call goes through :class:`ApiCaller` (token-bucket rate limit, tenacity retries of 429/5xx/resets
  honouring Retry-After, 403 turned into a BackendError that names the missing permission).

The ``kubernetes`` package and PyYAML are imported inside functions: this module is loaded by the plugin registry on
every ``kannon`` start and every build, whichever backend is used (tests/unit/test_plugins_startup.py checks it).
"""

from __future__ import annotations

import argparse
import concurrent.futures
import contextlib
import copy
import functools
import hashlib
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from kannon.backends import _k8s_watch as kw
from kannon.backends.base import (
    BackendError,
    Executor,
    Finished,
    Launch,
    LogLine,
    Report,
    RunInfo,
    SpecTransport,
    Started,
    tail_lines,
)
from kannon.hints import Hints, parse_cpu, parse_memory
from kannon.hookspecs import hookimpl

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, V1Job, V1Pod

    from kannon.plugins import BackendSpec

log = logging.getLogger("kannon.kubernetes")
T = TypeVar("T")

LABEL_RUN = "kannon.io/run-id"
LABEL_TASK = "kannon.io/task-id"
LABEL_FAMILY = "kannon.io/family"
LABEL_ATTEMPT = "kannon.io/attempt"
ANNOTATION_TASK = "kannon.io/task-id"
ANNOTATION_FAMILY = "kannon.io/family"
ANNOTATION_RUN = "kannon.io/run-id"
ANNOTATION_KEY = "kannon.io/launch-key"
SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
#: labels the Job controller puts on a Job's pod template; a template copied from an existing Job must lose them
_CONTROLLER_LABELS = ("controller-uid", "batch.kubernetes.io/controller-uid", "job-name",
                      "batch.kubernetes.io/job-name")  # fmt: skip
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
_LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504})
_TOLERATION_OPERATORS = ("Exists", "Equal")
_TOLERATION_EFFECTS = ("NoSchedule", "PreferNoSchedule", "NoExecute")


# -- names and labels -----------------------------------------------------------------------------------------
def _digest(*parts: str, n: int = 10) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:n]


def label_value(text: str) -> str:
    """``text`` as a valid label value (≤ 63 chars); changed or shortened values keep a hash of the original."""
    if len(text) <= 63 and _LABEL_VALUE.match(text):
        return text
    clean = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")
    return (clean[:54].rstrip("-_.") + "-" + _digest(text, n=8)).lstrip("-")


def dns_label(text: str) -> str:
    """Lower-case DNS-1123 label characters of ``text`` (may be empty)."""
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9-]", "-", text.lower())).strip("-")


def job_name(prefix: str, run_id: str, task_id: str, attempt: int, family: str = "") -> str:
    """Deterministic DNS-1123 Job name ≤ 63 bytes: ``<prefix>-<family>-<hash(run, task)>-<attempt>``.

    The same (run, task, attempt) always gives the same name, which makes a repeated create a 409 (adopt, never a
    duplicate); the family is only there for people reading ``kubectl get jobs``."""
    suffix = f"-{_digest(run_id, task_id, n=12)}-{attempt}"
    head = dns_label(prefix)[:24].strip("-") or "kannon"
    fam = dns_label(family)[: max(0, 63 - len(suffix) - len(head) - 1)].strip("-")
    name = f"{head}-{fam}{suffix}" if fam else f"{head}{suffix}"
    assert len(name) <= 63 and _DNS_LABEL.match(name), name
    return name


def job_labels(launch: Launch) -> dict[str, str]:
    labels = {k: label_value(v) for k, v in launch.labels.items() if _LABEL_KEY.match(k) and len(k) <= 253}
    labels.update({
        LABEL_RUN: label_value(launch.run_id),
        LABEL_TASK: label_value(launch.task_id),
        LABEL_FAMILY: label_value(launch.family),
        LABEL_ATTEMPT: str(launch.attempt),
        "app.kubernetes.io/managed-by": "kannon",
    })  # fmt: skip
    return labels


def run_selector(run_id: str) -> str:
    return f"{LABEL_RUN}={label_value(run_id)}"


# -- the Job template -----------------------------------------------------------------------------------------
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


def _cpu_quantity(value: str | float) -> str:
    if isinstance(value, str):
        parse_cpu(value)
        return value.strip()
    return f"{max(1, round(parse_cpu(value) * 1000))}m"


def _memory_quantity(value: str | int) -> str:
    parse_memory(value)
    return str(value).strip()


def _merge_env(current: list[dict[str, Any]], extra: Mapping[str, str]) -> list[dict[str, Any]]:
    """Container env with ``extra`` replacing entries of the same name (kept in place) and appending the rest."""
    out = [dict(e) for e in current]
    index = {e.get("name"): i for i, e in enumerate(out)}
    for name, value in extra.items():
        entry = {"name": name, "value": value}
        if name in index:
            out[index[name]] = entry
        else:
            index[name] = len(out)
            out.append(entry)
    return out


def build_job(
    template: Mapping[str, Any],
    launch: Launch,
    *,
    name: str,
    namespace: str,
    python: str = "python",
    container: str | None = None,
    owner: Mapping[str, Any] | None = None,
    ttl_seconds: int | None = 3600,
    gpu_resource: str = "nvidia.com/gpu",
    command: list[str] | None = None,
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
        requests["cpu"] = limits["cpu"] = _cpu_quantity(hints.cpu)
    if hints.memory is not None:
        requests["memory"] = limits["memory"] = _memory_quantity(hints.memory)
    if hints.gpu is not None:
        if hints.gpu > 0:
            limits[gpu_resource] = str(hints.gpu)
        else:
            limits.pop(gpu_resource, None)
            requests.pop(gpu_resource, None)
    for key, values in (("requests", requests), ("limits", limits)):
        if values:
            resources[key] = values
        else:
            resources.pop(key, None)
    env = {**hints.env, **launch.env}
    if env:
        target["env"] = _merge_env(target.get("env") or [], env)
    if hints.node_selector:
        pod_spec["nodeSelector"] = {**(pod_spec.get("nodeSelector") or {}), **hints.node_selector}
    if hints.tolerations:
        tolerations = [dict(t) for t in pod_spec.get("tolerations") or []]
        tolerations += [dict(t) for t in hints.tolerations if dict(t) not in tolerations]
        pod_spec["tolerations"] = tolerations
    return job


def job_error_problems(hints: Hints, gpu_resource: str | None) -> list[str]:
    """Hints this backend cannot turn into a valid Job (checked at plan time, before anything is created)."""
    problems: list[str] = []
    for k in hints.env:
        if isinstance(k, str) and k.startswith("KANNON_"):
            problems.append(f"env {k!r}: names starting with KANNON_ are reserved for kannon's hand-off")
    if hints.gpu and gpu_resource is None:
        problems.append("gpu hint given but this backend was configured without a GPU resource name")
    for t in hints.tolerations or ():
        if not isinstance(t, Mapping):
            continue
        op, effect = t.get("operator", "Equal"), t.get("effect")
        if op not in _TOLERATION_OPERATORS:
            problems.append(f"toleration {dict(t)!r}: operator must be one of {list(_TOLERATION_OPERATORS)}")
        if op == "Exists" and t.get("value"):
            problems.append(f"toleration {dict(t)!r}: operator Exists takes no value")
        if effect is not None and effect not in _TOLERATION_EFFECTS:
            problems.append(f"toleration {dict(t)!r}: effect must be one of {list(_TOLERATION_EFFECTS)}")
        seconds = t.get("tolerationSeconds")
        if seconds is not None and (not isinstance(seconds, int) or isinstance(seconds, bool)):
            problems.append(f"toleration {dict(t)!r}: tolerationSeconds must be a whole number")
    for label in (hints.node_selector or {}).values():
        if isinstance(label, str) and not _LABEL_VALUE.match(label):
            problems.append(f"node_selector value {label!r} is not a valid label value")
    return problems


# -- RBAC -----------------------------------------------------------------------------------------------------
#: every (api group, resource, verbs) the backend calls; `kannon k8s rbac` renders exactly this
RBAC_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("batch", "jobs", ("create", "get", "list", "watch", "delete")),
    ("", "pods", ("get", "list", "watch")),  # get: the master's own pod (template, ownerReference)
    ("", "pods/log", ("get",)),
)


def render_rbac(namespace: str, service_account: str, name: str = "kannon") -> str:
    """The minimal Role + RoleBinding (YAML) for a master running as ``service_account`` in ``namespace``."""
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": name, "namespace": namespace},
        "rules": [{"apiGroups": [group], "resources": [res], "verbs": list(verbs)} for group, res, verbs in RBAC_RULES],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": name, "namespace": namespace},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
        "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": namespace}],
    }
    header = (f"# kannon: what the Kubernetes backend calls in namespace {namespace!r}\n"
              f"# apply with: kannon k8s rbac --namespace {namespace} --service-account {service_account} "
              "| kubectl apply -f -\n")  # fmt: skip
    import yaml

    return header + yaml.safe_dump_all([role, binding], sort_keys=False)


# -- the one place that talks to the API server ---------------------------------------------------------------
class TokenBucket:
    """Client-side rate limit: ``rate`` requests/s on average, bursts up to ``burst``. Thread-safe."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep) -> None:  # fmt: skip
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate, self.burst = float(rate), int(burst)
        self._clock, self._sleep = clock, sleep
        self._tokens = float(burst)
        self._last = clock()
        self._lock = threading.Lock()

    def take(self) -> float:
        """Take one token, waiting as long as needed; returns the time waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = self._clock()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1 - 1e-9:  # tolerance: float refill math must not spin on 0.9999999
                    self._tokens = max(0.0, self._tokens - 1)
                    return waited
                need = (1 - self._tokens) / self.rate
            self._sleep(need)
            waited += need


def api_status(e: BaseException) -> tuple[str, str]:
    """``(reason, message)`` from an ApiException's Status body."""
    body = getattr(e, "body", None)
    if isinstance(body, bytes):
        body = body.decode("utf-8", "replace")
    try:
        data = json.loads(body) if body else {}
    except (TypeError, ValueError):
        data = {}
    if not isinstance(data, dict):
        data = {}
    return str(data.get("reason") or getattr(e, "reason", "") or ""), str(data.get("message") or "")


def _retry_after(e: BaseException) -> float | None:
    headers = getattr(e, "headers", None)
    if not headers:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _retryable(e: BaseException) -> bool:
    from kubernetes.client.rest import ApiException

    if isinstance(e, ApiException):
        return e.status in _RETRYABLE_STATUS
    import urllib3.exceptions

    return isinstance(e, (urllib3.exceptions.HTTPError, ConnectionError, TimeoutError))


class ApiCaller:
    """Retries (429, 5xx, connection resets; Retry-After honoured) and rate limiting for every API call.

    ``call(verb, resource, fn, *args, **kwargs)``: the verb/resource pair names the permission in the 403 message.
    """

    def __init__(self, namespace: str, qps: float = 20.0, burst: int = 40, attempts: int = 8,
                 max_delay: float = 60.0, backoff: float = 0.2, sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:  # fmt: skip
        self.namespace = namespace
        self.bucket = TokenBucket(qps, burst, clock=clock, sleep=sleep)
        self._sleep = sleep
        self.attempts, self.max_delay, self.backoff = attempts, max_delay, backoff
        self.calls = 0
        self.retries = 0

    def _wait(self, state: Any) -> float:
        import tenacity

        exc = state.outcome.exception() if state.outcome else None
        expo = tenacity.wait_random_exponential(multiplier=self.backoff, max=10.0)(state)
        after = _retry_after(exc) if exc is not None else None
        return min(30.0, max(expo, after)) if after is not None else float(expo)

    def call(self, verb: str, resource: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        import tenacity
        from kubernetes.client.rest import ApiException

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(_retryable),
            wait=self._wait,
            stop=tenacity.stop_after_attempt(self.attempts) | tenacity.stop_after_delay(self.max_delay),
            reraise=True,
            before_sleep=self._note_retry,
            sleep=self._sleep,
        )
        try:
            for attempt in retrying:
                with attempt:
                    self.bucket.take()
                    self.calls += 1
                    return fn(*args, **kwargs)
        except ApiException as e:
            if e.status == 403:
                raise BackendError(self.forbidden(verb, resource, api_status(e)[1])) from e
            if e.status == 401:
                raise BackendError(f"the API server rejected kannon's credentials (401) on {verb} {resource}; "
                                   "check the kubeconfig / service account token") from e  # fmt: skip
            if e.status in _RETRYABLE_STATUS:
                raise BackendError(f"the Kubernetes API kept failing on {verb} {resource} (HTTP {e.status}, "
                                   f"{self.attempts} attempts): {api_status(e)[1] or e.reason}") from e  # fmt: skip
            raise
        except Exception as e:
            if _retryable(e):
                raise BackendError(f"cannot reach the Kubernetes API for {verb} {resource} after {self.attempts} "
                                   f"attempts: {type(e).__name__}: {e}") from e  # fmt: skip
            raise
        raise AssertionError("unreachable")  # pragma: no cover - Retrying either returns or raises

    def _note_retry(self, state: Any) -> None:
        self.retries += 1
        exc = state.outcome.exception() if state.outcome else None
        log.info("Kubernetes API call failed (%s); retry %d", getattr(exc, "status", None) or type(exc).__name__,
                 state.attempt_number)  # fmt: skip

    def forbidden(self, verb: str, resource: str, message: str = "") -> str:
        said = f" (API server: {message})" if message else ""
        return (f"permission denied: kannon's service account may not {verb} {resource} in namespace "
                f"{self.namespace!r}{said}. Grant what the backend needs with `kannon k8s rbac --namespace "
                f"{self.namespace} --service-account <name> | kubectl apply -f -`")  # fmt: skip


# -- the executor ---------------------------------------------------------------------------------------------
@dataclass(eq=False)
class _Attempt:
    """One launched (or adopted) Job and what the watches told us about it."""

    launch: Launch
    name: str
    since: float  # monotonic time of create / adoption: the pending deadline counts from here
    job: V1Job | None = None
    uid: str | None = None  # of the Job this attempt created or adopted; None while its create is in flight
    started: bool = False
    busy: bool = False  # a terminal step (finish, fail fast, pending timeout) is running in the pool
    done: bool = False  # Finished emitted
    cancelling: bool = False
    adopted: bool = False
    pod_name: str | None = None
    follower: threading.Thread | None = None
    follow_resp: Any = None
    followed_to_end: bool = False
    notes: list[str] = field(default_factory=list)


class K8sJobExecutor(Executor):
    """Run each bullet attempt as a Kubernetes Job (see the module docstring and docs/kubernetes.md).

    ``template_job``: a ``V1Job``, a dict in API form, or a YAML file path; in a cluster it may be omitted, and the
    master's own pod is copied. ``owner``: ``"auto"`` (in a cluster: the master's Job, else its pod), ``None``, or an
    ownerReference mapping. ``pending_timeout``: seconds an attempt may wait to start before it fails.
    """

    name = "kubernetes"
    default_parallelism = 32

    def __init__(
        self,
        template_job: Any = None,
        namespace: str | None = None,
        api_client: ApiClient | None = None,
        job_prefix: str = "kannon",
        *,
        python: str = "python",
        container: str | None = None,
        owner: Mapping[str, Any] | str | None = "auto",
        ttl_seconds_after_finished: int | None = 3600,
        pending_timeout: float = 300.0,
        inline_spec_limit: int = 32 * 1024,
        gpu_resource: str = "nvidia.com/gpu",
        qps: float = 20.0,
        burst: int = 40,
        watch_timeout: int = 300,
        log_lines: int = 10000,
        in_cluster: bool | None = None,
        master_pod_name: str | None = None,
        cleanup_leftovers: bool = True,
        retry_backoff: float = 0.2,
    ) -> None:
        super().__init__()
        self.python = python
        self.job_prefix = job_prefix
        self.container = container
        self.owner_setting = owner
        self.ttl = ttl_seconds_after_finished
        self.pending_timeout = float(pending_timeout)
        self.inline_spec_limit = int(inline_spec_limit)
        self.gpu_resource = gpu_resource
        self.watch_timeout = int(watch_timeout)
        self.log_lines = int(log_lines)
        self.cleanup_leftovers = cleanup_leftovers
        self.master_pod_name = master_pod_name or os.environ.get("POD_NAME") or os.environ.get("HOSTNAME")
        self.template: dict[str, Any] | None = None if template_job is None else load_template(template_job)
        if self.template is not None:  # refuse a template that cannot work before anything is planned or launched
            template_container(self.template["spec"]["template"]["spec"], container, python)
        self.api_client, self.in_cluster = _client(api_client, in_cluster)
        self.namespace = namespace or _namespace(self.template, self.in_cluster)
        if self.template is None and not self.in_cluster:
            raise BackendError(
                "the Kubernetes backend needs a Job template outside a cluster: pass template_job= (a V1Job, a dict "
                "or a YAML file path; CLI: --job-template FILE). Inside a cluster kannon copies the master's own pod."
            )
        self.api = ApiCaller(self.namespace, qps=qps, burst=burst, backoff=retry_backoff)
        self.owner: dict[str, Any] | None = dict(owner) if isinstance(owner, Mapping) else None
        self._state = threading.RLock()
        self._by_name: dict[str, _Attempt] = {}
        self._by_key: dict[str, _Attempt] = {}
        self._pods: dict[str, dict[str, V1Pod]] = {}  # job name -> pod name -> last seen state (kept after DELETED)
        self._leftovers: dict[str, V1Job] = {}  # task id -> a running Job of an earlier master of this run
        self._early: dict[str, V1Job] = {}  # job name -> its latest state seen while our create was in flight
        self._gone: dict[str, threading.Event] = {}  # job name -> set when the watch sees it deleted
        self._fatal: BackendError | None = None
        self._stop = threading.Event()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._watchers: list[kw.Watcher] = []
        self._ticker: threading.Thread | None = None
        self._batch: Any = None
        self._core: Any = None

    # -- lifecycle ------------------------------------------------------------------------------------------
    def start(self, run: RunInfo, report: Report) -> None:
        from kubernetes import client

        super().start(run, report)
        self._batch = client.BatchV1Api(self.api_client)
        self._core = client.CoreV1Api(self.api_client)
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=8, thread_name_prefix="kannon-k8s")
        if self.in_cluster and (self.template is None or self.owner_setting == "auto"):
            self._inspect_master_pod()
        selector = run_selector(run.run_id)
        ns = self.namespace
        jobs = kw.Watcher(
            "jobs", "V1Job", self.api_client,
            lambda: self.api.call("list", "jobs", self._batch.list_namespaced_job, ns, label_selector=selector),
            lambda rv, t: self._open_watch("jobs", self._batch.list_namespaced_job, selector, rv, t),
            self._on_job, self._on_job_relist, self._on_fatal, self.watch_timeout,
        )  # fmt: skip
        pods = kw.Watcher(
            "pods", "V1Pod", self.api_client,
            lambda: self.api.call("list", "pods", self._core.list_namespaced_pod, ns, label_selector=selector),
            lambda rv, t: self._open_watch("pods", self._core.list_namespaced_pod, selector, rv, t),
            self._on_pod, self._on_pod_relist, self._on_fatal, self.watch_timeout,
        )  # fmt: skip
        from kubernetes.client.rest import ApiException

        try:
            for pod in pods.list():
                self._remember_pod(pod)
            existing = jobs.list()
        except ApiException as e:
            if e.status != 404:
                raise
            raise BackendError(f"namespace {ns!r} does not exist ({api_status(e)[1] or e.reason}): create it, or "
                               "pass namespace= / --namespace") from e  # fmt: skip
        finished: list[str] = []
        for job in existing:
            if kw.job_terminal(job) is not None:
                finished.append(job.metadata.name)
            else:
                self._note_leftover(job)
        self._watchers = [jobs, pods]
        for w in self._watchers:
            w.start()
        if finished and self.cleanup_leftovers:
            log.info("deleting %d finished Job(s) left by an earlier master of run %s", len(finished), run.run_id)
            for name in finished:
                self._pool.submit(self._delete_quietly, name)
        if self._leftovers:
            log.info("found %d running Job(s) of an earlier master of run %s: adopted when their tasks are launched",
                     len(self._leftovers), run.run_id)  # fmt: skip
        self._ticker = threading.Thread(target=self._tick, name="kannon-k8s-deadlines", daemon=True)
        self._ticker.start()

    def close(self) -> None:
        if self._stop.is_set():
            return
        if self._pool is not None and self.live_keys():
            # the core gives up on these (it cancels what it wants stopped first): a Job left running here would
            # never be cleaned, since ttlSecondsAfterFinished only counts once it finishes
            left = self.cancel_all(timeout=30.0)
            if left:
                log.warning("Jobs of %d attempt(s) not confirmed deleted: %s", len(left), ", ".join(left))
        with self._state:
            orphans = [j.metadata.name for j in self._leftovers.values()] if self.cleanup_leftovers else []
            self._leftovers.clear()
        for name in orphans:  # running Jobs of an earlier master whose tasks this run never asked for
            self._delete_quietly(name)
        self._stop.set()
        for w in self._watchers:
            w.stop()
        with self._state:
            followers = [(a.follower, a.follow_resp) for a in self._by_key.values() if a.follower is not None]
        for thread, resp in followers:
            if resp is not None:
                kw.shutdown_response(resp)
            if thread is not None:
                thread.join(2.0)
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
        if self._ticker is not None:
            self._ticker.join(2.0)

    def validate(self, family: str, hints: Hints) -> list[str]:
        problems = job_error_problems(hints, self.gpu_resource)
        try:
            if hints.cpu is not None:
                _cpu_quantity(hints.cpu)
            if hints.memory is not None:
                _memory_quantity(hints.memory)
        except (ValueError, AttributeError) as e:
            problems.append(f"{e} (it becomes the Job's resources.requests/limits)")
        return problems

    def spec_transport(self, size: int) -> SpecTransport:
        # Inline specs travel in the pod's env: one env string must stay well under Linux's 128 KiB per-string
        # exec limit, and thousands of Jobs with big env bloat etcd. Larger specs go through the workspace.
        return "inline" if size <= self.inline_spec_limit else "workspace"

    # -- launch / cancel --------------------------------------------------------------------------------------
    def launch(self, launch: Launch) -> None:
        if self._fatal is not None:
            raise self._fatal
        if self._batch is None or self.template is None:
            raise BackendError("K8sJobExecutor.launch() called before start()")
        with self._state:
            leftover = self._leftovers.pop(launch.task_id, None)
        if leftover is not None:
            self._adopt(launch, leftover, why="left running by an earlier master")
            return
        name = job_name(self.job_prefix, launch.run_id, launch.task_id, launch.attempt, launch.family)
        body = build_job(
            self.template, launch, name=name, namespace=self.namespace, python=self.python, container=self.container,
            owner=self.owner, ttl_seconds=self.ttl, gpu_resource=self.gpu_resource, command=self.command(launch),
        )  # fmt: skip
        self._create(launch, name, body)

    def command(self, launch: Launch) -> list[str]:
        """The container's argv for ``launch`` (the child entrypoint; tests override it to run plain scripts)."""
        return launch.argv(self.python)

    def _create(self, launch: Launch, name: str, body: dict[str, Any], tries: int = 3) -> None:
        from kubernetes.client.rest import ApiException

        attempt = self._register(launch, name)
        try:
            created = self.api.call("create", "jobs", self._batch.create_namespaced_job, self.namespace, body)
            with self._state:
                attempt.uid = created.metadata.uid
                early = self._early.pop(name, None)  # the watch may have been quicker than the create's answer
                if early is not None and early.metadata.uid == attempt.uid:
                    attempt.job = early
            self._evaluate(attempt)
            return
        except ApiException as e:
            if e.status != 409:
                self._unregister(attempt)
                reason, message = api_status(e)
                if e.status == 404:
                    raise BackendError(f"cannot create Jobs in namespace {self.namespace!r}: {message or reason}. "
                                       "Create the namespace or pass namespace=/--namespace") from e  # fmt: skip
                for value in {*launch.env.values(), *launch.hints.env.values()}:
                    if len(value) >= 4:  # the server may echo an invalid value back: env values are never shown
                        message = message.replace(value, "***")
                self.track(launch.key)
                self._finish(attempt, Finished(
                    launch.key, None, f"the API server refused the Job {name} ({e.status} {reason}): {message}",
                    "InvalidJob", where=f"job {name}",
                ))  # fmt: skip
                return
        except BaseException:
            self._unregister(attempt)
            raise
        # 409: a Job of this name exists (a retried create that had landed, or an earlier master's attempt)
        self._unregister(attempt)
        existing = self._read_job(name)
        if existing is None:  # deleted in between: create again
            if tries > 1:
                return self._create(launch, name, body, tries - 1)
            raise BackendError(f"Job {name} keeps appearing and disappearing; is another kannon master running?")
        labels = existing.metadata.labels or {}
        ours = labels.get(LABEL_RUN) == label_value(launch.run_id) and labels.get(LABEL_TASK) == label_value(
            launch.task_id)  # fmt: skip
        if not ours:
            self.track(launch.key)
            self._finish(self._register(launch, name), Finished(
                launch.key, None, f"a Job named {name} already exists and is not kannon's for this task; "
                "choose another job_prefix", "NameConflict", where=f"job {name}",
            ))  # fmt: skip
            return
        terminal = kw.job_terminal(existing)
        if terminal is not None and terminal[0] == "Failed" and tries > 1:
            # an earlier master's failed attempt of the same number: its result is stale, run it again
            self._delete_and_wait(name)
            return self._create(launch, name, body, tries - 1)
        self._adopt(launch, existing, why="created earlier (409 AlreadyExists)")

    def _adopt(self, launch: Launch, job: V1Job, why: str) -> None:
        name = job.metadata.name
        log.info("adopting Job %s for %s %s (%s)", name, launch.family, launch.task_id, why)
        attempt = self._register(launch, name)
        self.track(launch.key)
        with self._state:
            attempt.job = job
            attempt.uid = job.metadata.uid
            attempt.adopted = True
            attempt.notes.append(f"kannon: adopted existing Job {name} ({why})")
        self._evaluate(attempt)

    def _register(self, launch: Launch, name: str) -> _Attempt:
        attempt = _Attempt(launch, name, time.monotonic())
        with self._state:
            self._by_name[name] = attempt
            self._by_key[launch.key] = attempt
        self.track(launch.key)
        return attempt

    def _unregister(self, attempt: _Attempt) -> None:
        with self._state:
            self._early.pop(attempt.name, None)
            if self._by_name.get(attempt.name) is attempt:
                del self._by_name[attempt.name]
            if self._by_key.get(attempt.launch.key) is attempt:
                del self._by_key[attempt.launch.key]
        with self._cond:  # not launched after all: cancel_all() must not wait for it
            self._live.discard(attempt.launch.key)
            self._cond.notify_all()

    def cancel(self, key: str) -> None:
        with self._state:
            attempt = self._by_key.get(key)
            if attempt is None or attempt.done or attempt.busy or attempt.cancelling:
                return
            attempt.cancelling = True
        if not self._delete(attempt.name):  # already gone: nothing will be watched
            self._finish(attempt, self._cancelled(attempt))

    def cancel_all(self, timeout: float = 30.0) -> list[str]:
        keys = self.live_keys()
        if self._pool is not None and len(keys) > 1:
            # deletes in parallel (still under the rate limit); one failure must not stop the others
            for key, error in zip(keys, self._pool.map(self._try_cancel, keys), strict=True):
                if error is not None:
                    log.warning("cancel of %s failed: %s", key, error)
        return super().cancel_all(timeout)

    def _try_cancel(self, key: str) -> Exception | None:
        try:
            self.cancel(key)
        except Exception as e:
            return e
        return None

    def _cancelled(self, attempt: _Attempt) -> Finished:
        return Finished(attempt.launch.key, None, "cancelled: the Job was deleted by kannon", "Cancelled",
                        log_tail=tail_lines(attempt.launch.log_path), where=f"job {attempt.name}")  # fmt: skip

    # -- API helpers ------------------------------------------------------------------------------------------
    def _open_watch(self, resource: str, fn: Callable[..., Any], selector: str, rv: str | None, timeout: int) -> Any:
        kwargs: dict[str, Any] = {"label_selector": selector, "watch": True, "allow_watch_bookmarks": True,
                                  "timeout_seconds": timeout, "_preload_content": False,
                                  "_request_timeout": (10, timeout + 30)}  # fmt: skip
        if rv:
            kwargs["resource_version"] = rv
        return self.api.call("watch", resource, fn, self.namespace, **kwargs)

    def _read_job(self, name: str) -> V1Job | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.api.call("get", "jobs", self._batch.read_namespaced_job, name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _delete(self, name: str) -> bool:
        """Delete a Job and its pods (Background); False when it was already gone."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        with self._state:
            self._gone.setdefault(name, threading.Event())
        try:
            self.api.call("delete", "jobs", self._batch.delete_namespaced_job, name, self.namespace,
                          body=client.V1DeleteOptions(propagation_policy="Background"))  # fmt: skip
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def _delete_and_wait(self, name: str, timeout: float = 60.0) -> None:
        with self._state:
            gone = self._gone.setdefault(name, threading.Event())
        if not self._delete(name):
            with self._state:
                self._gone.pop(name, None)
        elif not gone.wait(timeout):
            raise BackendError(f"Job {name} was not gone {timeout:.0f} s after deleting it (finalizers?)")

    def _delete_quietly(self, name: str) -> None:
        try:
            self._delete(name)
        except Exception as e:  # cleanup is best effort: TTL removes what is left
            log.warning("could not delete Job %s: %s", name, e)

    def _list_job_pods(self, name: str) -> list[V1Pod]:
        result = self.api.call("list", "pods", self._core.list_namespaced_pod, self.namespace,
                               label_selector=f"job-name={name}")  # fmt: skip
        return list(result.items or [])

    def _inspect_master_pod(self) -> None:
        """In a cluster: read the master's own pod for the child template and the ownerReference."""
        from kubernetes.client.rest import ApiException

        if not self.master_pod_name:
            if self.template is None:
                raise BackendError("in a cluster without a Job template kannon copies the master's pod, but neither "
                                   "POD_NAME nor HOSTNAME names it; pass template_job= or set POD_NAME via the "
                                   "downward API")  # fmt: skip
            return
        try:
            pod = self.api.call("get", "pods", self._core.read_namespaced_pod, self.master_pod_name, self.namespace)
        except ApiException as e:
            if self.template is None or e.status != 404:
                raise BackendError(f"cannot read the master pod {self.master_pod_name!r} in namespace "
                                   f"{self.namespace!r} ({e.status}); pass template_job= instead") from e  # fmt: skip
            return
        if self.template is None:
            self.template = template_from_pod(pod, self.api_client, self.container)
        if self.owner_setting == "auto":
            self.owner = owner_reference(pod)

    # -- watch events -----------------------------------------------------------------------------------------
    def _note_leftover(self, job: V1Job) -> None:
        task = (job.metadata.annotations or {}).get(ANNOTATION_TASK) or (job.metadata.labels or {}).get(LABEL_TASK)
        if not task:
            return
        current = self._leftovers.get(task)
        attempt = int((job.metadata.labels or {}).get(LABEL_ATTEMPT, "0") or 0)
        if current is None or attempt >= int((current.metadata.labels or {}).get(LABEL_ATTEMPT, "0") or 0):
            if current is not None and self.cleanup_leftovers and self._pool is not None:
                self._pool.submit(self._delete_quietly, current.metadata.name)
            self._leftovers[task] = job

    def _on_job(self, kind: str, job: V1Job) -> None:
        name = job.metadata.name
        with self._state:
            attempt = self._by_name.get(name)
            if kind == "DELETED":
                gone = self._gone.pop(name, None)
                if gone is not None:
                    gone.set()
                for task, left in list(self._leftovers.items()):
                    if left.metadata.name == name:
                        del self._leftovers[task]
                self._early.pop(name, None)
                if attempt is not None and attempt.uid == job.metadata.uid:
                    self._deleted(attempt)
                return
            if attempt is not None and attempt.uid is None:
                # Our create has not answered yet: this may be our Job, or an earlier Job of the same name (a
                # rerun reuses names). Keep it; the create's answer (its uid) decides.
                self._early[name] = job
                return
            if attempt is not None and attempt.uid != job.metadata.uid:
                return  # an earlier Job of the same name (a previous master's attempt), not this attempt's
            if attempt is None:
                left_task = (job.metadata.annotations or {}).get(ANNOTATION_TASK)
                if left_task and left_task in self._leftovers and kw.job_terminal(job) is not None:
                    del self._leftovers[left_task]  # finished by itself before anyone asked for it
                return
            attempt.job = job
        self._evaluate(attempt)

    def _deleted(self, attempt: _Attempt) -> None:
        with self._state:
            if attempt.done or attempt.busy:
                return  # a finish step owns the attempt, or it is over (TTL cleanup)
            cancelling = attempt.cancelling
            attempt.busy = True
        if cancelling:
            self._finish(attempt, self._cancelled(attempt))
            return
        self._finish(attempt, Finished(
            attempt.launch.key, None,
            f"the Job {attempt.name} was deleted by someone else before it finished (kubectl delete, a namespace "
            "cleanup, or the owner's garbage collection)", "JobDeleted",
            log_tail=tail_lines(attempt.launch.log_path), where=f"job {attempt.name}",
        ))  # fmt: skip

    def _on_job_relist(self, jobs: list[V1Job]) -> None:
        present = {j.metadata.name: j for j in jobs}
        with self._state:
            missing = [a for n, a in self._by_name.items() if not a.done and (
                n not in present or (a.uid is not None and present[n].metadata.uid != a.uid))]  # fmt: skip
            for name in [n for n in self._gone if n not in present]:
                self._gone.pop(name).set()
        for job in jobs:
            self._on_job("MODIFIED", job)
        for attempt in missing:  # deleted while no stream was open
            if attempt.job is not None or attempt.cancelling:
                self._deleted(attempt)

    def _remember_pod(self, pod: V1Pod) -> str | None:
        name = job_of_pod(pod)
        if name is None:
            return None
        with self._state:
            attempt = self._by_name.get(name)
            if attempt is not None and attempt.done:
                return None  # late events of a finished attempt: keep nothing
            self._pods.setdefault(name, {})[pod.metadata.name] = pod
        return name

    def _pods_of(self, name: str, uid: str | None = None) -> list[V1Pod]:
        """The pods of Job ``name`` (of the Job with ``uid`` only: an earlier Job of that name had pods too)."""
        with self._state:
            pods = [p for p in self._pods.get(name, {}).values() if uid is None or _owned_by(p, uid)]
        return sorted(pods, key=kw.created)

    def _on_pod(self, kind: str, pod: V1Pod) -> None:
        name = self._remember_pod(pod)
        if name is None:
            return
        with self._state:
            attempt = self._by_name.get(name)
        if attempt is not None:
            self._evaluate(attempt)

    def _on_pod_relist(self, pods: list[V1Pod]) -> None:
        for pod in pods:
            self._on_pod("MODIFIED", pod)

    def _on_fatal(self, error: BackendError) -> None:
        """A watch cannot go on (permission lost, API gone): fail what is running, refuse new launches."""
        self._fatal = error
        log.error("%s", error)
        with self._state:
            live = [a for a in self._by_key.values() if not a.done and not a.busy]
            for a in live:
                a.busy = True
        for a in live:
            self._finish(a, Finished(a.launch.key, None, str(error), "BackendError", where=f"job {a.name}"))

    def _evaluate(self, attempt: _Attempt) -> None:
        """Decide what the latest Job/pod state means for an attempt (called from watch threads)."""
        start_follow = False
        step: Callable[[], None] | None = None
        with self._state:
            if attempt.done or attempt.busy or attempt.cancelling or attempt.uid is None:
                return  # (no uid: the create has not answered yet; its answer evaluates)
            pods = self._pods_of(attempt.name, attempt.uid)
            running = [p for p in pods if kw.pod_started(p, self.container)]
            pod = pods[-1] if pods else None
            if running and not attempt.started:
                attempt.started = True
                attempt.pod_name = running[0].metadata.name
                start_follow = bool(self.run and self.run.follow_logs)
                # under the lock, so that no Finished (emitted after taking it) can overtake this Started
                self.emit(Started(attempt.launch.key, where=_where(attempt)))
            job = attempt.job
            if job is not None and kw.job_terminal(job) is not None:
                attempt.busy = True
                step = lambda: self._finish_terminal(attempt)  # noqa: E731
            elif pod is not None and (fast := kw.fail_fast(pod, self.python)) is not None:
                attempt.busy = True
                step = lambda: self._fail_and_delete(attempt, fast, pod)  # noqa: E731
        if start_follow:
            self._start_follower(attempt)
        if step is not None and self._pool is not None:
            self._submit(step)

    def _submit(self, step: Callable[[], None]) -> None:
        assert self._pool is not None
        with contextlib.suppress(RuntimeError):  # pool shut down (close() raced a late event): nobody to tell
            self._pool.submit(step)

    def _tick(self) -> None:
        """Local deadlines only (no API calls): attempts not started within pending_timeout."""
        interval = max(0.05, min(1.0, self.pending_timeout / 4))
        while not self._stop.wait(interval):
            now = time.monotonic()
            due: list[_Attempt] = []
            with self._state:
                for a in self._by_key.values():
                    if not (a.done or a.busy or a.cancelling or a.started) and now - a.since >= self.pending_timeout:
                        a.busy = True
                        due.append(a)
            for a in due:
                pods = self._pods_of(a.name, a.uid)
                pod = pods[-1] if pods else None
                outcome = kw.classify_pending(pod, now - a.since)
                self._submit(functools.partial(self._fail_and_delete, a, outcome, pod))

    # -- terminal steps (run in the pool) -------------------------------------------------------------------
    def _fail_and_delete(self, attempt: _Attempt, outcome: kw.Outcome, pod: V1Pod | None) -> None:
        try:
            self._delete(attempt.name)
        except Exception as e:
            attempt.notes.append(f"kannon: could not delete Job {attempt.name}: {e}")
        lines = [*attempt.notes, f"kannon: {outcome.failure_class}: {outcome.reason}"]
        self._write_log(attempt, lines, append=True)
        where = f"pod {pod.metadata.name}" if pod is not None else f"job {attempt.name}"
        self._finish(attempt, Finished(attempt.launch.key, outcome.exit_code, outcome.reason, outcome.failure_class,
                                       outcome.infra, tuple(lines[-20:]), where))  # fmt: skip

    def _finish_terminal(self, attempt: _Attempt) -> None:
        try:
            job = attempt.job
            assert job is not None
            terminal = kw.job_terminal(job)
            complete = terminal is not None and terminal[0] == "Complete"
            pods = {p.metadata.name: p for p in self._pods_of(attempt.name, attempt.uid)}
            pod = kw.succeeded(pods.values()) if complete else kw.culprit(pods.values(), self.container)
            if pod is None or (not complete and not kw.pod_final(pod, self.container)):
                # the pods' last states travel on the other stream and may lag: read them once (failures only; for a
                # success the pod's name is all the log read needs). Cached states of deleted pods are kept.
                pods.update({p.metadata.name: p for p in self._list_job_pods(attempt.name)
                             if attempt.uid is None or _owned_by(p, attempt.uid)})  # fmt: skip
                pod = kw.succeeded(pods.values()) if complete else kw.culprit(pods.values(), self.container)
            if pod is not None and not attempt.started:
                attempt.started = True
                attempt.pod_name = pod.metadata.name
                if kw.pod_started(pod, self.container):
                    self.emit(Started(attempt.launch.key, where=_where(attempt)))
            tail = self._collect_log(attempt, pod)
            where = f"pod {pod.metadata.name}" if pod is not None else f"job {attempt.name}"
            if complete:
                self._finish(attempt, Finished(attempt.launch.key, 0, log_tail=tail, where=where))
                return
            outcome = kw.classify_failure(job, pod, self.container, self.python, tail)
            self._finish(attempt, Finished(attempt.launch.key, outcome.exit_code, outcome.reason,
                                           outcome.failure_class, outcome.infra, tail, where))  # fmt: skip
        except Exception as e:  # never leave an attempt without its Finished
            log.exception("finishing Job %s failed", attempt.name)
            why = f"kannon could not read the result of Job {attempt.name}: {e}"
            self._finish(attempt, Finished(attempt.launch.key, None, why, "BackendError", where=f"job {attempt.name}"))

    def _finish(self, attempt: _Attempt, finished: Finished) -> None:
        with self._state:
            if attempt.done:
                return
            attempt.done = True
            self._pods.pop(attempt.name, None)
            resp = attempt.follow_resp
        if resp is not None:
            kw.shutdown_response(resp)
        self.emit(finished)

    # -- logs -----------------------------------------------------------------------------------------------
    def _collect_log(self, attempt: _Attempt, pod: V1Pod | None) -> tuple[str, ...]:
        """The attempt's log: from the live follower if it read to the end, else one read of the pod log."""
        if attempt.follower is not None:
            attempt.follower.join(10.0)
            if attempt.followed_to_end:
                return tail_lines(attempt.launch.log_path)
        if pod is None:
            self._write_log(attempt, [*attempt.notes, "kannon: no pod was found for this Job"])
            return ()
        text = self._read_log(pod)
        lines = text.splitlines() if text is not None else ["kannon: the pod's log could not be read"]
        self._write_log(attempt, [*attempt.notes, *lines])
        return tuple(lines[-20:])

    def _read_log(self, pod: V1Pod) -> str | None:
        from kubernetes.client.rest import ApiException

        kwargs: dict[str, Any] = {"tail_lines": self.log_lines, "_preload_content": False,
                                  "_request_timeout": (10, 60)}  # fmt: skip
        if self.container:
            kwargs["container"] = self.container
        try:
            # _preload_content=False: kubernetes 36.0.x returns the repr of the bytes otherwise (client bug #2596)
            resp = self.api.call("get", "pods/log", self._core.read_namespaced_pod_log, pod.metadata.name,
                                 self.namespace, **kwargs)  # fmt: skip
            try:
                data: bytes = resp.data
            finally:
                resp.release_conn()
            return data.decode("utf-8", "replace")
        except ApiException as e:  # 400: container never started; 404: pod already gone
            log.info("no log for pod %s: %s %s", pod.metadata.name, e.status, api_status(e)[1])
            return None
        except BackendError as e:
            log.warning("%s", e)
            return None

    def _write_log(self, attempt: _Attempt, lines: Iterable[str], append: bool = False) -> None:
        path = attempt.launch.log_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a" if append else "w", encoding="utf-8") as f:
                for line in lines:
                    f.write(line + "\n")
        except OSError as e:
            log.warning("cannot write %s: %s", path, e)

    def _start_follower(self, attempt: _Attempt) -> None:
        thread = threading.Thread(target=self._follow, args=(attempt,), daemon=True,
                                  name=f"kannon-k8s-log-{attempt.name}")  # fmt: skip
        attempt.follower = thread
        thread.start()

    def _follow(self, attempt: _Attempt) -> None:
        """Stream the pod's log live as LogLine events (one follow request per running pod)."""
        kwargs: dict[str, Any] = {"follow": True, "_preload_content": False, "_request_timeout": (10, None)}
        if self.container:
            kwargs["container"] = self.container
        try:
            resp = self.api.call("get", "pods/log", self._core.read_namespaced_pod_log, attempt.pod_name,
                                 self.namespace, **kwargs)  # fmt: skip
        except Exception as e:
            log.info("cannot follow the log of %s: %s", attempt.pod_name, e)
            return
        with self._state:
            attempt.follow_resp = resp
            done = attempt.done
        if done:
            kw.shutdown_response(resp)
            return
        try:
            attempt.launch.log_path.parent.mkdir(parents=True, exist_ok=True)
            with attempt.launch.log_path.open("w", encoding="utf-8") as f:
                for line in attempt.notes:
                    f.write(line + "\n")
                for line in kw.iter_lines(resp):
                    f.write(line + "\n")
                    f.flush()
                    self.emit(LogLine(attempt.launch.key, line))
            attempt.followed_to_end = not attempt.done
        except Exception as e:  # interrupted (finish, close, connection reset): the final read covers it
            log.debug("log follow of %s ended: %s", attempt.pod_name, e)
        finally:
            with contextlib.suppress(Exception):
                resp.release_conn()


# -- helpers --------------------------------------------------------------------------------------------------
def _owned_by(pod: V1Pod, uid: str) -> bool:
    """A pod of the Job with ``uid`` (a rerun reuses Job names, and with them the pods' job-name label)."""
    return any(ref.uid == uid for ref in pod.metadata.owner_references or [])


def _where(attempt: _Attempt) -> str:
    return f"pod {attempt.pod_name}" + (" (adopted)" if attempt.adopted else "")


def job_of_pod(pod: V1Pod) -> str | None:
    for ref in pod.metadata.owner_references or ():
        if ref.kind == "Job":
            return str(ref.name)
    labels = pod.metadata.labels or {}
    name = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    return None if name is None else str(name)


def owner_reference(pod: V1Pod) -> dict[str, Any]:
    """The master pod's controlling Job if it has one (children then survive a restart of the master's pod and can
    be re-attached), else the pod itself. Deleting the owner garbage-collects every child Job."""
    for ref in pod.metadata.owner_references or ():
        if ref.kind == "Job" and ref.controller:
            return {"apiVersion": ref.api_version or "batch/v1", "kind": "Job", "name": ref.name, "uid": ref.uid}
    return {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "uid": pod.metadata.uid}


def _in_cluster_env() -> bool:
    return bool(os.environ.get("KUBERNETES_SERVICE_HOST")) and (SERVICEACCOUNT_DIR / "token").is_file()


def _client(api_client: ApiClient | None, in_cluster: bool | None) -> tuple[ApiClient, bool]:
    """The API client: the one given, else in-cluster config, else the kubeconfig (``KUBECONFIG``)."""
    from kubernetes import client, config

    if api_client is not None:
        return api_client, bool(in_cluster)
    if in_cluster is not False and _in_cluster_env():
        cfg = client.Configuration()
        config.load_incluster_config(client_configuration=cfg)
        cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize, 32)
        return client.ApiClient(cfg), True
    cfg = client.Configuration()
    try:
        # KUBECONFIG read now: the client reads it once at import time
        config.load_kube_config(config_file=os.environ.get("KUBECONFIG") or None, client_configuration=cfg)
    except Exception as e:  # ConfigException, a missing file, a malformed one
        raise BackendError(
            "no Kubernetes API to talk to: not inside a cluster, and no usable kubeconfig "
            f"({type(e).__name__}: {e}). Set KUBECONFIG, or pass api_client=kubernetes.client.ApiClient(...)"
        ) from e
    cfg.connection_pool_maxsize = max(cfg.connection_pool_maxsize, 32)
    return client.ApiClient(cfg), False


def _namespace(template: Mapping[str, Any] | None, in_cluster: bool) -> str:
    """Namespace: template > in-cluster namespace file > kubeconfig context > "default" (the argument wins first)."""
    ns = ((template or {}).get("metadata") or {}).get("namespace")
    if ns:
        return str(ns)
    if in_cluster:
        with contextlib.suppress(OSError):
            text = (SERVICEACCOUNT_DIR / "namespace").read_text().strip()
            if text:
                return text
    try:
        from kubernetes import config

        _, active = config.list_kube_config_contexts(config_file=os.environ.get("KUBECONFIG") or None)
        ns = (active or {}).get("context", {}).get("namespace")
    except Exception:  # no kubeconfig: fine when an api_client was given
        ns = None
    return str(ns) if ns else "default"


# -- construction from Python, the legacy constructor and the CLI ---------------------------------------------
def make_executor(*, legacy: bool = False, **kwargs: Any) -> K8sJobExecutor:
    """The ``kubernetes`` backend factory; ``legacy=True`` takes kannon 0.1.x's ``Kannon(...)`` arguments."""
    if legacy:
        return _from_legacy(**kwargs)
    return K8sJobExecutor(**kwargs)


def _from_legacy(
    api_instance: Any = None,
    template_job: Any = None,
    job_prefix: str = "kannon",
    path_child_script: str | None = None,
    master_pod_name: str | None = None,
    master_pod_uid: str | None = None,
    dynamic_config_paths: Iterable[str] | None = None,
    **rest: Any,
) -> K8sJobExecutor:
    """kannon 0.1.x: ``Kannon(api_instance, template_job, job_prefix, path_child_script, env_to_inherit,
    master_pod_name, master_pod_uid, dynamic_config_paths, max_child_jobs)`` (the core handles the env/parallelism
    ones). ``path_child_script`` is ignored: children run ``python -m kannon run-task``. ``dynamic_config_paths``
    are added to the master's luigi config, which kannon ships to every child."""
    if path_child_script is not None:
        log.info("path_child_script=%r is ignored: kannon children no longer need a child script", path_child_script)
    for path in dynamic_config_paths or ():
        if not str(path).endswith(".ini"):
            raise ValueError(f"dynamic config {path!r}: only .ini luigi config files are supported")
        if not Path(path).is_file():
            raise FileNotFoundError(f"dynamic config {path!r} does not exist")
        import luigi.configuration

        luigi.configuration.LuigiConfigParser.add_config_path(str(path))
    owner: Any = "auto"
    if master_pod_name and master_pod_uid:
        owner = {"apiVersion": "v1", "kind": "Pod", "name": master_pod_name, "uid": master_pod_uid}
    api_client = getattr(api_instance, "api_client", None)
    return K8sJobExecutor(template_job=template_job, api_client=api_client, job_prefix=job_prefix, owner=owner,
                          master_pod_name=master_pod_name, **rest)  # fmt: skip


def add_options(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--job-template", dest="k8s_job_template", metavar="FILE",
                       help="kubernetes: YAML file with the child Job template (default in a cluster: copy the "
                       "master's pod)")  # fmt: skip
    group.add_argument("--namespace", dest="k8s_namespace", metavar="NS",
                       help="kubernetes: namespace for the Jobs (default: template, in-cluster namespace, "
                       "kubeconfig context)")  # fmt: skip
    group.add_argument("--job-prefix", dest="k8s_job_prefix", default="kannon", metavar="PREFIX",
                       help="kubernetes: prefix of the Job names (default: kannon)")  # fmt: skip
    group.add_argument("--pending-timeout", dest="k8s_pending_timeout", type=float, default=300.0, metavar="S",
                       help="kubernetes: fail an attempt whose pod has not started after S seconds (default: 300)")
    group.add_argument("--job-ttl", dest="k8s_job_ttl", type=int, default=3600, metavar="S",
                       help="kubernetes: ttlSecondsAfterFinished of the Jobs (default: 3600)")  # fmt: skip
    group.add_argument("--k8s-python", dest="k8s_python", default="python", metavar="PATH",
                       help="kubernetes: the interpreter in the image (default: python)")  # fmt: skip
    group.add_argument("--k8s-qps", dest="k8s_qps", type=float, default=20.0, metavar="N",
                       help="kubernetes: client-side API rate limit, requests per second (default: 20)")


def from_options(ns: argparse.Namespace) -> K8sJobExecutor:
    return K8sJobExecutor(
        template_job=getattr(ns, "k8s_job_template", None),
        namespace=getattr(ns, "k8s_namespace", None),
        job_prefix=getattr(ns, "k8s_job_prefix", None) or "kannon",
        pending_timeout=getattr(ns, "k8s_pending_timeout", None) or 300.0,
        ttl_seconds_after_finished=getattr(ns, "k8s_job_ttl", 3600),
        python=getattr(ns, "k8s_python", None) or "python",
        qps=getattr(ns, "k8s_qps", None) or 20.0,
    )


@hookimpl
def kannon_backends() -> list[BackendSpec]:
    from kannon.plugins import BackendSpec

    return [
        BackendSpec(
            name="kubernetes",
            factory=make_executor,
            description="each bullet attempt is a Kubernetes Job (kubeconfig or in-cluster)",
            add_options=add_options,
            from_options=from_options,
        )
    ]


__all__ = [
    "RBAC_RULES",
    "ApiCaller",
    "K8sJobExecutor",
    "TokenBucket",
    "build_job",
    "job_name",
    "label_value",
    "load_template",
    "make_executor",
    "render_rbac",
    "template_from_pod",
]
