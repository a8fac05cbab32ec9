"""The object store: one lock + condition variable, one global resourceVersion counter, bounded watch history.

Semantics follow kubernetes.io/docs/reference/using-api/api-concepts/ ("Efficient detection of changes",
"Resource versions"): every write bumps a single etcd-like revision that becomes the object's
``metadata.resourceVersion``; watches resume from a revision by replaying history after it, and a revision older
than the retained (compacted) history is answered with 410 Gone / Expired.
"""

from __future__ import annotations

import copy
import queue
import threading
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from kannon.testing.kube.errors import already_exists, conflict, not_found
from kannon.testing.kube.selectors import FieldSelector, LabelSelector

Obj = dict[str, Any]


def now_iso() -> str:
    # metav1.Time serialises as RFC 3339 with second precision in UTC.
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> float:
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


@dataclass(frozen=True)
class Change:
    type: str  # ADDED / MODIFIED / DELETED
    resource: str
    rv: int
    obj: Obj  # the new state; for DELETED the final state stamped with the deletion's resourceVersion
    old: Obj | None


class Watcher:
    """One open watch: a queue fed by the store under its lock, filtered like the apiserver's cacher does."""

    def __init__(self, resource: str, namespace: str | None, labels: LabelSelector, fields: FieldSelector) -> None:
        self.resource = resource
        self.namespace = namespace
        self.labels = labels
        self.fields = fields
        self.queue: queue.SimpleQueue[tuple[str, Obj] | None] = queue.SimpleQueue()

    def matches(self, obj: Obj | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self.namespace is not None and meta.get("namespace") != self.namespace:
            return False
        return self.labels.matches(meta.get("labels")) and self.fields.matches(obj)

    def translate(self, ch: Change) -> tuple[str, Obj] | None:
        # An object that starts or stops matching the selector is seen as ADDED / DELETED by this watcher
        # (apiserver cacher: watchCacheEvent with prevObject).
        if ch.resource != self.resource:
            return None
        new_ok = self.matches(ch.obj)
        if ch.type == "ADDED":
            return ("ADDED", ch.obj) if new_ok else None
        if ch.type == "DELETED":
            return ("DELETED", ch.obj) if new_ok or self.matches(ch.old) else None
        old_ok = self.matches(ch.old)
        if new_ok and old_ok:
            return ("MODIFIED", ch.obj)
        if new_ok:
            return ("ADDED", ch.obj)
        if old_ok:
            return ("DELETED", ch.obj)
        return None

    def close(self) -> None:
        self.queue.put(None)


def owner_uids(obj: Obj) -> Iterable[str]:
    """Index keys: the uids in ``obj``'s ownerReferences (the garbage collector's and the Job controller's lookups)."""
    return [r["uid"] for r in obj["metadata"].get("ownerReferences") or [] if r.get("uid")]


def involved_uid(obj: Obj) -> Iterable[str]:
    """Index key of an Event: the uid of the object it is about (event aggregation looks the repeats up by it)."""
    uid = (obj.get("involvedObject") or {}).get("uid")
    return [uid] if uid else []


# What the controllers look up by key rather than by scanning a namespace: upstream's informers keep such indexes
# (the Job controller's pods by controller, the garbage collector's dependents by owner), and without them a
# controller's sync here costs O(objects in the namespace), which at thousands of Jobs made the emulator, not
# kannon, the bottleneck of a scale benchmark.
INDEXES: dict[tuple[str, str], Callable[[Obj], Iterable[str]]] = {
    ("pods", "owner"): owner_uids,
    ("jobs", "owner"): owner_uids,
    ("events", "involved"): involved_uid,
}


class Store:
    def __init__(self, history_limit: int = 2000, first_rv: int = 1000) -> None:
        self.cond = threading.Condition(threading.RLock())
        self.rv = first_rv
        self.history_limit = history_limit
        self._objects: dict[str, dict[tuple[str, str], Obj]] = {}
        self._history: dict[str, deque[Change]] = {}
        # Highest revision whose history is gone, per resource; watching from an older revision gets 410.
        self._compacted: dict[str, int] = {}
        self._first_rv = first_rv
        self._watchers: set[Watcher] = set()
        self._listeners: list[Callable[[Change], None]] = []
        self.changes = 0  # bumped on every change, so waiters can tell "something happened" without the lock held
        # (resource, index name) -> index key -> the (namespace, name) keys of the objects it holds
        self._indexed: dict[tuple[str, str], dict[str, set[tuple[str, str]]]] = {k: {} for k in INDEXES}

    # -- plumbing ------------------------------------------------------------------------------------------------

    def add_listener(self, fn: Callable[[Change], None]) -> None:
        """fn runs under the store lock right after each change: it must only enqueue work, never block."""
        with self.cond:
            self._listeners.append(fn)

    def _record(self, ch: Change) -> None:
        hist = self._history.setdefault(ch.resource, deque())
        hist.append(ch)
        while len(hist) > self.history_limit:
            dropped = hist.popleft()
            self._compacted[ch.resource] = dropped.rv
        for w in list(self._watchers):
            ev = w.translate(ch)
            if ev is not None:
                w.queue.put(ev)
        for fn in self._listeners:
            fn(ch)
        self.changes += 1
        self.cond.notify_all()

    def _reindex(self, resource: str, key: tuple[str, str], old: Obj | None, new: Obj | None) -> None:
        for (res, name), keys_of in INDEXES.items():
            if res != resource:
                continue
            index = self._indexed[(res, name)]
            for k in keys_of(old) if old is not None else ():
                held = index.get(k)
                if held is not None:
                    held.discard(key)
                    if not held:
                        del index[k]
            for k in keys_of(new) if new is not None else ():
                index.setdefault(k, set()).add(key)

    def _next_rv(self) -> int:
        self.rv += 1
        return self.rv

    def _bucket(self, resource: str) -> dict[tuple[str, str], Obj]:
        return self._objects.setdefault(resource, {})

    # -- reads -----------------------------------------------------------------------------------------------------

    def get(self, resource: str, namespace: str, name: str) -> Obj | None:
        """The stored object (shared: callers must not mutate it)."""
        with self.cond:
            return self._bucket(resource).get((namespace, name))

    def require(self, resource: str, namespace: str, name: str) -> Obj:
        obj = self.get(resource, namespace, name)
        if obj is None:
            raise not_found(resource, name)
        return obj

    def list_objects(
        self,
        resource: str,
        namespace: str | None = None,
        labels: LabelSelector | None = None,
        fields: FieldSelector | None = None,
    ) -> tuple[list[Obj], int]:
        with self.cond:
            items = []
            for (ns, _name), obj in sorted(self._bucket(resource).items()):
                if namespace is not None and ns != namespace:
                    continue
                if labels is not None and not labels.matches(obj["metadata"].get("labels")):
                    continue
                if fields is not None and not fields.matches(obj):
                    continue
                items.append(obj)
            return items, self.rv

    def by_index(self, resource: str, index: str, key: str, namespace: str | None = None) -> list[Obj]:
        """The objects whose ``index`` (:data:`INDEXES`) holds ``key``, in :meth:`list_objects`' order (shared:
        callers must not mutate them)."""
        with self.cond:
            bucket = self._bucket(resource)
            keys = sorted(self._indexed[(resource, index)].get(key, ()))
            return [bucket[k] for k in keys if namespace is None or k[0] == namespace]

    def snapshot(self, resource: str, namespace: str | None) -> dict[str, Obj]:
        with self.cond:
            items, _ = self.list_objects(resource, namespace)
            return {o["metadata"]["name"]: copy.deepcopy(o) for o in items}

    # -- writes ----------------------------------------------------------------------------------------------------

    def create(self, resource: str, obj: Obj) -> Obj:
        with self.cond:
            meta = obj["metadata"]
            key = (meta.get("namespace", ""), meta["name"])
            bucket = self._bucket(resource)
            if key in bucket:
                raise already_exists(resource, meta["name"])
            meta.setdefault("uid", str(uuid.uuid4()))
            meta["creationTimestamp"] = now_iso()
            meta["resourceVersion"] = str(self._next_rv())
            if resource != "pods" and resource != "namespaces":
                meta["generation"] = 1
            bucket[key] = obj
            self._reindex(resource, key, None, obj)
            self._record(Change("ADDED", resource, self.rv, obj, None))
            return obj

    def mutate(self, resource: str, namespace: str, name: str, fn: Callable[[Obj], Obj | None]) -> Obj | None:
        """Atomic read-modify-write: fn gets a deep copy and returns the new state (or None for no change).

        Returns the stored object afterwards, or None if it does not exist.
        """
        with self.cond:
            bucket = self._bucket(resource)
            old = bucket.get((namespace, name))
            if old is None:
                return None
            new = fn(copy.deepcopy(old))
            if new is None or new == old:
                return old
            new["metadata"]["resourceVersion"] = str(self._next_rv())
            if resource != "pods" and old.get("spec") != new.get("spec"):
                new["metadata"]["generation"] = old["metadata"].get("generation", 1) + 1
            bucket[(namespace, name)] = new
            self._reindex(resource, (namespace, name), old, new)
            self._record(Change("MODIFIED", resource, self.rv, new, old))
            return new

    def replace(self, resource: str, obj: Obj, expected_rv: str | None) -> Obj:
        """PUT semantics: optimistic concurrency on metadata.resourceVersion (409 Conflict when stale)."""
        meta = obj["metadata"]
        with self.cond:
            cur = self.require(resource, meta["namespace"], meta["name"])
            if expected_rv and expected_rv != cur["metadata"]["resourceVersion"]:
                raise conflict(resource, meta["name"])

            def put(_old: Obj) -> Obj:
                return obj

            out = self.mutate(resource, meta["namespace"], meta["name"], put)
            assert out is not None
            return out

    def remove(self, resource: str, namespace: str, name: str) -> Obj | None:
        with self.cond:
            bucket = self._bucket(resource)
            old = bucket.pop((namespace, name), None)
            if old is None:
                return None
            self._reindex(resource, (namespace, name), old, None)
            final = copy.deepcopy(old)
            final["metadata"]["resourceVersion"] = str(self._next_rv())
            self._record(Change("DELETED", resource, self.rv, final, old))
            return final

    # -- watches ---------------------------------------------------------------------------------------------------

    def subscribe(self, watcher: Watcher, since: int | None) -> tuple[list[tuple[str, Obj]], int | None]:
        """Register watcher; return (initial events, None) or ([], oldest_available_rv) when `since` is compacted."""
        with self.cond:
            if since is None:
                items, _ = self.list_objects(watcher.resource, watcher.namespace, watcher.labels, watcher.fields)
                initial = [("ADDED", o) for o in items]
            else:
                floor = self._compacted.get(watcher.resource, self._first_rv)
                if since < floor:
                    return [], floor + 1
                initial = []
                for ch in self._history.get(watcher.resource, ()):
                    if ch.rv > since:
                        ev = watcher.translate(ch)
                        if ev is not None:
                            initial.append(ev)
            self._watchers.add(watcher)
            return initial, None

    def unsubscribe(self, watcher: Watcher) -> None:
        with self.cond:
            self._watchers.discard(watcher)

    def end_watches(self) -> int:
        with self.cond:
            ws = list(self._watchers)
            for w in ws:
                w.close()
            return len(ws)

    def expire_watches(self) -> int:
        """:meth:`compact` and :meth:`end_watches` under one hold of the lock (faults.expire_watches)."""
        with self.cond:
            self.compact()
            return self.end_watches()

    def compact(self) -> None:
        """Forget all history: resuming a watch from any revision handed out so far gets 410 Gone.

        The counter moves on by one so that a fresh list returns a revision that can be watched from (otherwise an
        idle store would answer every re-list + re-watch with 410 again).
        """
        with self.cond:
            self.rv += 1
            for resource in set(self._history) | set(self._objects):
                self._compacted[resource] = self.rv
                self._history.get(resource, deque()).clear()
