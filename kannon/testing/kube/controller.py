"""The controller manager: the Job controller, the garbage collector and the TTL-after-finished controller on one
thread, fed by one queue of store changes and timers (as kube-controller-manager runs its controllers in one process).

The controllers themselves: jobcontroller.py (the Job controller), deletion.py (the garbage collector, the
TTL-after-finished controller and the API server's DELETE of a Job).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import queue
import threading
import time
from typing import Any

from kannon.testing.kube.deletion import GarbageCollector, TtlAfterFinished, controller_of
from kannon.testing.kube.jobcontroller import JobController
from kannon.testing.kube.node.kubelet import Kubelet
from kannon.testing.kube.node.status import is_terminal
from kannon.testing.kube.store import Change, Store

log = logging.getLogger("kannon.testing.kube")


class ControllerManager:
    """The controllers' thread. Store listeners run under the store lock, so changes are only enqueued here."""

    def __init__(self, store: Store, kubelet: Kubelet, backoff_base: float = 0.0, backoff_cap: float = 360.0) -> None:
        self.store = store
        self._queue: queue.Queue[tuple[Any, ...] | None] = queue.Queue()
        self._timers: list[tuple[float, int, tuple[Any, ...]]] = []
        self._seq = itertools.count()
        self.gc = GarbageCollector(store, kubelet)
        self.ttl = TtlAfterFinished(store, self._after)
        self.jobs = JobController(
            store, kubelet, self.gc, self.ttl, self._after, self.resync, backoff_base, backoff_cap
        )
        self._thread = threading.Thread(target=self._loop, daemon=True, name="kube-job-controller")
        store.add_listener(self._on_change)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def resync(self, ns: str, name: str) -> None:
        """Sync Job ``name`` again soon (thread-safe: only enqueues)."""
        self._queue.put(("sync", ns, name))

    # -- event intake (under the store lock: only enqueue) -------------------------------------------------------

    def _on_change(self, ch: Change) -> None:
        meta = ch.obj["metadata"]
        if ch.resource == "jobs":
            self._queue.put(("sync", meta["namespace"], meta["name"]))
            if ch.type == "DELETED":
                self._queue.put(("gc", meta["namespace"], meta["uid"]))
            return
        if ch.resource != "pods":
            return
        ns = meta["namespace"]
        if ch.type == "DELETED":
            self._queue.put(("gc", ns, meta["uid"]))
        owner = controller_of(ch.obj)
        if owner is None:
            return
        was_terminal = ch.old is not None and is_terminal(ch.old)
        if ch.type == "MODIFIED" and is_terminal(ch.obj) and not was_terminal:
            self._queue.put(("pod_done", ns, owner["name"], owner["uid"], ch.obj))
        elif ch.type == "DELETED" and not is_terminal(ch.obj):
            # A pod that vanished before finishing counts as failed (tracked with finalizers in real clusters).
            self._queue.put(("pod_done", ns, owner["name"], owner["uid"], ch.obj))
        self._queue.put(("sync", ns, owner["name"]))

    def _after(self, delay: float, item: tuple[Any, ...]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._seq), item))

    # -- loop ------------------------------------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            timeout = None
            if self._timers:
                timeout = max(0.0, self._timers[0][0] - time.monotonic())
            try:
                item = self._queue.get(timeout=timeout)
            except queue.Empty:
                item = ()
            if item is None:
                return
            now = time.monotonic()
            due = []
            while self._timers and self._timers[0][0] <= now:
                due.append(heapq.heappop(self._timers)[2])
            for it in ([item] if item else []) + due:
                try:
                    self._handle(it)
                except Exception:
                    log.exception("job controller failed on %r", it[:3])

    def _handle(self, item: tuple[Any, ...]) -> None:
        kind = item[0]
        if kind == "sync":
            self.jobs.sync(item[1], item[2])
        elif kind == "pod_done":
            self.jobs.count(item[1], item[2], item[3], item[4])
            self.jobs.sync(item[1], item[2])
        elif kind == "gc":
            # An owner is gone (a Job or a pod): what was kept for it goes, then its dependents are collected.
            self.jobs.forget(item[2])
            self.ttl.forget(item[2])
            self.gc.collect_orphans(item[1], item[2])
        elif kind == "ttl":
            self.ttl.expired(item[1], item[2], item[3])
