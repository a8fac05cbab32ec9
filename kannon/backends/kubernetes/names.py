"""Names, labels and annotations of the run's Jobs: deterministic, valid, and readable in ``kubectl get jobs``."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from kannon.backends.base import Launch

if TYPE_CHECKING:
    from kubernetes.client import V1Pod

LABEL_RUN = "kannon.io/run-id"
LABEL_TASK = "kannon.io/task-id"
LABEL_FAMILY = "kannon.io/family"
LABEL_ATTEMPT = "kannon.io/attempt"
ANNOTATION_TASK = "kannon.io/task-id"
ANNOTATION_FAMILY = "kannon.io/family"
ANNOTATION_RUN = "kannon.io/run-id"
ANNOTATION_KEY = "kannon.io/launch-key"
#: hash of what the Job runs (image, command, resources, ...): a re-attaching master adopts only an equal one
ANNOTATION_SPEC_HASH = "kannon.io/spec-hash"
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")

def _digest(*parts: str, n: int = 10) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:n]

def label_value(text: str) -> str:
    """``text`` as a valid label value (≤ 63 chars); changed or shortened values keep a hash of the original."""
    if len(text) <= 63 and LABEL_VALUE.match(text):
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
    labels = {k: label_value(v) for k, v in launch.labels.items() if LABEL_KEY.match(k) and len(k) <= 253}
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

def owned_by(pod: V1Pod, uid: str) -> bool:
    """A pod of the Job with ``uid`` (a rerun reuses Job names, and with them the pods' job-name label)."""
    return any(ref.uid == uid for ref in pod.metadata.owner_references or [])

def job_of_pod(pod: V1Pod) -> str | None:
    for ref in pod.metadata.owner_references or ():
        if ref.kind == "Job":
            return str(ref.name)
    labels = pod.metadata.labels or {}
    name = labels.get("batch.kubernetes.io/job-name") or labels.get("job-name")
    return None if name is None else str(name)

