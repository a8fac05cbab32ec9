"""kannon's node agent: the emulator's kubelet and container runtimes (kannon.testing.kube.node) serving any API
server through the official client — registers a Node, keeps its Lease, runs the pods bound to it, writes their
status and serves their logs. ``python -m kannon.testing.node --kubeconfig K --name N``; docs/upstream.md."""

from kannon.testing.node.agent import NodeAgent

__all__ = ["NodeAgent"]
