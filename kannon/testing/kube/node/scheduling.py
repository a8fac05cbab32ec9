"""From a pod's creation to its container's start, with the delays of a real cluster: the scheduler (and a cluster
autoscaler adding a node), then the kubelet pulling the image. The delays are faults (``Faults.scale_up``,
``Faults.slow_image_pull``, the ``NotTriggerScaleUp`` pod behaviour); without them a pod fits or not at once and its
image is present.

What upstream records, and in which words:

* kube-scheduler: a ``FailedScheduling`` Warning with the fit error (``0/1 nodes are available: 1 Insufficient
  cpu. …``) on a pod that fits no node, and ``Scheduled`` (``Successfully assigned <ns>/<pod> to <node>``) when it
  binds one (recorded here for a pod that waited for a node).
* cluster-autoscaler (FAQ, "What events are emitted by CA?"; processors/status/eventing_scale_up_processor.go):
  ``TriggeredScaleUp`` (``pod triggered scale-up: [{<group> 1->2 (max: 10)}]``) on a pod it adds a node for, and
  ``NotTriggerScaleUp`` (``pod didn't trigger scale-up: <count> <reason>, …``) on one no node group would fit;
  Normal events from component ``cluster-autoscaler``.
* kubelet (pkg/kubelet/images/image_manager.go, reasons in pkg/kubelet/events/event.go): ``Pulling`` (``Pulling image
  "<image>"``) when a pull starts, ``Pulled`` (``Successfully pulled image "<image>" in <d> (<d> including waiting).
  Image size: <n> bytes.``) when it is done; the container waits as ``ContainerCreating`` meanwhile.

Each event is recorded before the pod state it explains is written, so a client that sees the state (through its
pod watch) and then lists the events finds them.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from kannon.testing.kube.node.status import NODE_NAME, _cond, set_condition
from kannon.testing.kube.store import Obj, Store

if TYPE_CHECKING:
    from kannon.testing.kube.faults import SlowStart
    from kannon.testing.kube.node.podworker import PodWorker

NODE_GROUP = "emulated-pool"
INSUFFICIENT_CPU = ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are available: 1 No "
                    "preemption victims found for incoming pod.")  # fmt: skip
SCALE_UP = f"pod triggered scale-up: [{{{NODE_GROUP} 1->2 (max: 10)}}]"
NO_SCALE_UP = "pod didn't trigger scale-up: 1 Insufficient cpu"


def record_event(store: Store, pod: Obj, etype: str, reason: str, message: str, component: str) -> None:
    from kannon.testing.kube import quota  # quota reads pod phases from this package (node.status)

    quota.record_event(store, pod, etype, reason, message, component)


def schedule(worker: PodWorker, pod: Obj, behaviour: str | None, scale_up: SlowStart | None) -> Obj | None:
    """Bind ``pod`` to the node and return it; None when it never fits (it stays Pending until deleted) or is
    deleted while the autoscaler adds a node (kubernetes.io/docs/concepts/scheduling-eviction/kube-scheduler/)."""
    store = worker.store

    def unschedulable(why: str) -> None:
        worker._update(lambda p: set_condition(p["status"], _cond("PodScheduled", "False", "Unschedulable", why)))

    reason = worker.kubelet.node.unschedulable_reason(pod["spec"])
    if behaviour in ("Unschedulable", "NotTriggerScaleUp") and reason is None:
        reason = INSUFFICIENT_CPU
    if reason is not None:
        record_event(store, pod, "Warning", "FailedScheduling", reason, "default-scheduler")
        if behaviour == "NotTriggerScaleUp":
            record_event(store, pod, "Normal", "NotTriggerScaleUp", NO_SCALE_UP, "cluster-autoscaler")
        unschedulable(reason)
        worker._wait_for_kill()  # A pod that cannot be scheduled stays Pending forever.
        return None
    if scale_up is not None:  # no node fits until the autoscaler's new one has joined
        record_event(store, pod, "Warning", "FailedScheduling", INSUFFICIENT_CPU, "default-scheduler")
        record_event(store, pod, "Normal", "TriggeredScaleUp", SCALE_UP, "cluster-autoscaler")
        unschedulable(INSUFFICIENT_CPU)
        if not wait(scale_up, lambda: worker.kill_requested or worker.kubelet.stopping):
            return None
        meta = pod["metadata"]
        record_event(store, pod, "Normal", "Scheduled", f"Successfully assigned {meta['namespace']}/{meta['name']} "
                     f"to {NODE_NAME}", "default-scheduler")  # fmt: skip

    def bind(p: Obj) -> None:
        p["spec"]["nodeName"] = NODE_NAME
        set_condition(p["status"], _cond("PodScheduled", "True"))

    return worker._update(bind) or pod


class Pull:
    """A slow image pull: ``Pulling`` at once (before the container is shown waiting), ``Pulled`` when it is done."""

    def __init__(self, store: Store, pod: Obj, image: str, slow: SlowStart) -> None:
        self.store, self.pod, self.image, self.slow = store, pod, image, slow
        record_event(store, pod, "Normal", "Pulling", f'Pulling image "{image}"', "kubelet")
        self.began = time.monotonic()

    def wait(self, stopping: Callable[[], bool]) -> bool:
        """Until the image is there (True, ``Pulled`` recorded), or the pod is being killed first (False)."""
        if not wait(self.slow, stopping):
            return False
        took = f"{time.monotonic() - self.began:.3f}s"
        record_event(self.store, self.pod, "Normal", "Pulled", f'Successfully pulled image "{self.image}" in {took} '
                     f"({took} including waiting). Image size: 0 bytes.", "kubelet")  # fmt: skip
        return True


def wait(slow: SlowStart, stopping: Callable[[], bool]) -> bool:
    """Until the slow start is over (True), or the pod is being killed first (False)."""
    began = time.monotonic()
    while not slow.over(began):
        if stopping():
            return False
        slow.done.wait(0.05)
    return True
