"""Dynamic dependencies (issue 13) on the local backend: a master task's ``yield`` of bullets hands them to the
executor, with luigi's contract (stop, schedule what was asked for, run again from the start with the outputs)."""

from __future__ import annotations

import os
from pathlib import Path

import kannon
from kannon.backends.local import LocalExecutor
from kannon.events import Event
from kannon.result import Status
from tests.support import dyntasks as dt


class Recorder:
    """A kannon_event observer: every event of the build, in order."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    @kannon.hookimpl
    def kannon_event(self, event: Event) -> None:
        self.events.append(event)


def build(root: object, **options: object) -> tuple[kannon.BuildResult, Recorder]:
    rec = Recorder()
    result = kannon.Kannon(executor=LocalExecutor(), observers=[rec], **options).build(root)  # type: ignore[arg-type]
    return result, rec


def test_a_master_yield_of_bullets_runs_them_in_children_and_sends_their_outputs_back(tmp_path: Path) -> None:
    root = dt.Yielder(names=["a", "b", "c"], masters=["m"], runs_dir=str(tmp_path))
    result, rec = build(root)
    out = root.output().load()
    master_pid = os.getpid()  # kannon.build ran here: this process is the master
    assert out["pid"] == master_pid
    assert [v["name"] for v in out["values"]] == ["a", "b", "c", "m"]  # the yield returned the outputs, in order
    bullet_pids = [v["pid"] for v in out["values"][:3]]
    assert master_pid not in bullet_pids and len(set(bullet_pids)) == 3  # each bullet in a child of its own
    assert out["values"][3]["pid"] == master_pid  # a yielded master task runs in the master
    # luigi's contract: run() started twice (stopped at the yield, then ran again to the end); each bullet once
    assert dt.runs(tmp_path, "yielder") == [master_pid, master_pid]
    assert [len(dt.runs(tmp_path, n)) for n in "abc"] == [1, 1, 1]
    by_family = {r.family: r for r in result.tasks.values()}
    assert by_family["Yielder"].status is Status.SUCCEEDED and len(by_family["Yielder"].attempts) == 2
    dynamic = [r for r in result.tasks.values() if r.requested_by is not None]
    assert sorted(r.family for r in dynamic) == ["PidBullet"] * 3 + ["PidMaster"]
    assert {r.requested_by for r in dynamic} == {result.root_id}
    requested = [e for e in rec.events if e.kind == "requested"]
    assert len(requested) == 4 and {e.requested_by for e in requested} == {result.root_id}
    launches = [(e.family, e.where) for e in rec.events if e.kind == "launched"]
    assert sorted(f for f, _ in launches) == ["PidBullet"] * 3 + ["PidMaster", "Yielder", "Yielder"]
