"""Requested against used on the master's side (issue 17): the state machine puts the child's record into the
succeeded / failed / retried events and the BuildResult, fills in the limit of an OOM-killed attempt, and the
summary shows the figures."""

from __future__ import annotations

import dataclasses
import json

import pytest

from kannon.backends.base import Finished
from kannon.childresult import ChildResult, Usage
from kannon.events import Event
from kannon.progress import summary_text
from kannon.scheduler import state as st
from tests.unit.test_state import Sim, node


@pytest.fixture(autouse=True)
def _answered() -> None:
    Sim._answered = set()


USED = Usage(peak_rss_bytes=312 << 20, peak_source="cgroup-v1", cpu_seconds=1.5, wall_seconds=3.0, output_bytes=10)


def record(task: str, attempt: int, usage: Usage | None = USED, code: int = 0) -> ChildResult:
    return ChildResult(task=task, spec_sha256="s" * 64, attempt=attempt, outcome="ok" if code == 0 else "TaskFailed",
                       exit_code=code, usage=usage)  # fmt: skip


def test_usage_and_requested_resources_reach_the_events_and_the_result() -> None:
    sim = Sim(node("a", cpu="500m", memory="1Gi", retries=1))
    key = sim.launch("a")
    sim.step(Finished(key, 6, "boom", "TaskFailed", result=record("a", 1, dataclasses.replace(USED, cpu_seconds=0.2),
                                                                    code=6)))  # fmt: skip
    (retried,) = sim.events("retried", "a")
    assert retried.usage["cpu_seconds"] == 0.2
    assert retried.requested_resources == {"cpu": "500m", "memory": "1Gi"}
    sim.tick(1000.0)
    key = sim.launch("a")
    sim.step(Finished(key, 0, result=record("a", 2)))
    sim.step(st.Confirmed(key, True))
    (ok,) = sim.events("succeeded", "a")
    assert ok.usage == dataclasses.asdict(USED) and ok.requested_resources == {"cpu": "500m", "memory": "1Gi"}
    line = json.loads(json.dumps(ok.to_dict()))  # as the event log writes it, and reads it back
    assert Event.from_dict(line).usage == ok.usage
    rec = sim.done().result.tasks["a"]
    assert rec.usage == USED and [a.usage.cpu_seconds for a in rec.attempts if a.usage] == [0.2, 1.5]
    assert "mem 312 MiB / 1Gi req" in summary_text(sim.done().result)


def test_an_attempt_without_a_record_has_no_usage() -> None:
    sim = Sim(node("a"))
    sim.succeed(sim.launch("a"))
    (ok,) = sim.events("succeeded", "a")
    assert ok.usage is None and ok.requested_resources is None
    assert "usage" not in ok.to_dict() and "USED" not in summary_text(sim.done().result)


def test_an_oom_killed_attempt_records_the_limit_it_hit() -> None:
    sim = Sim(node("a", memory="256Mi"))
    key = sim.launch("a")
    sim.step(Finished(key, 137, "out of memory", "OOMKilled"))  # killed before it could write a record
    (failed,) = sim.events("failed", "a")
    assert failed.usage["oom_limit_bytes"] == 256 << 20 and failed.usage["peak_source"] == "oom-limit"
    assert "OOM" in summary_text(sim.done().result)


def test_an_oom_killed_attempts_own_record_gains_the_limit() -> None:
    sim = Sim(node("a", memory="1Gi"))
    key = sim.launch("a")
    sim.step(Finished(key, 137, "out of memory", "OOMKilled", result=record("a", 1)))
    (failed,) = sim.events("failed", "a")
    assert failed.usage["oom_limit_bytes"] == 1 << 30 and failed.usage["peak_rss_bytes"] == 312 << 20
