"""The Kubernetes backend: each bullet attempt is one ``batch/v1`` Job (see docs/kubernetes.md for the user's view).

The package, one part per module:

* :mod:`.names` — Job names, labels, annotations; :mod:`.manifest` — the Job body from a template and the hints;
* :mod:`.api` — the client, and the one caller every request goes through (rate limit, tenacity retries, 403 →
  a BackendError naming the permission); :mod:`.rbac` — the Role those requests need;
* :mod:`.watch` — list+watch loops; :mod:`.classify` — what a finished or stuck pod means;
* :mod:`.attempt` — an attempt's state machine; :mod:`.tracker` — watch events → attempt steps; :mod:`.jobcalls` —
  reads and deletes by name; :mod:`.pending` — the pending deadline; :mod:`.create` — create or adopt a Job;
  :mod:`.logs` — pod logs; :mod:`.ownership` — the master pod and the Jobs' owner; :mod:`.executor` —
  :class:`K8sJobExecutor`; :mod:`.lease` — the run lease (one master per run);
* :mod:`.compat` — the factory with kannon 0.1.x's arguments, and the CLI options.

This package is loaded by the plugin registry on every ``kannon`` start and every build, whichever backend is used:
its names load on first use (kannon.lazy), and the ``kubernetes`` package and PyYAML are imported inside functions
(tests/unit/test_plugins_startup.py checks both).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kannon import lazy
from kannon.hookspecs import hookimpl

if TYPE_CHECKING:
    from kannon.backends.kubernetes.api import ApiCaller, TokenBucket, api_status
    from kannon.backends.kubernetes.compat import make_executor
    from kannon.backends.kubernetes.executor import K8sJobExecutor
    from kannon.backends.kubernetes.manifest import (
        build_job,
        job_error_problems,
        load_template,
        owner_reference,
        template_from_pod,
    )
    from kannon.backends.kubernetes.names import (
        ANNOTATION_FAMILY,
        ANNOTATION_KEY,
        ANNOTATION_RUN,
        ANNOTATION_SPEC_HASH,
        ANNOTATION_TASK,
        LABEL_ATTEMPT,
        LABEL_FAMILY,
        LABEL_RUN,
        LABEL_TASK,
        job_name,
        job_of_pod,
        label_value,
        run_selector,
    )
    from kannon.backends.kubernetes.rbac import RBAC_RULES, render_rbac
    from kannon.plugins import BackendSpec

_NAMES = ("ANNOTATION_FAMILY", "ANNOTATION_KEY", "ANNOTATION_RUN", "ANNOTATION_SPEC_HASH", "ANNOTATION_TASK",
          "LABEL_ATTEMPT", "LABEL_FAMILY", "LABEL_RUN", "LABEL_TASK", "job_name", "job_of_pod", "label_value",
          "run_selector")  # fmt: skip
__getattr__ = lazy.attributes(__name__, {
    "ApiCaller": "api", "TokenBucket": "api", "api_status": "api", "make_executor": "compat",
    "K8sJobExecutor": "executor", "build_job": "manifest", "job_error_problems": "manifest",
    "load_template": "manifest", "owner_reference": "manifest", "template_from_pod": "manifest",
    "RBAC_RULES": "rbac", "render_rbac": "rbac", **dict.fromkeys(_NAMES, "names"),
})  # fmt: skip


@hookimpl
def kannon_backends() -> list[BackendSpec]:
    from kannon.backends.kubernetes.compat import add_options, from_options, make_executor
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
    "ANNOTATION_FAMILY",
    "ANNOTATION_KEY",
    "ANNOTATION_RUN",
    "ANNOTATION_SPEC_HASH",
    "ANNOTATION_TASK",
    "LABEL_ATTEMPT",
    "LABEL_FAMILY",
    "LABEL_RUN",
    "LABEL_TASK",
    "RBAC_RULES",
    "ApiCaller",
    "K8sJobExecutor",
    "TokenBucket",
    "api_status",
    "build_job",
    "job_error_problems",
    "job_name",
    "job_of_pod",
    "label_value",
    "load_template",
    "make_executor",
    "owner_reference",
    "render_rbac",
    "run_selector",
    "template_from_pod",
]
