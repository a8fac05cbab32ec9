"""A task that wrote part of its output and then died never counts as complete: not in the run where it died, not
on the rerun. Two outputs in a dict with a failure between the dumps (raise, SIGKILL of the child, SIGKILL of the
master in the middle of a master task), and a child killed in the middle of one large dump."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.local import LocalExecutor
from kannon.handoff import unique_id
from kannon.plan import make_plan
from kannon.result import Placement, Status
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from tests.faults import ledger
from tests.faults.figures import Figures
from tests.faults.harness import Master, read_ledger, wait_processes_gone, wait_until
from tests.faults.test_child_faults import Background, announced_pid, build, k8s_executor


def placements(root: Any) -> dict[str, Placement]:
    plan = make_plan(root)
    return {n.task_id: n.placement for n in plan.nodes.values()}


def same_run(task: Any) -> bool:
    """Both outputs exist and were written by the same run()."""
    out = task.output()
    return bool(out["a"].exists() and out["b"].exists() and out["a"].load()["nonce"] == out["b"].load()["nonce"])


def test_failure_between_two_dumps_is_not_complete_and_reruns(tmp_path: Path, figures: Figures) -> None:
    flag, ledger_path = tmp_path / "fail", tmp_path / "ledger.txt"
    flag.touch()
    common = {"fail_flag": str(flag), "ledger": str(ledger_path)}
    bullet: Any = ledger.TwoOutputs(name="pb", **common)
    master_task: Any = ledger.MasterTwoOutputs(name="pm", **common)
    ind = ledger.Sleeper(name="ind", announce_dir=str(tmp_path), block_attempts=0)
    after_b = ledger.Collect(parents=[bullet])
    after_m = ledger.Collect(parents=[master_task])
    root = ledger.Collect(parents=[after_b, after_m, ind])

    first = build(Kannon(executor=LocalExecutor(), retries=0), root)
    rec = {n: first.tasks[unique_id(t)] for n, t in {"pb": bullet, "pm": master_task, "ind": ind,
                                                    "after_b": after_b, "after_m": after_m}.items()}  # fmt: skip
    for name in ("pb", "pm"):
        last = rec[name].last
        assert rec[name].status is Status.FAILED and last is not None
        assert last.failure_class == "TaskFailed", rec[name].describe()
        assert "only output a" in (rec[name].reason or "")
    assert rec["ind"].status is Status.SUCCEEDED
    assert rec["after_b"].status is rec["after_m"].status is Status.UPSTREAM_FAILED
    for task in (bullet, master_task):
        assert task.output()["a"].exists() and not task.output()["b"].exists()
        assert not task.complete()
    # what a rerun would do: both run again, their consumers too; the independent branch is done
    planned = placements(root)
    assert planned[unique_id(bullet)] is Placement.BULLET
    assert planned[unique_id(master_task)] is Placement.MASTER
    assert planned[unique_id(ind)] is Placement.COMPLETE

    flag.unlink()
    second = Kannon(executor=LocalExecutor(), retries=0).build(root)
    assert second.ok
    assert second.tasks[unique_id(ind)].status is Status.COMPLETE  # not run again
    for task in (bullet, master_task):
        assert second.tasks[unique_id(task)].status is Status.SUCCEEDED
        assert same_run(task)  # the half-written first run left nothing that survived as "its" output
    starts, dones = read_ledger(ledger_path)
    assert sorted(s.label for s in starts) == ["pb", "pb", "pm", "pm"]
    assert sorted(label for label, _, _ in dones) == ["pb", "pm"]
    figures.fault("partial output, then raise (bullet)")
    figures.fault("partial output, then raise (master task)")


def test_child_sigkilled_between_two_dumps_is_retried_not_trusted(tmp_path: Path, figures: Figures) -> None:
    flag, ledger_path = tmp_path / "fail", tmp_path / "ledger.txt"
    flag.touch()
    task: Any = ledger.TwoOutputs(
        name="pk", fail_flag=str(flag), how="sigkill", fail_attempts=1, ledger=str(ledger_path)
    )
    root = ledger.Collect(parents=[task])
    result = Kannon(executor=LocalExecutor(), retries=1, retry_delay=0.05).build(root)
    rec = result.tasks[unique_id(task)]
    assert rec.status is Status.SUCCEEDED
    assert [(a.exit_code, a.failure_class) for a in rec.attempts] == [(137, "Killed"), (0, None)]
    assert same_run(task)
    starts, _ = read_ledger(ledger_path)
    assert [s.existed for s in starts] == [False, True]  # the retry ran although output a was there
    assert root.output().load() == [{"a": task.output()["a"].load(), "b": task.output()["b"].load()}]
    figures.fault("partial output, then child SIGKILL (local)")


def test_master_sigkilled_between_two_dumps_of_a_master_task(tmp_path: Path, figures: Figures) -> None:
    flag, ledger_path = tmp_path / "fail", tmp_path / "ledger.txt"
    flag.touch()
    env = {"KANNON_FAULTS_FAIL_FLAG": str(flag), ledger.LEDGER_ENV: str(ledger_path)}
    first = Master(tmp_path, "tests.faults.ledger:partial_master", env=env, name="first")
    try:
        assert first.wait(timeout=300) == -signal.SIGKILL, first.output()  # the task killed its own master
        assert wait_processes_gone([first.marker], 10) == []
    finally:
        first.stop()
    task: Any = ledger.MasterTwoOutputs(name="pm", how="sigkill", fail_flag=str(flag), ledger=str(ledger_path))
    assert task.output()["a"].exists() and not task.complete()
    flag.unlink()
    second = Master(tmp_path, "tests.faults.ledger:partial_master", env=env, name="second")
    try:
        assert second.wait(timeout=300) == 0, second.output()
    finally:
        second.stop()
    kinds = {e["kind"] for e in second.tail.events if e.get("family") == "MasterTwoOutputs"}
    assert "planned" in kinds and "succeeded" in kinds and "skipped_complete" not in kinds
    assert same_run(task)
    figures.fault("partial output, then master SIGKILL (master task)")


def kill_mid_dump(tmp_path: Path, executor_factory: Any, figures: Figures, backend: str) -> None:
    hold, announce = tmp_path / "hold", tmp_path / "announce"
    hold.touch()
    announce.mkdir()
    task: Any = ledger.BigDump(name="big", hold=str(hold), announce_dir=str(announce))
    target = Path(task.output().path())

    def kill_while_dumping() -> None:
        pid = announced_pid(announce, "big")
        temps = wait_until(lambda: [p for p in target.parent.glob(target.name + "-luigi-tmp-*") if p.stat().st_size],
                           60, "no partly written temporary file")  # fmt: skip
        assert not target.exists()
        assert temps[0].stat().st_size > 1_000_000  # megabytes of the dump are on disk already
        os.kill(pid, signal.SIGKILL)

    injector = Background(kill_while_dumping)
    first = build(Kannon(executor=executor_factory(), retries=0), task)
    injector.join()
    rec = first.tasks[unique_id(task)]
    assert rec.status is Status.FAILED and rec.last is not None
    assert (rec.last.exit_code, rec.last.failure_class) == (137, "Killed"), rec.describe()
    assert not target.exists() and not task.complete()
    assert placements(task)[unique_id(task)] is Placement.BULLET  # a rerun runs it again

    hold.unlink()
    second = Kannon(executor=executor_factory(), retries=0).build(task)
    assert second.tasks[unique_id(task)].status is Status.SUCCEEDED
    lines = task.output().load()
    assert len(lines) == 200_001 and lines[0] == "line 0000000 of big" and lines[-1] == "end"
    figures.fault(f"child SIGKILL in the middle of a large dump ({backend})")


def test_child_killed_during_a_large_dump_local(tmp_path: Path, figures: Figures) -> None:
    kill_mid_dump(tmp_path, LocalExecutor, figures, "local")


@pytest.mark.k8s
def test_child_killed_during_a_large_dump_kubernetes_emulator(tmp_path: Path, figures: Figures,
                                                              kube: KubeEmulator) -> None:  # fmt: skip
    kill_mid_dump(tmp_path, lambda: k8s_executor(kube, tmp_path), figures, "kubernetes emulator")
