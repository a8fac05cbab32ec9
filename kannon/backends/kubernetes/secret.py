"""The run's Secret: how :attr:`RunInfo.secrets` reach every child Job without travelling in clear text.

Anyone allowed to ``get jobs`` or ``get pods`` reads plain ``env`` values (and etcd keeps them for the Job's TTL);
Secret read access is usually much narrower. So the backend writes the run's secret values once, into one
``core/v1`` Secret per run (kubernetes.io/docs/concepts/configuration/secret/), and every child container names
them with ``env[].valueFrom.secretKeyRef`` (kubernetes.io/docs/tasks/inject-data-application/
distribute-credentials-secure/). Per-name references rather than ``envFrom``: ``env`` entries override ``envFrom``
ones, but a per-name entry is simply left out when ``Launch.env`` (a ``Hints.env`` value) names the same variable,
so the hint wins without any reliance on precedence, and the template's own entries of that name are replaced.

Lifetime: created in ``start()`` before anything launches (a 403 is then a clear :class:`BackendError`), labelled
with the run id like the Jobs (``kubectl get secrets -l kannon.io/run-id=...``), owned by the master (pod or Job)
in a cluster so the garbage collector removes it with the master, replaced on a 409 (a re-attaching master of the
same run writes this invocation's values), deleted in ``close()``; a differently named Secret of the same run (an
earlier master with another ``job_prefix``) is swept at ``start()``. A pod reads the values when its container
starts, so replacing or deleting the Secret never changes a running child.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kannon.backends.base import BackendError
from kannon.backends.kubernetes.names import LABEL_RUN, dns_label, label_value
from kannon.backends.kubernetes.runobject import RunObject

if TYPE_CHECKING:
    pass

log = logging.getLogger("kannon.kubernetes")

_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")  # a valid Secret data key (validation.IsConfigMapKey)


def secret_name(prefix: str, run_id: str) -> str:
    """``<prefix>-<hash(run)>-env``: a DNS-1123 name, the same for every master of the run."""
    head = dns_label(prefix)[:24].strip("-") or "kannon"
    return f"{head}-{hashlib.sha256(run_id.encode()).hexdigest()[:12]}-env"


def secret_labels(run_id: str) -> dict[str, str]:
    return {LABEL_RUN: label_value(run_id), "app.kubernetes.io/managed-by": "kannon"}


def secret_body(name: str, namespace: str, run_id: str, values: Mapping[str, str],
                owner: Mapping[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    bad = sorted(k for k in values if not _KEY.match(k))
    if bad:
        raise BackendError(f"environment variable name(s) {', '.join(map(repr, bad))} cannot be a Kubernetes Secret "
                           "key (letters, digits, '-', '_', '.'): rename them in env_to_inherit")  # fmt: skip
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": secret_labels(run_id)}
    if owner:
        meta["ownerReferences"] = [dict(owner)]
    data = {k: base64.b64encode(v.encode()).decode() for k, v in values.items()}
    return {"apiVersion": "v1", "kind": "Secret", "metadata": meta, "type": "Opaque", "data": data}


def env_refs(name: str, keys: list[str]) -> list[dict[str, Any]]:
    """A container env entry per key, each a ``secretKeyRef`` into the Secret ``name`` (never the value)."""
    return [{"name": key, "valueFrom": {"secretKeyRef": {"name": name, "key": key}}} for key in keys]


class RunSecret(RunObject):
    """The run's Secret: :meth:`put` once in ``start()`` (an existing one, a re-attaching master's, is replaced by
    this run's values), :meth:`delete` in ``close()``."""

    resource, kind, title, replace_existing = "secrets", "secret", "Secret", True
