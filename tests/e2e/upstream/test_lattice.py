"""A 12-bullet lattice (3 layers of 4, each bullet needing two of the layer above, as tests/e2e/k8s builds it for
its Kueue/quota runs) through K8sJobExecutor on the real control plane, pods run by kannon's node: every bullet
succeeds, each launched exactly once (counted in the --events log) and its run() executed exactly once (counted by
the bullet itself in a file), one Job per bullet completed by the real Job controller."""

from __future__ import annotations

import json
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.kubernetes import K8sJobExecutor
from kannon.progress import EventLogObserver
from kannon.scheduler import Kannon
from tests.e2e.upstream.test_kannon import template

pytestmark = pytest.mark.upstream


def lattice(counter_dir: Path) -> Any:
    from tests.support.tasks import Bullet, Join

    layer: list[Any] = []
    for depth in range(3):
        layer = [Bullet(name=f"real{depth}{i}", parents=layer[i % len(layer):][:2] if layer else [],
                        counter_dir=str(counter_dir)) for i in range(4)]  # fmt: skip
    return Join(parents=layer)


def test_a_12_bullet_lattice_succeeds_each_bullet_once(upstream: Any, batch: Any, namespace: str, kannon_node: str,
                                                       tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    counters = tmp_path / "counters"
    counters.mkdir()
    events = tmp_path / "events.jsonl"
    executor = K8sJobExecutor(template(namespace, kannon_node, tmp_path), api_client=upstream.api_client(),
                              python=sys.executable, retry_backoff=0.05)  # fmt: skip
    result = Kannon(executor=executor, observers=[EventLogObserver(events)]).build(lattice(counters))

    assert result.ok
    bullets = {r.task_id: r for r in result.tasks.values() if r.placement.value == "bullet"}
    assert len(bullets) == 12
    records = [json.loads(line) for line in events.read_text().splitlines()]
    launched = Counter(e["task_id"] for e in records if e["kind"] == "launched")
    assert {t: launched[t] for t in bullets} == dict.fromkeys(bullets, 1), launched  # (the root runs in the master)
    assert [e["kind"] for e in records if e["kind"] in ("retried", "failed")] == []
    runs = {p.name.removesuffix(".attempts"): len(p.read_text().splitlines()) for p in counters.iterdir()}
    assert runs == {f"real{d}{i}": 1 for d in range(3) for i in range(4)}
    jobs = batch.list_namespaced_job(namespace).items
    assert len(jobs) == 12 and all(j.status.succeeded == 1 for j in jobs)
