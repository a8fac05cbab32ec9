"""Discovery: what the API server says about itself and the resources it serves (/version, /api, /apis and the
group-version resource lists), as kubectl and the clients read it before their first request.

Shapes from kubernetes.io/docs/concepts/overview/kubernetes-api/ ("Discovery API", the unaggregated documents).
The OpenAPI documents are openapi.py's; the Lease group's lists are leases.py's.
"""

from __future__ import annotations

from typing import Any

from kannon.testing.kube import kueue, leases

VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.13-kannon-emulator",  # the release tests/e2e/upstream compares the emulator with
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-08-27T00:00:00Z",
    "goVersion": "go1.24.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}

#: resource -> (apiVersion, kind) of its objects
KINDS = {
    "jobs": ("batch/v1", "Job"),
    "pods": ("v1", "Pod"),
    "namespaces": ("v1", "Namespace"),
    "events": ("v1", "Event"),
    "leases": (leases.GROUP_VERSION, "Lease"),
    "secrets": ("v1", "Secret"),
    "configmaps": ("v1", "ConfigMap"),
    "workloads": (f"{kueue.GROUP}/{kueue.VERSION}", "Workload"),
    "resourcequotas": ("v1", "ResourceQuota"),
}


def _discovery_core() -> dict[str, Any]:
    def res(name: str, kind: str, verbs: list[str], namespaced: bool = True) -> dict[str, Any]:
        return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs}

    return {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            res("namespaces", "Namespace", ["get", "list", "watch"], namespaced=False),
            res("pods", "Pod", ["delete", "get", "list", "patch", "watch"]),
            res("pods/log", "Pod", ["get"]),
            res("pods/status", "Pod", ["get"]),
            res("events", "Event", ["get", "list", "watch"]),
            res("secrets", "Secret", ["create", "delete", "get", "list", "patch", "update", "watch"]),
            res("configmaps", "ConfigMap", ["create", "delete", "get", "list", "patch", "update", "watch"]),
        ],
    }


def _discovery_batch() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "batch/v1",
        "resources": [
            {
                "name": "jobs",
                "singularName": "job",
                "namespaced": True,
                "kind": "Job",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "categories": ["all"],
            },
            {"name": "jobs/status", "singularName": "", "namespaced": True, "kind": "Job", "verbs": ["get"]},
        ],
    }


def document(path: str, url: str) -> dict[str, Any] | None:
    """The discovery document a GET of ``path`` answers (``url``: the server's own), or None for another path."""
    if path == "/version":
        return VERSION
    if path == "/api":
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": url.split("//", 1)[1]}],
        }
    if path == "/apis":
        gv = {"groupVersion": "batch/v1", "version": "v1"}
        return {
            "kind": "APIGroupList",
            "apiVersion": "v1",
            "groups": [{"name": "batch", "versions": [gv], "preferredVersion": gv},
                       {k: v for k, v in leases.discovery_group().items() if k not in ("kind", "apiVersion")}],
        }  # fmt: skip
    if path == f"/apis/{leases.GROUP}":
        return leases.discovery_group()
    if path == f"/apis/{leases.GROUP_VERSION}":
        return leases.discovery_resources()
    if path == "/api/v1":
        return _discovery_core()
    if path == "/apis/batch":
        gv = {"groupVersion": "batch/v1", "version": "v1"}
        return {"kind": "APIGroup", "apiVersion": "v1", "name": "batch", "versions": [gv], "preferredVersion": gv}
    if path == "/apis/batch/v1":
        return _discovery_batch()
    return None
