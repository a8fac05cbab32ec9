"""Admission-controlled clusters: a queued Job is not a stuck Job.

* Kueue (https://kueue.sigs.k8s.io/docs/concepts/): a Job labelled ``kueue.x-k8s.io/queue-name`` is created with
  ``spec.suspend: true`` and stays so, without pods, until its Workload is admitted (possibly an hour later); a
  preemption suspends it again (its pods are deleted) and requeues it. kannon calls such an attempt *queued by
  admission*: its ``pending_timeout`` counts from admission (the unsuspend), and a re-suspended Job is queued again.
  Why it waits is the Workload's ``QuotaReserved`` condition message, read when RBAC allows (``list`` on
  ``workloads.kueue.x-k8s.io``; optional, see ``kannon k8s rbac``).
  But kannon's Jobs have ``backoffLimit: 0``, and the upstream Job controller counts a pod deleted by the suspension
  as failed (``isPodFailed``: a deletionTimestamp on a pod that did not succeed; no exception for suspended Jobs in
  ``syncJob``), so a preempted running Job ends ``Failed``/``BackoffLimitExceeded`` at once. kannon reports that as
  ``Preempted``, an infrastructure failure: the core runs the task again in a new Job without spending its retries.
* ResourceQuota (https://kubernetes.io/docs/concepts/policy/resource-quotas/): the Job exists but the Job controller's
  pod creation is refused (a ``FailedCreate`` Warning event on the Job, "exceeded quota"); the controller retries by
  itself when capacity frees. kannon keeps waiting (never a second Job) up to ``pending_timeout`` and then says so
  with the quota's message.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kannon.backends.kubernetes.classify import Outcome
    from kubernetes.client import V1Job

log = logging.getLogger("kannon.kubernetes")

QUEUE_LABEL = "kueue.x-k8s.io/queue-name"
WORKLOADS = ("kueue.x-k8s.io", "v1beta1", "workloads")


def template_queue(template: Mapping[str, Any] | None) -> str | None:
    """The Kueue LocalQueue the template's Job labels name, if any."""
    labels = ((template or {}).get("metadata") or {}).get("labels") or {}
    value = labels.get(QUEUE_LABEL)
    return str(value) if value else None


def label_queue(body: dict[str, Any], queue: str | None) -> None:
    """Put the queue label on a Job body (an explicit queue wins over the template's)."""
    if queue:
        body.setdefault("metadata", {}).setdefault("labels", {})[QUEUE_LABEL] = queue


def suspended(job: V1Job | None) -> bool:
    """Held back by admission: ``spec.suspend`` is true and the Job has not finished."""
    return bool(job is not None and job.spec is not None and job.spec.suspend)


def preempted_outcome(reason: str | None) -> Outcome:
    """How a Job that failed while suspended by its queue ends: preempted, retried without spending a retry."""
    from kannon.backends.kubernetes import classify

    return classify.Outcome(
        None, "preempted by the admission queue (Kueue suspended the running Job; the Job controller counted its "
        f"deleted pod against backoffLimit 0: {reason or 'Failed'}); run again in a new Job without spending the "
        "task's retries", "Preempted", infra=True)  # fmt: skip


def workload_reason(workloads: Mapping[str, Any]) -> str | None:
    """Why a queued Job waits, from the list of its Workloads: the QuotaReserved/Evicted message; None while there is
    none yet (Kueue creates the Workload, and then decides, after the Job exists)."""
    for wl in workloads.get("items") or []:
        conds = {c.get("type"): c for c in (wl.get("status") or {}).get("conditions") or []}
        for ctype in ("Evicted", "QuotaReserved"):
            c = conds.get(ctype)
            if c and c.get("message") and (ctype != "Evicted" or c.get("status") == "True"):
                return f"{wl['metadata']['name']}: {c.get('reason') or ctype}: {c['message']}"
    return None


def quota_refusal(events: list[Any]) -> str | None:
    """The latest ``FailedCreate`` "exceeded quota" message among a Job's Events, if any."""
    refused = [e for e in events if e.reason == "FailedCreate" and "exceeded quota" in (e.message or "")]
    return refused[-1].message if refused else None
