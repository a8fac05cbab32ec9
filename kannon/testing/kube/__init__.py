"""An emulated Kubernetes control plane: the REST API subset kannon uses, a Job controller, and one node whose
pods run as local processes or Docker containers. See docs/emulator.md."""

from __future__ import annotations

from kannon.testing.kube.emulator import KubeEmulator
from kannon.testing.kube.faults import POD_BEHAVIOURS, Faults, Injected

__all__ = ["POD_BEHAVIOURS", "Faults", "Injected", "KubeEmulator"]
