"""A real upstream Kubernetes control plane (etcd, kube-apiserver, kube-controller-manager, kube-scheduler) built
from source and run on 127.0.0.1 for tests; see docs/upstream.md and ``python -m kannon.testing.upstream``."""

from __future__ import annotations

from kannon.testing.upstream.build import BuildError, ensure_built
from kannon.testing.upstream.cluster import ControlPlane, StartError
from kannon.testing.upstream.versions import ETCD, KUBERNETES

__all__ = ["ETCD", "KUBERNETES", "BuildError", "ControlPlane", "StartError", "ensure_built"]
