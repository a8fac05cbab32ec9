"""The emulator store's indexes (dependents by owner uid, events by involved object) answer exactly what a scan of
the namespace answers, whatever sequence of creates, ownerReference changes and deletes led there."""

from __future__ import annotations

import random
from typing import Any

import pytest

from kannon.testing.kube.store import INDEXES, Store

OWNERS = [f"uid-{i}" for i in range(6)]


def _refs(rng: random.Random) -> list[dict[str, Any]]:
    return [{"kind": "Job", "name": f"j-{u}", "uid": u, "controller": k == 0}
            for k, u in enumerate(rng.sample(OWNERS, rng.randint(0, 2)))]  # fmt: skip


def _scan(store: Store, resource: str, index: str, key: str, namespace: str | None) -> list[str]:
    keys_of = INDEXES[(resource, index)]
    items, _ = store.list_objects(resource, namespace)
    return [o["metadata"]["name"] for o in items if key in keys_of(o)]


@pytest.mark.parametrize("seed", range(5))
def test_indexes_match_a_scan_after_any_history(seed: int) -> None:
    rng = random.Random(seed)  # a fixed seed per case: the same histories on every run
    store = Store()
    live: dict[str, set[str]] = {"pods": set(), "jobs": set(), "events": set()}
    for step in range(400):
        resource = rng.choice(["pods", "jobs", "events"])
        ns = rng.choice(["a", "b"])
        names = sorted(n for n in live[resource] if n.startswith(ns + "-"))
        action = rng.random()
        if action < 0.45 or not names:
            name = f"{ns}-{resource}-{step}"
            meta: dict[str, Any] = {"name": name, "namespace": ns}
            if resource == "events":
                obj: dict[str, Any] = {"metadata": meta, "involvedObject": {"uid": rng.choice(OWNERS)}}
            else:
                refs = _refs(rng)
                obj = {"metadata": {**meta, **({"ownerReferences": refs} if refs else {})}}
            store.create(resource, obj)
            live[resource].add(name)
        elif action < 0.8:
            name = rng.choice(names)

            def change(o: dict[str, Any]) -> dict[str, Any]:
                if resource == "events":
                    o["involvedObject"] = {"uid": rng.choice(OWNERS)} if rng.random() < 0.8 else {}
                else:
                    refs = _refs(rng)
                    if refs:
                        o["metadata"]["ownerReferences"] = refs
                    else:
                        o["metadata"].pop("ownerReferences", None)
                return o

            store.mutate(resource, ns, name, change)
        else:
            name = rng.choice(names)
            store.remove(resource, ns, name)
            live[resource].discard(name)
        for (res, index) in INDEXES:
            for key in OWNERS:
                for namespace in (None, "a", "b"):
                    got = [o["metadata"]["name"] for o in store.by_index(res, index, key, namespace)]
                    assert got == _scan(store, res, index, key, namespace), (step, res, index, key, namespace)


def test_an_unknown_key_finds_nothing() -> None:
    store = Store()
    store.create("pods", {"metadata": {"name": "p", "namespace": "a", "ownerReferences": [{"uid": "u"}]}})
    assert store.by_index("pods", "owner", "other") == []
    assert [o["metadata"]["name"] for o in store.by_index("pods", "owner", "u")] == ["p"]
    store.remove("pods", "a", "p")
    assert store.by_index("pods", "owner", "u") == []
