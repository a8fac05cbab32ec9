"""Packs on the emulator (issue 16): bullets that are ready together share one Job's pod, side by side
(``K8sJobExecutor(pack=N)``, kannon.pack), and each keeps its own outcome, record, log and retries."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

import kannon
from kannon.backends.kubernetes import K8sJobExecutor
from kannon.result import Status
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from tests.e2e.k8s import test_k8s_backend_build as kb
from tests.e2e.k8s.test_k8s_backend_build import PY, WAITING
from tests.support import dyntasks as dt
from tests.support.tasks import Bullet, Join

# Packs hold bullets whose size is declared (here the template's, as a LimitRange would give): 100m and 64Mi each
SMALL = {"requests": {"cpu": "100m", "memory": "64Mi"}}


def executor(kube: KubeEmulator, workdir: Path, **kw: Any) -> K8sJobExecutor:
    return K8sJobExecutor(kb.template(workdir, resources=SMALL), api_client=kube.api_client(), python=PY,
                          retry_backoff=0.05, **kw)  # fmt: skip


def cli(kube: KubeEmulator, tmp_path: Path, events: Path, *extra: str) -> subprocess.Popen[str]:
    """``kannon build`` of the WAITING pipeline with ``--k8s-pack 2`` (kb.cli's, with the template's sizes)."""
    body = kb.template(tmp_path, resources=SMALL)
    body["spec"]["template"]["spec"]["containers"][0]["env"].append(
        {"name": "K8S_E2E_FLAG", "value": str(tmp_path / "release")})
    (tmp_path / "job.yaml").write_text(yaml.safe_dump(body))
    argv = [PY, "-m", "kannon", "build", f"{tmp_path / 'waitpipe.py'}:root", "--backend", "kubernetes",
            "--job-template", str(tmp_path / "job.yaml"), "--k8s-python", PY, "--events", str(events),
            "--k8s-pack", "2", *extra]  # fmt: skip
    env = {**os.environ, "KUBECONFIG": str(kube.write_kubeconfig(tmp_path / "kubeconfig")),
           "PYTHONPATH": str(kb.REPO)}  # fmt: skip
    return subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)  # fmt: skip


def _containers(job: dict) -> list[dict]:  # type: ignore[type-arg]
    return job["spec"]["template"]["spec"]["containers"]  # type: ignore[no-any-return]


def test_ready_bullets_share_pods_and_keep_their_own_results(kube: KubeEmulator, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    bullets = [Bullet(name=f"b{i}", marker=f"marker-of-b{i}") for i in range(8)]
    root = Join(parents=bullets)
    result = Kannon(executor=executor(kube, tmp_path, pack=4), max_parallel=8).build(root)
    assert result.ok, result
    assert root.output().load() == [f"b{i}()" for i in range(8)]
    jobs = kube.jobs()
    # eight bullets ready at once, four per pod: two pods, each running its members side by side
    assert len(jobs) == 2, sorted(jobs)
    for job in jobs.values():
        assert job["metadata"]["labels"]["kannon.io/pack"] == "4"
        assert _containers(job)[0]["command"][-1] == "run-pack"
        # the scheduler sees what the four members need together
        assert _containers(job)[0]["resources"] == {"requests": {"cpu": "400m", "memory": str(4 * 64 * 2**20)}}
    logs = Path(result.run_dir or "") / "logs" / result.invocation_id
    for i, bullet in enumerate(bullets):
        rec = result.tasks[bullet.make_unique_id()]
        assert rec.status is Status.SUCCEEDED
        assert rec.last is not None and (rec.last.where or "").startswith("pod kannon-pack-")
        assert rec.last.usage is not None  # the member's own record reached its attempt
        own = (logs / f"Bullet-{bullet.make_unique_id()[:12]}-1.log").read_text()
        assert f"marker-of-b{i}" in own
        assert not any(f"marker-of-b{j}" in own for j in range(8) if j != i)  # the pod's log, split by member


def test_a_failing_member_fails_alone_and_its_retry_runs_in_a_pod_of_its_own(
        kube: KubeEmulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    counters = tmp_path / "counters"
    counters.mkdir()
    bullets = [Bullet(name=f"b{i}", fail_times=1 if i == 1 else 0, counter_dir=str(counters)) for i in range(4)]
    root = Join(parents=bullets)
    result = Kannon(executor=executor(kube, tmp_path, pack=4), max_parallel=4, retries=1,
                    retry_delay=0.0).build(root)  # fmt: skip
    assert result.ok, result
    failed = result.tasks[bullets[1].make_unique_id()]
    assert [a.failure_class for a in failed.attempts] == ["TaskFailed", None]
    assert "planned failure of b1" in (failed.attempts[0].reason or "")
    for i in (0, 2, 3):
        assert len(result.tasks[bullets[i].make_unique_id()].attempts) == 1
    jobs = kube.jobs()
    packs = [j for j in jobs.values() if "kannon.io/pack" in j["metadata"]["labels"]]
    assert len(packs) == 1 and len(jobs) == 2  # the retry was the only launch ready: a pod of its own


def _waiting_pack(kube: KubeEmulator, tmp_path: Path, events: str) -> subprocess.Popen[str]:
    master = cli(kube, tmp_path, tmp_path / events)
    running = lambda: [p for p in kube.pods().values() if p["status"].get("phase") == "Running"]  # noqa: E731
    try:
        kube.wait_for(lambda: len(running()) == 1 and _both_wait(tmp_path / events) or master.poll() is not None,
                      timeout=120, message="the pack's two members never ran")  # fmt: skip
    except BaseException:
        os.killpg(master.pid, signal.SIGKILL)
        raise
    assert master.poll() is None, master.communicate()[0]
    return master


def _both_wait(events: Path) -> bool:
    lines = events.read_text().splitlines() if events.exists() else []
    return sum(1 for ln in lines if '"started"' in ln) == 2


def test_a_restarted_master_deletes_a_running_pack_and_runs_its_members_again(kube: KubeEmulator,
                                                                              tmp_path: Path) -> None:  # fmt: skip
    """An earlier master's pack is never adopted: its members and their new attempts would write the same outputs.
    The restarted master deletes it before it launches anything, then runs the members again."""
    (tmp_path / "waitpipe.py").write_text(WAITING)
    first = _waiting_pack(kube, tmp_path, "events1.jsonl")
    os.killpg(first.pid, signal.SIGKILL)  # the master dies without any cleanup
    first.communicate()
    (old,) = kube.jobs().values()
    assert old["metadata"]["labels"]["kannon.io/pack"] == "2"
    old_pods = [p["metadata"]["uid"] for p in kube.pods().values()]

    second = cli(kube, tmp_path, tmp_path / "events2.jsonl")
    try:
        kube.wait_for(lambda: _both_wait(tmp_path / "events2.jsonl") or second.poll() is not None, timeout=120,
                      message="the members never started again")  # fmt: skip
        assert second.poll() is None, second.communicate()[0]
        (new,) = kube.jobs().values()
        assert new["metadata"]["uid"] != old["metadata"]["uid"]
        assert not any(p["metadata"]["uid"] in old_pods for p in kube.pods().values())  # deleted with its Job
        (tmp_path / "release").touch()
        out, _ = second.communicate(timeout=120)
    finally:
        if second.poll() is None:
            os.killpg(second.pid, signal.SIGKILL)
            second.communicate()
    assert second.returncode == 0, out
    assert (tmp_path / "resources").exists()


def test_ctrl_c_deletes_the_pack_and_leaves_no_pod(kube: KubeEmulator, tmp_path: Path) -> None:
    (tmp_path / "waitpipe.py").write_text(WAITING)
    master = _waiting_pack(kube, tmp_path, "events.jsonl")
    os.killpg(master.pid, signal.SIGINT)
    out, _ = master.communicate(timeout=120)
    assert master.returncode == 130, out
    assert "Traceback" not in out
    kube.wait_for(lambda: not kube.jobs() and not kube.pods(), timeout=60, message="the pack outlived its master")
    records = [json.loads(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    cancelled = [e for e in records if e["kind"] == "cancelled" and e.get("family") == "K8sWaiter"]
    assert len(cancelled) == 2, records  # each member, as two pods' bullets would be


def test_a_member_that_ends_first_is_done_while_its_pod_runs_on(kube: KubeEmulator, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A pack must not hold a finished member's slot (and its dependents) until its slowest member ends: once the
    pod's log is followed and the pack has run ``EARLY_AFTER`` (10 s), a member's end line finishes it. Here the
    slow member waits for a file that only the fast member's reported success creates: without that, the run
    would wait until the slow one gives up (120 s)."""
    monkeypatch.chdir(tmp_path)
    flag = tmp_path / "fast-is-done"
    fast, slow = Bullet(name="fast"), Bullet(name="slow", wait_file=str(flag))

    class Releaser:
        @kannon.hookimpl
        def kannon_task_success(self, event: Any) -> None:
            if event.task_id == fast.make_unique_id():
                flag.touch()

    result = Kannon(executor=executor(kube, tmp_path, pack=2, log_follow_after=0), max_parallel=2,
                    observers=[Releaser()]).build(Join(parents=[fast, slow]))  # fmt: skip
    assert result.ok, result
    (job,) = kube.jobs().values()
    assert job["metadata"]["labels"]["kannon.io/pack"] == "2"
    done = {b.name: result.tasks[b.make_unique_id()].last for b in (fast, slow)}
    assert all(a is not None and a.finished_at is not None for a in done.values())
    assert done["fast"].finished_at < done["slow"].finished_at  # type: ignore[union-attr,operator]
    assert (done["fast"].where or "").startswith("pod kannon-pack-")  # type: ignore[union-attr]


def test_members_that_yield_get_their_dependencies_and_run_again(kube: KubeEmulator, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    """A member's yield (issue 13) travels in its own record, as a lone pod's does: two packed bullets that each
    yield a bullet get them run, then run again, each with its own values."""
    monkeypatch.chdir(tmp_path)
    yielders = [dt.BulletYielder(names=[f"p{i}"], runs_dir=str(tmp_path)) for i in range(2)]
    result = Kannon(executor=executor(kube, tmp_path, pack=2), max_parallel=2).build(Join(parents=yielders))
    assert result.ok, result
    for i, y in enumerate(yielders):
        assert [v["name"] for v in y.output().load()["values"]] == [f"p{i}"]
        attempts = result.tasks[y.make_unique_id()].attempts
        assert [a.number for a in attempts] == [1, 2] and attempts[0].requested and not attempts[1].requested
    assert len(dt.runs(tmp_path, "byielder")) == 4 and len(dt.runs(tmp_path, "p0")) == 1
    firsts = {result.tasks[y.make_unique_id()].attempts[0].where for y in yielders}
    assert len(firsts) == 1 and next(iter(firsts), "").startswith("pod kannon-pack-")  # one pod yielded for both
    # what became ready later (each yield is planned on its own) ran as it came: packed or alone
