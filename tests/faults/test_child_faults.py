"""Children killed (SIGKILL, out of memory), API storms, Jobs deleted from outside, pods that never start.

In each run the affected tasks either complete through retries or fail with the right failure class — and only
they: the branches that do not depend on them still finish (keep_going), those that do are upstream_failed.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.base import Executor
from kannon.backends.docker import LABEL_ATTEMPT, LABEL_TASK, DockerExecutor
from kannon.backends.kubernetes import K8sJobExecutor
from kannon.backends.local import LocalExecutor
from kannon.handoff import unique_id
from kannon.result import BuildResult, KannonBuildError, Status, TaskRecord
from kannon.scheduler import Kannon
from kannon.testing import KubeEmulator
from tests.e2e.docker.support import python_volumes
from tests.faults import ledger
from tests.faults.figures import Figures
from tests.faults.harness import PY, REPO, read_ledger, wait_until
from tests.support.services import TEST_IMAGE as IMAGE

Killer = Callable[[Any, int], None]  # (task, pid announced by its first attempt) -> kill that attempt


def build(kannon: Kannon, root: Any) -> BuildResult:
    try:
        return kannon.build(root)
    except KannonBuildError as e:
        return e.result


class Background:
    """Runs ``fn`` on a thread during a build; its exception is re-raised by ``join``."""

    def __init__(self, fn: Callable[[], None]) -> None:
        self.error: BaseException | None = None

        def guarded() -> None:
            try:
                fn()
            except BaseException as e:
                self.error = e

        self.thread = threading.Thread(target=guarded, daemon=True)
        self.thread.start()

    def join(self) -> None:
        self.thread.join(timeout=300)
        assert not self.thread.is_alive(), "the fault injector never finished"
        if self.error is not None:
            raise self.error


def announced_pid(announce: Path, name: str, attempt: int = 1, timeout: float = 180) -> int:
    path = announce / f"{name}.{attempt}.pid"
    wait_until(path.exists, timeout, f"{name} attempt {attempt} never started")
    return int(path.read_text())


# -- children killed: SIGKILL from outside, and out of memory -------------------------------------------------------
def kill_dag(announce: Path, hog: dict[str, Any]) -> dict[str, Any]:
    d = str(announce)
    t: dict[str, Any] = {}
    t["v1"] = ledger.Sleeper(name="v1", announce_dir=d).with_hints(retries=1)  # killed once, then recovers
    t["v2"] = ledger.Sleeper(name="v2", announce_dir=d)  # killed, no retries: fails
    t["hog"] = ledger.LedgerHog(name="hog", announce_dir=d, block_attempts=0, hog_mb=hog.pop("mb"))
    if hog:
        t["hog"].with_hints(**hog)
    t["d2"] = ledger.Sleeper(name="d2", announce_dir=d, block_attempts=0, parents=[t["v2"]])
    t["dhog"] = ledger.Sleeper(name="dhog", announce_dir=d, block_attempts=0, parents=[t["hog"]])
    t["dv1"] = ledger.Sleeper(name="dv1", announce_dir=d, block_attempts=0, parents=[t["v1"]])
    t["ind"] = ledger.Sleeper(name="ind", announce_dir=d, block_attempts=0)
    t["root"] = ledger.Collect(parents=[t["d2"], t["dhog"], t["dv1"], t["ind"]])
    return t


def records(result: BuildResult, tasks: dict[str, Any]) -> dict[str, TaskRecord]:
    return {name: result.tasks[unique_id(task)] for name, task in tasks.items()}


def check_kill_outcome(result: BuildResult, tasks: dict[str, Any]) -> None:
    r = records(result, tasks)
    v1, v2, hog = r["v1"], r["v2"], r["hog"]
    assert v1.status is Status.SUCCEEDED, v1.describe()
    assert [(a.exit_code, a.failure_class) for a in v1.attempts] == [(137, "Killed"), (0, None)]
    assert v2.status is Status.FAILED and len(v2.attempts) == 1
    assert (v2.attempts[0].exit_code, v2.attempts[0].failure_class) == (137, "Killed"), v2.describe()
    assert hog.status is Status.FAILED and hog.last is not None
    assert hog.last.failure_class == "OOMKilled", hog.describe()
    assert "memory" in (hog.reason or "")
    assert {name for name, rec in r.items() if rec.status is Status.FAILED} == {"v2", "hog"}
    assert {name for name, rec in r.items() if rec.status is Status.UPSTREAM_FAILED} == {"d2", "dhog", "root"}
    assert {name for name, rec in r.items() if rec.status is Status.SUCCEEDED} == {"v1", "dv1", "ind"}
    assert tasks["dv1"].output().load() == "dv1:v1:"


def run_kill_scenario(tmp_path: Path, figures: Figures, backend: str, executor: Executor, kill: Killer,
                      hog: dict[str, Any], **kannon_args: Any) -> None:  # fmt: skip
    announce = tmp_path / "announce"
    announce.mkdir()
    tasks = kill_dag(announce, hog)

    def inject() -> None:
        for name in ("v1", "v2"):
            kill(tasks[name], announced_pid(announce, name))

    injector = Background(inject)
    result = build(Kannon(executor=executor, retries=0, retry_delay=0.05, **kannon_args), tasks["root"])
    injector.join()
    figures.fault(f"child SIGKILL ({backend})", 2)
    figures.fault(f"child out of memory ({backend})")
    check_kill_outcome(result, tasks)


def kill_pid(task: Any, pid: int) -> None:
    os.kill(pid, signal.SIGKILL)


def test_children_killed_local(tmp_path: Path, figures: Figures) -> None:
    # The memory hint limits resident memory locally (a memory cgroup per child, else an RSS watchdog), as on
    # Docker and Kubernetes: the hog is killed long before it has touched its 512 MB.
    run_kill_scenario(tmp_path, figures, "local", LocalExecutor(max_workers=4), kill_pid,
                      {"mb": 512, "memory": "96Mi"})  # fmt: skip


def k8s_template(workdir: Path) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default"},
        "spec": {"template": {"spec": {"containers": [{
            "name": "main", "image": "kannon-test:latest", "workingDir": str(workdir),
            "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}},
    }  # fmt: skip


def k8s_executor(kube: KubeEmulator, workdir: Path, **kw: Any) -> K8sJobExecutor:
    kw.setdefault("retry_backoff", 0.05)
    return K8sJobExecutor(k8s_template(workdir), api_client=kube.api_client(), python=PY, **kw)


@pytest.mark.k8s
def test_children_killed_kubernetes_emulator(tmp_path: Path, figures: Figures, kube: KubeEmulator) -> None:
    kube.faults.pod_behaviour("^kannon-ledgerhog-", "OOMKilled")  # the kubelet's OOM kill: exit 137, reason OOMKilled
    run_kill_scenario(tmp_path, figures, "kubernetes emulator", k8s_executor(kube, tmp_path), kill_pid,
                      {"mb": 0, "memory": "64Mi"}, max_parallel=4)  # fmt: skip
    assert kube.faults.count("pod_behaviour") == 1


@pytest.mark.docker
def test_children_killed_docker(tmp_path: Path, figures: Figures, docker_engine: Any,
                                monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)  # the working directory (workspace, announce dir) is what gets mounted

    def kill_container(task: Any, pid: int) -> None:
        # pids inside a container are not the host's: kill the task's container, as `docker kill` would
        (container,) = docker_engine.containers.list(
            filters={"label": [f"{LABEL_TASK}={unique_id(task)}", f"{LABEL_ATTEMPT}=1"]}
        )
        container.kill(signal="SIGKILL")

    executor = DockerExecutor(IMAGE, volumes=python_volumes(), python=PY, environment={"PYTHONPATH": str(REPO)})
    # a real cgroup limit: the engine OOM-kills the container once the task touches more than it allows
    run_kill_scenario(tmp_path, figures, "docker", executor, kill_container, {"mb": 512, "memory": "96Mi"},
                      max_parallel=4)  # fmt: skip


# -- Kubernetes: API storms, Jobs deleted from outside, pods that never start ---------------------------------------
@pytest.mark.k8s
def test_api_storm_is_survived_without_duplicates(tmp_path: Path, figures: Figures, kube: KubeEmulator) -> None:
    """500s, 429s with Retry-After, connection resets, a create whose answer is lost, and a 410 Gone on resuming
    the watches: every task still runs exactly once, in exactly one Job."""
    ledger_path = tmp_path / "ledger.txt"
    sh = ledger.shape(size=10, master_every=0)
    tasks = ledger.build(sh, str(ledger_path), nap=0.3)
    bullets = [label for label in sh.parents if label not in sh.on_master]
    f = kube.faults
    # Rules apply in order to the next matching requests, so a single create may meet all six in a row: fewer
    # than the backend's 8 attempts per call (more is an outage, and is reported as one).
    f.fail_requests(2, 500, method="POST", path_regex="/jobs$")
    f.fail_requests(1, 503, method="POST", path_regex="/jobs$")
    f.reset_connections(2, method="POST", path_regex="/jobs$")
    f.drop_responses(1, method="POST", path_regex="/jobs$")  # the Job is created, the answer is lost
    f.fail_requests(2, 429, method="GET", path_regex="/pods/[^/]+/log$", retry_after=1)
    f.fail_requests(2, 500, method="GET", path_regex="/pods/[^/]+/log$")
    compacted_at: list[int] = []

    def expire_watches() -> None:
        kube.wait_for(lambda: len(kube.jobs()) >= 3, timeout=180, message="no Jobs were created")
        with kube._requests_lock:
            compacted_at.append(len(kube.requests))
        f.expire_watches()  # every revision handed out so far is now too old: resuming gets 410 Gone

    injector = Background(expire_watches)
    result = build(Kannon(executor=k8s_executor(kube, tmp_path), max_parallel=4), tasks["sink"])
    injector.join()
    assert result.ok, [r.describe() for r in result.failed]
    for label in bullets:
        rec = result.tasks[unique_id(tasks[label])]
        assert rec.status is Status.SUCCEEDED and len(rec.attempts) == 1, rec.describe()
    assert len(kube.jobs()) == len(bullets)  # one Job per task: no duplicate from a retried create
    starts, dones = read_ledger(ledger_path)
    assert sorted(s.label for s in starts) == sorted(sh.parents)  # every task's run() ran once
    assert len(dones) == len(sh.parents)
    expected = sh.expected_values()
    assert all(t.output().load()["value"] == expected[label] for label, t in tasks.items())
    # after the compaction the backend had to re-list (a watch resumed from its revision got 410 Gone)
    relists = [r for r in kube.requests[compacted_at[0]:]
               if r[0] == "GET" and r[1].endswith("/jobs") and r[2].get("watch") in (None, "false", "0")]  # fmt: skip
    assert relists, "the 410 Gone never forced a re-list"
    counts = {kind: f.count(kind) for kind in ("fail_request", "drop_response", "reset_connection")}
    assert counts == {"fail_request": 7, "drop_response": 1, "reset_connection": 2}, counts
    figures.fault("API HTTP 500/503 on create (kubernetes emulator)", 3)
    figures.fault("API HTTP 429 Retry-After (kubernetes emulator)", 2)
    figures.fault("API HTTP 500 on log read (kubernetes emulator)", 2)
    figures.fault("API response lost after create (kubernetes emulator)", 1)
    figures.fault("API connection reset (kubernetes emulator)", 2)
    figures.fault("watch 410 Gone (kubernetes emulator)", 1)


@pytest.mark.k8s
def test_deleted_job_and_unschedulable_pod_fail_only_their_tasks(tmp_path: Path, figures: Figures,
                                                                  kube: KubeEmulator) -> None:  # fmt: skip
    announce = tmp_path / "announce"
    announce.mkdir()
    d = str(announce)
    doomed = ledger.Doomed(name="doomed", announce_dir=d)
    stuck = ledger.Stuck(name="stuck", announce_dir=d)
    pull = ledger.Pull(name="pull", announce_dir=d, block_attempts=0)
    ind = ledger.Sleeper(name="ind", announce_dir=d, block_attempts=0)
    after_doomed = ledger.Sleeper(name="after-doomed", announce_dir=d, block_attempts=0, parents=[doomed])
    after_stuck = ledger.Sleeper(name="after-stuck", announce_dir=d, block_attempts=0, parents=[stuck])
    after_pull = ledger.Sleeper(name="after-pull", announce_dir=d, block_attempts=0, parents=[pull])
    root = ledger.Collect(parents=[after_doomed, after_stuck, after_pull, ind])
    kube.faults.pod_behaviour("^kannon-stuck-", "Unschedulable")
    kube.faults.pod_behaviour("^kannon-pull-", "ImagePullBackOff", times=1)

    def delete_doomed() -> None:
        announced_pid(announce, "doomed")  # its pod runs the task
        (name,) = [n for n in kube.jobs() if n.startswith("kannon-doomed-")]
        kube.faults.delete_job_externally(name)  # kubectl delete job

    injector = Background(delete_doomed)
    executor = k8s_executor(kube, tmp_path, pending_timeout=3.0)
    result = build(Kannon(executor=executor, max_parallel=6, retry_delay=0.05), root)
    injector.join()
    by = {name: result.tasks[unique_id(t)] for name, t in
          {"doomed": doomed, "stuck": stuck, "pull": pull, "ind": ind, "after-doomed": after_doomed,
           "after-stuck": after_stuck, "after-pull": after_pull, "root": root}.items()}  # fmt: skip
    assert by["doomed"].status is Status.FAILED and by["doomed"].last is not None
    assert by["doomed"].last.failure_class == "JobDeleted", by["doomed"].describe()
    assert by["stuck"].status is Status.FAILED and by["stuck"].last is not None
    assert by["stuck"].last.failure_class == "Unschedulable", by["stuck"].describe()
    pull_rec = by["pull"]
    assert pull_rec.status is Status.SUCCEEDED
    assert [(a.failure_class, a.infra) for a in pull_rec.attempts] == [("ImagePull", True), (None, False)]
    assert {n for n, r in by.items() if r.status is Status.FAILED} == {"doomed", "stuck"}
    assert {n for n, r in by.items() if r.status is Status.UPSTREAM_FAILED} == {"after-doomed", "after-stuck", "root"}
    assert {n for n, r in by.items() if r.status is Status.SUCCEEDED} == {"pull", "after-pull", "ind"}
    assert kube.faults.count("delete_job") == 1
    assert kube.faults.count("pod_behaviour") >= 2
    live = [n for n, p in kube.pods().items() if p["status"].get("phase") in ("Pending", "Running")]
    assert live == [], f"pods left running: {live}"
    figures.fault("Job deleted externally (kubernetes emulator)")
    figures.fault("pod stuck Pending: Unschedulable (kubernetes emulator)")
    figures.fault("image pull back-off (kubernetes emulator)")
