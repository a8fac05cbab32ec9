"""Who owns the child Jobs, and where their template comes from in a cluster: the master's own pod.

* In a cluster, without a template (or with ``owner="auto"``), kannon reads the master's pod (``POD_NAME`` or
  ``HOSTNAME``): its spec becomes the child template, and it becomes the Jobs' ownerReference.
* An ownerReference given by the caller (``owner=`` or 0.1.x's ``master_pod_name``/``master_pod_uid``) must name an
  object that exists with that uid: the garbage collector deletes a child whose owner is absent at once
  (https://kubernetes.io/docs/concepts/architecture/garbage-collection/#owners-dependents), so every Job would
  vanish as it is created. It is verified before anything is created (Pods and Jobs, the kinds kannon may read).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kannon.backends.base import BackendError

if TYPE_CHECKING:
    from kannon.backends.kubernetes.api import ApiCaller
    from kubernetes.client import V1Pod


def verify_owner(api: ApiCaller, core: Any, batch: Any, namespace: str, owner: Mapping[str, Any]) -> None:
    """Raise a BackendError naming the fix when ``owner`` (a Pod or Job) is absent or has another uid."""
    from kubernetes.client.rest import ApiException

    kind, name, uid = owner.get("kind"), str(owner.get("name") or ""), owner.get("uid")
    read = {"Pod": ("pods", core.read_namespaced_pod), "Job": ("jobs", batch.read_namespaced_job)}.get(str(kind))
    if read is None:
        return
    try:
        found = api.call("get", read[0], read[1], name, namespace)
    except ApiException as e:
        if e.status != 404:
            raise
        found = None
    if found is None or found.metadata.uid != uid:
        now = "does not exist" if found is None else f"has uid {found.metadata.uid}"
        raise BackendError(f"the owner given for the child Jobs, {kind} {name!r} with uid {uid}, {now} in "
                           f"namespace {namespace!r}: Kubernetes' garbage collector would delete every Job "
                           "as soon as it is created. Pass the master pod's real name and uid, or owner=None")


def read_master_pod(api: ApiCaller, core: Any, namespace: str, name: str | None, has_template: bool) -> V1Pod | None:
    """In a cluster: the master's own pod, for the child template and the ownerReference; None when it cannot be
    read and a template was given (the template then stands alone)."""
    from kubernetes.client.rest import ApiException

    if not name:
        if not has_template:
            raise BackendError("in a cluster without a Job template kannon copies the master's pod, but neither "
                               "POD_NAME nor HOSTNAME names it; pass template_job= or set POD_NAME via the "
                               "downward API")  # fmt: skip
        return None
    try:
        pod: V1Pod = api.call("get", "pods", core.read_namespaced_pod, name, namespace)
    except ApiException as e:
        if not has_template or e.status != 404:
            raise BackendError(f"cannot read the master pod {name!r} in namespace {namespace!r} ({e.status}); pass "
                               "template_job= instead") from e  # fmt: skip
        return None
    return pod
