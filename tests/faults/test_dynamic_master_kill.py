"""Issue 13: the master SIGKILLed while a yielded bullet runs, then rerun — the yielded bullet's run() body executes
exactly once across both masters.

The bullet commits its output and then keeps its run() open (waiting on a file) when the master is killed: the kill
lands while the bullet still runs. The child dies with its master on the local backend (nothing of a killed master may
survive it, tests/faults/test_master_kill.py), so the second master finds the yielded bullet's output committed and
must treat the yield as satisfied — luigi's contract: a yielded task that is complete never runs again — instead of
launching it a second time. On Kubernetes and Docker the child outlives the master, so the kill lands in the middle of
the body and the second master must adopt the running Job / container."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from kannon.testing import KubeEmulator
from tests.faults.harness import (
    Master,
    docker_args,
    docker_leftovers,
    k8s_args,
    k8s_leftovers,
    local_leftovers,
    wait_processes_gone,
    wait_until,
    working_dir,
)
from tests.support import dyntasks as dt
from tests.support.services import TEST_IMAGE


def pipeline(tmp_path: Path, hold: Path) -> None:
    (tmp_path / "pipe.py").write_text(
        "from tests.support.dyntasks import YieldsHeld\n"
        f"def root():\n    return YieldsHeld(runs_dir={str(tmp_path)!r}, hold_file={str(hold)!r})\n")  # fmt: skip


@pytest.mark.timeout(600)
def test_master_sigkill_while_a_yielded_bullet_runs_then_rerun_runs_its_body_once(tmp_path: Path) -> None:
    hold = tmp_path / "hold"
    pipeline(tmp_path, hold)
    first = Master(tmp_path, "pipe.py:root", ["--max-parallel", "2"], name="gen1")
    try:
        wait_until(lambda: first.proc.poll() is not None or (tmp_path / "hold.dumped").exists(), 300,
                   "the yielded bullet to commit its output")  # fmt: skip
        assert first.proc.poll() is None, first.output()
        child = int((tmp_path / "hold.dumped").read_text())
        assert dt.runs(tmp_path, "held") == [child]  # the body is running, in a child of its own
        first.signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
        assert wait_processes_gone([first.marker], 30) == [] and local_leftovers(first) == 0
    finally:
        first.stop()
    assert [e["kind"] for e in first.tail.events if e["kind"] in ("succeeded", "failed")] == []  # killed mid-run
    hold.write_text("go")  # were the bullet launched again, its body would run to the end, not hang the test
    second = Master(tmp_path, "pipe.py:root", ["--max-parallel", "2"], name="gen2")
    try:
        assert second.wait(timeout=300) == 0, second.output()
    finally:
        second.stop()
    assert dt.runs(tmp_path, "held") == [child]  # exactly once across both masters
    yielder_runs = dt.runs(tmp_path, "yielder")
    assert yielder_runs == [first.pid, second.pid]  # stopped at the yield in the first; ran to the end in the second
    with working_dir(tmp_path):
        value = dt.YieldsHeld(runs_dir=str(tmp_path), hold_file=str(hold)).output().load()
    assert value == {"pid": second.pid, "value": {"name": "held", "pid": child}}  # the yield got the first output
    launched = [e["family"] for e in second.tail.events if e["kind"] == "launched"]
    assert launched == ["YieldsHeld"]  # the second master never launched the bullet


@pytest.mark.k8s
@pytest.mark.timeout(900)
def test_master_sigkill_mid_body_on_kubernetes_adopts_the_yielded_bullets_job(kube: KubeEmulator,
                                                                              tmp_path: Path) -> None:
    """On Kubernetes the yielded bullet's Job outlives the killed master: the kill lands in the middle of its body
    (before the dump), and the second master adopts the running Job by its deterministic name instead of starting the
    body again."""
    (tmp_path / "pipe.py").write_text(
        "from tests.support.dyntasks import Yielder\n"
        f"def root():\n    return Yielder(names=['kb'], runs_dir={str(tmp_path)!r}, "
        f"hold_dir={str(tmp_path)!r})\n")  # fmt: skip
    hold = tmp_path / "kb"
    args, env = k8s_args(kube, tmp_path)
    first = Master(tmp_path, "pipe.py:root", args, env, name="gen1")
    try:
        wait_until(lambda: first.proc.poll() is not None or (tmp_path / "kb.started").exists(), 300,
                   "the yielded bullet's body to start in its pod")  # fmt: skip
        assert first.proc.poll() is None, first.output()
        first.signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
        run_id = first.tail.run_id
    finally:
        first.stop()
    pod_pid = int((tmp_path / "kb.started").read_text())
    jobs = [n for n in kube.jobs() if n.startswith("kannon-pidbullet-")]
    assert len(jobs) == 1  # the yielded bullet's Job outlived its master, its body still running
    second = Master(tmp_path, "pipe.py:root", args, env, name="gen2")
    try:
        assert second.wait_event(lambda e: e["kind"] == "started" and e["family"] == "PidBullet", timeout=300)
        hold.write_text("go")  # the held body may finish now, in the pod the first master launched
        assert second.wait(timeout=300) == 0, second.output()
    finally:
        second.stop()
    assert dt.runs(tmp_path, "kb") == [pod_pid]  # exactly once across both masters
    assert [n for n in kube.jobs() if n.startswith("kannon-pidbullet-")] == jobs  # adopted, not a second Job
    started = [e for e in second.tail.events if e["kind"] == "started" and e["family"] == "PidBullet"]
    assert len(started) == 1 and "adopted" in started[0].get("where", "")
    with working_dir(tmp_path):
        out = dt.Yielder(names=["kb"], runs_dir=str(tmp_path), hold_dir=str(tmp_path)).output().load()
    assert out["values"] == [{"name": "kb", "pid": pod_pid}]
    assert run_id is not None and k8s_leftovers(kube, run_id) == []


@pytest.mark.docker
@pytest.mark.timeout(900)
def test_master_sigkill_mid_body_on_docker_adopts_the_yielded_bullets_container(docker_engine: Any,
                                                                                tmp_path: Path) -> None:
    """As on Kubernetes: the container outlives the killed master, and the second master adopts it (by its
    deterministic name) instead of starting the yielded bullet's body again."""
    (tmp_path / "pipe.py").write_text(
        "from tests.support.dyntasks import Yielder\n"
        f"def root():\n    return Yielder(names=['db'], runs_dir={str(tmp_path)!r}, "
        f"hold_dir={str(tmp_path)!r})\n")  # fmt: skip
    args = docker_args(TEST_IMAGE)
    first = Master(tmp_path, "pipe.py:root", args, name="gen1")
    try:
        wait_until(lambda: first.proc.poll() is not None or (tmp_path / "db.started").exists(), 300,
                   "the yielded bullet's body to start in its container")  # fmt: skip
        assert first.proc.poll() is None, first.output()
        first.signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
        run_id = first.tail.run_id
    finally:
        first.stop()
    assert run_id is not None
    body = dt.runs(tmp_path, "db")
    running = docker_engine.containers.list(filters={"label": f"kannon.io/run-id={run_id}"})
    assert len(body) == 1 and len(running) == 1  # the yielded bullet's container outlived its master
    second = Master(tmp_path, "pipe.py:root", args, name="gen2")
    try:
        assert second.wait_event(lambda e: e["kind"] == "started" and e["family"] == "PidBullet", timeout=300)
        (tmp_path / "db").write_text("go")  # the held body may finish now, in the container of the first master
        assert second.wait(timeout=300) == 0, second.output()
    finally:
        second.stop()
    assert dt.runs(tmp_path, "db") == body  # exactly once across both masters
    started = [e for e in second.tail.events if e["kind"] == "started" and e["family"] == "PidBullet"]
    assert len(started) == 1 and "adopted" in started[0].get("where", ""), started
    with working_dir(tmp_path):
        out = dt.Yielder(names=["db"], runs_dir=str(tmp_path), hold_dir=str(tmp_path)).output().load()
    assert [v["name"] for v in out["values"]] == ["db"]
    assert docker_leftovers(docker_engine, run_id) == []


@pytest.mark.k8s
@pytest.mark.timeout(900)
@pytest.mark.xfail(strict=True, reason="kannon/backends/kubernetes deletes an earlier master's finished Jobs at start "
                   "and relaunches the task, instead of reading the request of a Job that exited 10 (issue 13)")
def test_a_job_that_yielded_after_its_master_died_is_read_not_relaunched(kube: KubeEmulator, tmp_path: Path) -> None:
    """The master is killed while a bullet runs; the bullet then stops at its yield (exit 10, its request written)
    with no master to read it. The next master should read that request from the finished Job rather than run the
    yielding body a further time: across both masters its run() starts twice (the yield, then the end)."""
    (tmp_path / "pipe.py").write_text(
        "from tests.support.dyntasks import HeldBulletYielder\n"
        f"def root():\n    return HeldBulletYielder(names=['r1'], runs_dir={str(tmp_path)!r}, "
        f"hold_file={str(tmp_path / 'h')!r})\n")  # fmt: skip
    args, env = k8s_args(kube, tmp_path)
    first = Master(tmp_path, "pipe.py:root", args, env, name="gen1")
    try:
        wait_until(lambda: first.proc.poll() is not None or (tmp_path / "h.started").exists(), 300,
                   "the bullet's body to start in its pod")  # fmt: skip
        assert first.proc.poll() is None, first.output()
        first.signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
    finally:
        first.stop()
    (tmp_path / "h").write_text("go")  # the orphaned child yields now, and exits 10 with nobody to read it

    def yielded_job_finished() -> bool:
        return any(c.get("type") == "Failed" and c.get("status") == "True"
                   for name, job in kube.jobs().items() if name.startswith("kannon-heldbulletyielder-")
                   for c in job.get("status", {}).get("conditions", []))  # fmt: skip

    wait_until(yielded_job_finished, 300, "the orphaned Job to end at its yield")
    assert len(dt.runs(tmp_path, "hyielder")) == 1 and dt.runs(tmp_path, "r1") == []
    second = Master(tmp_path, "pipe.py:root", args, env, name="gen2")
    try:
        assert second.wait(timeout=300) == 0, second.output()
    finally:
        second.stop()
    assert len(dt.runs(tmp_path, "r1")) == 1
    assert len(dt.runs(tmp_path, "hyielder")) == 2  # the yield (first master's pod), then the end: no further yield


@pytest.mark.docker
@pytest.mark.timeout(900)
@pytest.mark.xfail(strict=True, reason="kannon/backends/docker.py removes an earlier master's exited containers at "
                   "start and relaunches the task, instead of reading the request of one that exited 10 (issue 13)")
def test_a_container_that_yielded_after_its_master_died_is_read_not_relaunched(docker_engine: Any,
                                                                               tmp_path: Path) -> None:
    """The Docker twin of the Kubernetes case above."""
    (tmp_path / "pipe.py").write_text(
        "from tests.support.dyntasks import HeldBulletYielder\n"
        f"def root():\n    return HeldBulletYielder(names=['r1'], runs_dir={str(tmp_path)!r}, "
        f"hold_file={str(tmp_path / 'h')!r})\n")  # fmt: skip
    args = docker_args(TEST_IMAGE)
    first = Master(tmp_path, "pipe.py:root", args, name="gen1")
    try:
        wait_until(lambda: first.proc.poll() is not None or (tmp_path / "h.started").exists(), 300,
                   "the bullet's body to start in its container")  # fmt: skip
        assert first.proc.poll() is None, first.output()
        first.signal(signal.SIGKILL)
        assert first.wait(timeout=60) == -signal.SIGKILL
        run_id = first.tail.run_id
    finally:
        first.stop()
    (tmp_path / "h").write_text("go")  # the orphaned child yields now, and exits 10 with nobody to read it

    def exited_10() -> bool:
        found = docker_engine.containers.list(all=True, filters={"label": f"kannon.io/run-id={run_id}"})
        return any(c.status == "exited" and c.attrs["State"]["ExitCode"] == 10 for c in found)

    wait_until(exited_10, 300, "the orphaned container to end at its yield")
    assert len(dt.runs(tmp_path, "hyielder")) == 1 and dt.runs(tmp_path, "r1") == []
    second = Master(tmp_path, "pipe.py:root", args, name="gen2")
    try:
        assert second.wait(timeout=300) == 0, second.output()
    finally:
        second.stop()
    assert len(dt.runs(tmp_path, "r1")) == 1
    assert len(dt.runs(tmp_path, "hyielder")) == 2  # the yield (first master's container), then the end
