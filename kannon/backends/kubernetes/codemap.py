"""Shipped code without a shared workspace: the run's code archive in a ConfigMap, mounted into every child pod.

``K8sJobExecutor(ship_code=True, code_via="configmap")`` (CLI: ``--ship-code --k8s-code-via configmap``) puts the
archive (docs/code-shipping.md) in one ``core/v1`` ConfigMap per run and content, as ``binaryData`` under the key
``<sha256>.tar.gz`` (kubernetes.io/docs/concepts/configuration/configmap/), and every child Job gets a ``configMap``
volume of it mounted read-only at :data:`MOUNT_DIR` (kubernetes.io/docs/concepts/storage/volumes/#configmap). The
spec's ``code.location`` is the file in that mount: the child reads and verifies it like any other location.

Size: "The data stored in a ConfigMap cannot exceed 1 MiB" (the apiserver counts the decoded ``binaryData``); the
compressed archive must fit (:data:`MAX_BYTES`), else a :class:`BackendError` before anything runs names the
largest files. Bigger code needs a shared workspace (the default ``code_via="workspace"``).

``code_cache="/var/cache/kannon-code"`` (CLI ``--k8s-code-cache HOSTPATH``) mounts that node directory into every
child pod as the extraction cache (:func:`mount_cache`): a second task on the same node finds the archive extracted
and fetches nothing. Without it each pod extracts into its own filesystem once.

Lifetime, as the run's Secret (:mod:`.secret`): created in ``start()`` before any Job (a 403 is a clear
BackendError), labelled with the run id, owned by the master (pod or Job) in a cluster, deleted in ``close()``; a
code ConfigMap of the same run under another name (older code, another ``job_prefix``) is swept at ``start()``. The
name carries the run and the content hash, so a re-attaching master of the same run with unchanged code finds it and
creates nothing (409: same name, same content), and two runs never share one (one's ``close()`` cannot pull it from
under the other's pods). A running pod keeps the files it mounted, so deleting the ConfigMap never breaks a child
that has started.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import tarfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from kannon.backends.base import BackendError
from kannon.backends.kubernetes.names import LABEL_RUN, dns_label, label_value
from kannon.backends.kubernetes.runobject import RunObject
from kannon.ship_child import CONFIG_MAP_DIR

if TYPE_CHECKING:
    from kannon.ship import Archive

log = logging.getLogger("kannon.kubernetes")

MAX_BYTES = 1024 * 1024  # ConfigMap data + binaryData, decoded (ValidateConfigMap's core.MaxSecretSize)
MOUNT_DIR = CONFIG_MAP_DIR  # where each child pod sees the ConfigMap's files (the child names it in errors)
VOLUME = "kannon-code"
CACHE_DIR = "/var/cache/kannon/code"  # where a child pod sees the node's extraction cache (code_cache=)
CACHE_VOLUME = "kannon-code-cache"
LABEL_CODE = "kannon.io/code"  # marks the run's code ConfigMaps (the sweep lists by run and this label)
CODE_VIA = ("workspace", "configmap")


def codemap_name(prefix: str, run_id: str, sha256: str) -> str:
    """``<prefix>-<hash(run)>-code-<sha256[:16]>``: a DNS-1123 name, the same for every master of the run and code."""
    head = dns_label(prefix)[:24].strip("-") or "kannon"
    return f"{head}-{hashlib.sha256(run_id.encode()).hexdigest()[:12]}-code-{sha256[:16]}"


def location(archive: Archive) -> str:
    """The archive's path inside a child pod (the spec's ``code.location``)."""
    return f"{MOUNT_DIR}/{archive.name}"


def check_size(archive: Archive) -> None:
    """BackendError naming the largest files when the compressed archive cannot fit one ConfigMap."""
    if len(archive.data) <= MAX_BYTES:
        return
    with tarfile.open(fileobj=io.BytesIO(archive.data), mode="r:gz") as tar:
        members = sorted(tar.getmembers(), key=lambda m: (-m.size, m.name))[:5]
    listed = ", ".join(f"{m.name} ({m.size / 1024:.1f} KiB)" for m in members)
    raise BackendError(f"the shipped code is {len(archive.data) / 1024:.1f} KiB compressed, over the 1024.0 KiB a "
                       f"Kubernetes ConfigMap holds (--k8s-code-via configmap); largest files: {listed}. Exclude "
                       "data with a .kannonignore, or ship through a workspace the pods share (s3://, gs://, a "
                       "mounted volume) with the default --k8s-code-via workspace")  # fmt: skip


def codemap_body(name: str, namespace: str, run_id: str, archive: Archive,
                 owner: Mapping[str, Any] | None) -> dict[str, Any]:  # fmt: skip
    labels = {LABEL_RUN: label_value(run_id), LABEL_CODE: archive.sha256[:16], "app.kubernetes.io/managed-by": "kannon"}
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": labels}
    if owner:
        meta["ownerReferences"] = [dict(owner)]
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "immutable": True,
            "binaryData": {archive.name: base64.b64encode(archive.data).decode()}}  # fmt: skip


def mount(job: dict[str, Any], name: str, container: str | None) -> None:
    """Add the ConfigMap volume to a Job body and mount it read-only in the child container (``container``, else
    the first), at :data:`MOUNT_DIR`."""
    pod = job["spec"]["template"]["spec"]
    pod["volumes"] = [v for v in pod.get("volumes") or [] if v.get("name") != VOLUME]
    pod["volumes"].append({"name": VOLUME, "configMap": {"name": name}})
    target = next(c for c in pod["containers"] if container is None or c.get("name") == container)
    mounts = [m for m in target.get("volumeMounts") or [] if m.get("name") != VOLUME]
    target["volumeMounts"] = [*mounts, {"name": VOLUME, "mountPath": MOUNT_DIR, "readOnly": True}]


def mount_cache(job: dict[str, Any], host_path: str, container: str | None) -> None:
    """The node's extraction cache: ``host_path`` (a ``hostPath`` volume, created if missing) mounted read-write at
    :data:`CACHE_DIR` with ``KANNON_CODE_CACHE`` pointing there, so every pod on a node reuses one extraction per
    archive. The directory must be writable by the container's user (docs/code-shipping.md)."""
    from kannon.backends.kubernetes.manifest import replace_env

    pod = job["spec"]["template"]["spec"]
    pod["volumes"] = [v for v in pod.get("volumes") or [] if v.get("name") != CACHE_VOLUME]
    pod["volumes"].append({"name": CACHE_VOLUME, "hostPath": {"path": host_path, "type": "DirectoryOrCreate"}})
    target = next(c for c in pod["containers"] if container is None or c.get("name") == container)
    mounts = [m for m in target.get("volumeMounts") or [] if m.get("name") != CACHE_VOLUME]
    target["volumeMounts"] = [*mounts, {"name": CACHE_VOLUME, "mountPath": CACHE_DIR}]
    target["env"] = replace_env(target.get("env") or [], [{"name": "KANNON_CODE_CACHE", "value": CACHE_DIR}])


class RunCode(RunObject):
    """The run's code ConfigMap: :meth:`put` once in ``start()`` (one of that name, same code, is kept),
    :meth:`delete` in ``close()``."""

    resource, kind, title, selector = "configmaps", "config_map", "code ConfigMap", LABEL_CODE
