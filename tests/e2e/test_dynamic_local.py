"""Dynamic dependencies (issue 13) on the local backend: a master task's ``yield`` of bullets hands them to the
executor, with luigi's contract (stop, schedule what was asked for, run again from the start with the outputs)."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import gokart
import luigi
import pytest

import kannon
from kannon.backends.local import LocalExecutor
from kannon.events import Event
from kannon.progress import summary_text
from kannon.report.data import report_data
from kannon.report.model import attempt_outcome, fold
from kannon.result import KannonBuildError, Status
from tests.faults.harness import Master, find_processes
from tests.support import dynscenarios
from tests.support import dyntasks as dt
from tests.support.procs import wait_until


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


def launches(rec: Recorder, family: str) -> int:
    return sum(1 for e in rec.events if e.kind == "launched" and e.family == family)


def test_a_yield_of_complete_tasks_never_stops_the_task(tmp_path: Path) -> None:
    dynscenarios.yield_of_complete_tasks(LocalExecutor, tmp_path, "pid ")


def test_a_yield_mixing_complete_and_incomplete_tasks_launches_only_the_incomplete(tmp_path: Path) -> None:
    build(dt.PidBullet(name="a", runs_dir=str(tmp_path)))
    luigi.task_register.Register.clear_instance_cache()
    result, rec = build(dt.Yielder(names=["a", "c"], runs_dir=str(tmp_path)))
    assert launches(rec, "Yielder") == 2 and launches(rec, "PidBullet") == 1
    assert [e.params for e in rec.events if e.kind == "launched" and e.family == "PidBullet"] == ["name=c"]
    skipped = [e for e in rec.events if e.kind == "skipped_complete" and e.requested_by]
    assert [e.params for e in skipped] == ["name=a"]


def test_two_yields_in_a_row_stop_twice_and_get_both_outputs(tmp_path: Path) -> None:
    root = dt.TwoYields(runs_dir=str(tmp_path))
    _, rec = build(root)
    assert root.output().load() == ["first", "second"]  # a single task and a dict, sent back as luigi does
    assert len(dt.runs(tmp_path, "two")) == 3 and launches(rec, "TwoYields") == 3


@pytest.mark.parametrize("retries", [0, 2])
def test_a_yielded_bullet_that_fails_marks_the_yielder_upstream_failed(tmp_path: Path, retries: int) -> None:
    dynscenarios.yielded_bullet_fails(LocalExecutor, tmp_path, "pid ", retries)


def test_a_yielded_bullet_that_fails_once_is_retried_and_the_yielder_finishes(tmp_path: Path) -> None:
    dynscenarios.yielded_bullet_fails_once(LocalExecutor, tmp_path, "pid ")


def test_other_branches_run_while_the_yielded_bullets_run(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    hold.mkdir()
    side_seen_while_held: list[bool] = []

    def release() -> None:  # the held bullet waits for this; the side branch must start meanwhile
        try:
            wait_until(lambda: (hold / "x.started").exists(), 120, "the yielded bullet to start")
            wait_until(lambda: (hold / "side.started").exists(), 120, "the side branch to start")
            side_seen_while_held.append(not (hold / "x").exists())
        finally:
            (hold / "x").write_text("go")

    helper = threading.Thread(target=release, daemon=True)
    helper.start()
    root = dt.YieldAndSide(names=["x"], runs_dir=str(tmp_path), hold_dir=str(hold))
    build(root)
    helper.join(10)
    assert side_seen_while_held == [True]
    assert [v["name"] for v in root.output().load()["values"]] == ["x"]


def test_an_in_memory_target_on_a_yielded_bullet_is_refused_with_the_fix(tmp_path: Path) -> None:
    with pytest.raises(KannonBuildError) as info:
        build(dt.YieldsInMemory())
    rec = next(r for r in info.value.result.tasks.values() if r.family == "YieldsInMemory")
    reason = rec.reason or ""
    assert rec.status is Status.FAILED and "InMemoryTarget" in reason and "make_target" in reason


def test_the_same_pipeline_under_gokart_build_gives_the_same_outputs(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    values = {}
    for how in ("gokart", "kannon"):
        (tmp_path / how).mkdir()
        monkeypatch.chdir(tmp_path / how)  # each its own ./resources workspace
        luigi.task_register.Register.clear_instance_cache()
        root = dt.Yielder(names=["a", "b"], masters=["m"])
        if how == "gokart":
            gokart.build(root, reset_register=False, log_level=logging.ERROR)
        else:
            build(root)
        values[how] = root.output().load()
        rel = [p.relative_to(tmp_path / how) for p in (tmp_path / how / "resources").rglob("*.pkl")]
        values[how + "-files"] = sorted(str(p) for p in rel if "kannon" not in p.parts and "log" not in p.parts)
    strip = [{k: v for k, v in d.items() if k != "pid"} for d in values["kannon"]["values"]]
    assert strip == [{k: v for k, v in d.items() if k != "pid"} for d in values["gokart"]["values"]]
    assert values["kannon-files"] == values["gokart-files"]  # same unique ids, same output paths


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_sigterm_while_yielded_bullets_run_cancels_them_and_leaves_nothing_running(tmp_path: Path, mode: str) -> None:
    def children(master: Master) -> list[str]:  # spawned children carry the run id, forked ones the master's marker
        markers = [f"KANNON_RUN_ID={master.tail.run_id}", master.marker]
        return [f"process {p.pid} ({p.cmdline})" for p in find_processes(markers, exclude=[master.pid])]

    dynscenarios.sigterm_while_yielded_bullets_run(tmp_path, ["--local-mode", mode], None, children)


def test_a_yielded_bullet_that_itself_yields_runs_each_level_in_its_own_child(tmp_path: Path) -> None:
    dynscenarios.nested_yield(LocalExecutor, tmp_path, "pid ")


def test_events_summary_and_report_name_every_dynamic_task_and_who_yielded_it(tmp_path: Path) -> None:
    root = dt.Yielder(names=["a", "b"], runs_dir=str(tmp_path))
    result, rec = build(root)
    yielder = result.root_id
    planned = {e.task_id: e.requested_by for e in rec.events if e.kind == "planned"}
    bullets = [t for t, r in result.tasks.items() if r.family == "PidBullet"]
    assert all(planned[b] == yielder for b in bullets) and planned[yielder] is None
    # the report folds the same events back: dynamic edges kept apart from requires() edges
    model = fold(rec.events)
    folded = model.result()
    assert folded.root_id == yielder and folded.tasks[yielder].requested == result.tasks[yielder].requested
    assert {folded.tasks[b].requested_by for b in bullets} == {yielder}
    assert [attempt_outcome(folded.tasks[yielder], a) for a in folded.tasks[yielder].attempts] == [
        "yielded", "succeeded"]  # fmt: skip
    data = {t["id"]: t for t in report_data(model)["tasks"]}
    assert sorted(data[yielder]["requested"]) == sorted(bullets) and data[yielder]["deps"] == []
    assert data[bullets[0]]["requested_by"] == yielder
    assert data[bullets[0]]["layer"] < data[yielder]["layer"]  # drawn upstream of the task that yielded them
    text = summary_text(folded)
    assert text.count("yielded by Yielder") == 2


@pytest.mark.parametrize("mode", ["fork", "spawn"])
def test_a_bullet_that_yields_reports_to_the_master_and_runs_again_in_a_new_child(tmp_path: Path, mode: str) -> None:
    root = dt.BulletYielder(names=["y1", "y2"], runs_dir=str(tmp_path))
    rec = Recorder()
    result = kannon.Kannon(executor=LocalExecutor(mode=mode), observers=[rec], retries=0).build(root)
    out = root.output().load()
    master = os.getpid()
    yielder_pids = dt.runs(tmp_path, "byielder")
    assert len(yielder_pids) == 2 and master not in yielder_pids  # two children: stopped, then ran to the end
    assert out["pid"] == yielder_pids[1] and [v["name"] for v in out["values"]] == ["y1", "y2"]
    assert not {v["pid"] for v in out["values"]} & {master, *yielder_pids}  # each yielded bullet in its own child
    assert [len(dt.runs(tmp_path, n)) for n in ["y1", "y2"]] == [1, 1]
    yielder = result.tasks[result.root_id]
    assert [a.number for a in yielder.attempts] == [1, 2] and yielder.attempts[0].requested  # no retry was spent
    assert {r.requested_by for r in result.tasks.values() if r.family == "PidBullet"} == {result.root_id}
    assert launches(rec, "BulletYielder") == 2 and launches(rec, "PidBullet") == 2
    assert [e.kind for e in rec.events if e.kind in ("retried", "failed")] == []
    assert list((tmp_path / "resources").rglob("requested/*/*.json")) == []  # the master deleted the child's specs
