"""Dynamic dependencies on the Kubernetes backend against the emulator (issue 13): a master task's yield of bullets
runs each in a pod of its own Job."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kannon.backends.kubernetes import LABEL_RUN
from kannon.result import Status
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_k8s_backend_build import executor
from tests.faults.harness import Master, k8s_args
from tests.support import dynscenarios
from tests.support import dyntasks as dt

pytestmark = pytest.mark.k8s


def test_a_master_yield_of_bullets_runs_them_in_pods(kube: KubeEmulator, tmp_path: Path) -> None:
    root = dt.Yielder(names=["k1", "k2"], runs_dir=str(tmp_path))
    result = Kannon(executor=executor(kube, tmp_path)).build(root)
    out = root.output().load()
    assert out["pid"] == os.getpid() and [v["name"] for v in out["values"]] == ["k1", "k2"]
    assert os.getpid() not in [v["pid"] for v in out["values"]]
    bullets = [r for r in result.tasks.values() if r.family == "PidBullet"]
    assert len(bullets) == 2 and {r.requested_by for r in bullets} == {result.root_id}
    for rec in bullets:
        assert rec.status is Status.SUCCEEDED and len(rec.attempts) == 1
        assert rec.last is not None and (rec.last.where or "").startswith("pod kannon-pidbullet-")
    assert len(kube.jobs()) == 2  # one Job per yielded bullet, none for the master task
    assert [len(dt.runs(tmp_path, n)) for n in ["yielder", "k1", "k2"]] == [2, 1, 1]


def test_a_bullet_that_yields_in_its_pod_runs_again_in_a_new_pod(kube: KubeEmulator, tmp_path: Path) -> None:
    root = dt.BulletYielder(names=["p1"], runs_dir=str(tmp_path))
    result = Kannon(executor=executor(kube, tmp_path)).build(root)
    out = root.output().load()
    assert [v["name"] for v in out["values"]] == ["p1"]
    yielder = result.tasks[result.root_id]
    assert [a.number for a in yielder.attempts] == [1, 2] and yielder.attempts[0].requested
    wheres = [a.where or "" for a in yielder.attempts]
    assert all(w.startswith("pod kannon-bulletyielder-") for w in wheres) and wheres[0] != wheres[1]
    (bullet,) = [r for r in result.tasks.values() if r.family == "PidBullet"]
    assert bullet.requested_by == result.root_id and (bullet.last.where or "").startswith("pod kannon-pidbullet-")
    assert len(dt.runs(tmp_path, "byielder")) == 2 and len(dt.runs(tmp_path, "p1")) == 1


def test_a_yielded_bullet_that_itself_yields_runs_each_level_in_its_own_pod(kube: KubeEmulator, tmp_path: Path) -> None:
    dynscenarios.nested_yield(lambda: executor(kube, tmp_path), tmp_path, "pod kannon-")
    jobs = sorted(n.split("-")[1] for n in kube.jobs())
    assert jobs == ["bulletyielder", "bulletyielder", "pidbullet"]  # a Job per launch of a bullet, none for the master


def test_a_yield_of_complete_tasks_launches_no_job(kube: KubeEmulator, tmp_path: Path) -> None:
    dynscenarios.yield_of_complete_tasks(lambda: executor(kube, tmp_path), tmp_path, "pod kannon-pidbullet-")
    assert len(kube.jobs()) == 2  # the two earlier builds' Jobs: the yield made none


def test_a_yielded_bullet_that_fails_in_its_pod_marks_the_yielder_upstream_failed(kube: KubeEmulator,
                                                                                  tmp_path: Path) -> None:  # fmt: skip
    dynscenarios.yielded_bullet_fails(lambda: executor(kube, tmp_path), tmp_path, "pod kannon-pidbullet-", 0)


def test_a_yielded_bullet_that_fails_once_in_its_pod_is_retried_and_the_yielder_finishes(kube: KubeEmulator,
                                                                                         tmp_path: Path) -> None:
    dynscenarios.yielded_bullet_fails_once(lambda: executor(kube, tmp_path), tmp_path, "pod kannon-pidbullet-")


def test_sigterm_while_yielded_bullets_run_in_pods_leaves_no_job_or_pod(kube: KubeEmulator, tmp_path: Path) -> None:
    def alive(master: Master) -> list[str]:
        out = [f"job {name}" for name, job in kube.jobs().items()
               if job["metadata"]["labels"].get(LABEL_RUN) == master.tail.run_id]  # fmt: skip
        out += [f"pod {name} ({pod['status'].get('phase')})" for name, pod in kube.pods().items()
                if pod["status"].get("phase") in ("Pending", "Running")]  # fmt: skip
        return out

    args, env = k8s_args(kube, tmp_path)
    dynscenarios.sigterm_while_yielded_bullets_run(tmp_path, args, env, alive)
    assert [n for n in kube.jobs() if n.startswith("kannon-")] == []  # the Jobs were deleted, not just finished
