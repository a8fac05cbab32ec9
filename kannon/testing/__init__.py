"""Test helpers shipped with kannon: an emulated Kubernetes control plane to run pipelines and failure scenarios
against (see docs/emulator.md)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kannon.testing.kube import Faults, KubeEmulator

__all__ = ["Faults", "KubeEmulator"]


def __getattr__(name: str) -> Any:
    # Imported on first use so `import kannon.testing` stays cheap.
    if name in __all__:
        from kannon.testing import kube

        return getattr(kube, name)
    raise AttributeError(f"module 'kannon.testing' has no attribute {name!r}")
