"""A watch that cannot go on must not hang the build, and a fatal backend error must still clean up (issue 10 §2).

Mid-run, the emulator revokes permissions (403, as RBAC would), compacts the watch history (a resumed watch gets 410
and must re-list) and closes every watch stream (as an apiserver restart does). The running attempts must end with
a classified backend failure naming the cause, the backend must refuse further launches, and the run's Jobs must be
deleted by name and confirmed gone (a name-only GET answering 404; list is what was lost) — or each Finished names
the Job left behind and why. Every wait is bounded by the Recorder's timeout: a hang fails the test.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.base import BackendError
from kannon.testing import KubeEmulator
from tests.e2e.k8s import test_k8s_backend as kb
from tests.e2e.k8s.test_k8s_backend import launch_of, wait_flag

make = kb.make  # the executor factory fixture

pytestmark = pytest.mark.k8s


def _run_two(make: Any, tmp_path: Path) -> tuple[Any, Any, list[Any]]:
    executor, rec = make()
    launches = [launch_of(tmp_path, n, wait_flag(tmp_path / "never")) for n in (1, 2)]
    for launch in launches:
        executor.launch(launch)
    for launch in launches:
        rec.wait_started(launch.key)
    return executor, rec, launches


def _lose_the_watches(kube: KubeEmulator) -> None:
    kube.faults.expire_watches()  # a watch resumed from its resourceVersion now gets 410: it must re-list


@pytest.mark.parametrize("cause", ["list revoked", "API unreachable"])
def test_a_watch_that_cannot_relist_ends_its_attempts_cleans_up_and_stops_launching(
    kube: KubeEmulator, make: Any, tmp_path: Path, cause: str
) -> None:
    executor, rec, launches = _run_two(make, tmp_path)
    if cause == "list revoked":
        kube.faults.forbid("list", "jobs")
        kube.faults.forbid("list", "pods")
        said = "may not list"
    else:  # every list and watch of the run's collections answers 503, far longer than the caller's retries
        kube.faults.fail_requests(100_000, 503, method="GET", path_regex=r"/(jobs|pods)$")
        said = "kept failing"
    _lose_the_watches(kube)
    for launch in launches:
        fin = rec.wait_finished(launch.key)  # before the fix: never (the watch thread died silently)
        assert fin.failure_class == "WatchLost", fin
        assert fin.reason is not None and said in fin.reason, fin.reason
        assert "deleted" in fin.reason and "confirmed gone" in fin.reason, fin.reason
    # Finished came only after the deletes were confirmed: nothing of the run is left, pods included
    assert kube.jobs() == {} and kube.pods() == {}
    with pytest.raises(BackendError, match=said):
        executor.launch(launch_of(tmp_path, 3, "print('never')"))
    assert executor.live_keys() == []


def test_an_api_server_gone_for_good_costs_one_retry_window_not_one_per_job(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """Seen on a 10,000-bullet benchmark whose emulator died: the watch was lost, each of the 100 running attempts
    was ended with a delete by name, and every delete spent the API caller's whole retry window again (8 attempts,
    up to 60 s, 8 at a time): the master took minutes to end, SIGTERM or not. Once one call spent the window, the
    others are tried once: here, exactly one DELETE per Job, and each attempt's reason names the Job left and why."""
    executor, rec = make()
    launches = [launch_of(tmp_path, n, wait_flag(tmp_path / "never")) for n in range(4)]
    for launch in launches:
        executor.launch(launch)
    for launch in launches:
        rec.wait_started(launch.key)
    names = set(kube.jobs())
    before = len(kb.requests(kube, "DELETE", "/jobs/"))
    kube.faults.fail_requests(100_000, 503)  # every request, of every kind, from now on
    _lose_the_watches(kube)
    for launch in launches:
        fin = rec.wait_finished(launch.key)
        assert fin.failure_class == "WatchLost", fin
        assert fin.reason is not None and "left running" in fin.reason and "tried once" in fin.reason, fin.reason
        assert fin.where is not None and fin.where.removeprefix("job ") in names
    deletes = kb.requests(kube, "DELETE", "/jobs/")[before:]
    assert len(deletes) == len(names), deletes  # before: 8 attempts for each Job
    kube.faults.clear()


def test_list_and_watch_revoked_mid_run_still_deletes_every_job_by_name(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    executor, rec, launches = _run_two(make, tmp_path)
    for verb in ("list", "watch"):
        for resource in ("jobs", "pods"):
            kube.faults.forbid(verb, resource)
    kube.faults.end_watches()
    for launch in launches:
        fin = rec.wait_finished(launch.key)
        assert fin.failure_class == "WatchLost", fin
        assert fin.reason is not None and "may not" in fin.reason and "confirmed gone" in fin.reason, fin.reason
    assert kube.jobs() == {} and kube.pods() == {}
    assert executor.cancel_all(timeout=5) == []


def test_jobs_that_cannot_be_deleted_are_named_with_the_reason(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    executor, rec, launches = _run_two(make, tmp_path)
    for verb in ("list", "watch", "delete"):
        kube.faults.forbid(verb, "jobs")
    kube.faults.forbid("list", "pods")
    kube.faults.forbid("watch", "pods")
    names = set(kube.jobs())
    kube.faults.end_watches()
    for launch in launches:
        fin = rec.wait_finished(launch.key)
        assert fin.failure_class == "WatchLost", fin
        assert fin.reason is not None and "left running" in fin.reason and "may not delete jobs" in fin.reason
        assert fin.where is not None and fin.where.removeprefix("job ") in names
        assert fin.where.removeprefix("job ") in fin.reason
    assert set(kube.jobs()) == names  # nothing was deleted: the reasons above say so
    kube.faults.clear()


WAITING = """
import os, time, luigi, kannon

class LossWait(kannon.TaskOnBullet[str]):
    n = luigi.IntParameter()

    def run(self) -> None:
        while not os.path.exists(FLAG):
            time.sleep(0.05)
        self.dump("done")

class LossAfter(kannon.TaskOnBullet[str]):
    def requires(self):
        return LossWait(n=0)

    def run(self) -> None:
        self.dump("after")

class LossJoin(kannon.TaskOnBullet[str]):  # no master task: build() may run in the test's thread
    def requires(self):
        return [LossAfter(), LossWait(n=1), LossWait(n=2)]

    def run(self) -> None:
        self.dump("never")

root = LossJoin()
"""


def test_a_build_whose_watch_is_lost_fails_promptly_and_leaves_no_job(kube: KubeEmulator, tmp_path: Path) -> None:
    """The reproduction of issue 10 §2: list on jobs and pods revoked mid-run, history compacted, watches closed.
    Before the fix the build was still running long after; now it fails, launches nothing more, and cleans up."""
    from kannon.result import KannonBuildError, Status
    from kannon.scheduler import Kannon
    from tests.e2e.k8s.test_k8s_backend_build import executor, pipeline

    flag = tmp_path / "never"
    root, extra = pipeline(tmp_path, f"FLAG = {str(flag)!r}\n" + WAITING)
    outcome: list[BaseException | None] = []

    def build() -> None:
        try:
            Kannon(executor=executor(kube, tmp_path), sys_path=extra, retries=0).build(root)
            outcome.append(None)
        except BaseException as e:
            outcome.append(e)

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    kube.wait_for(lambda: outcome or sum(p.get("status", {}).get("phase") == "Running"
                                         for p in kube.pods().values()) == 3, timeout=120)  # fmt: skip
    assert not outcome, f"the build ended before the fault: {outcome}"
    kube.faults.forbid("list", "jobs")
    kube.faults.forbid("list", "pods")
    _lose_the_watches(kube)
    thread.join(timeout=120)
    assert not thread.is_alive(), "the build hangs after its watches were lost"
    (error,) = outcome
    assert isinstance(error, KannonBuildError), error
    recs = {(r.family, r.params): r for r in error.result.tasks.values()}
    for n in range(3):
        rec = recs[("LossWait", f"n={n}")]
        assert rec.status is Status.FAILED and rec.last is not None and rec.last.failure_class == "WatchLost"
        assert "may not list" in (rec.reason or "")
    (after,) = [r for r in error.result.tasks.values() if r.family == "LossAfter"]
    assert after.status is Status.UPSTREAM_FAILED and after.attempts == []  # nothing more was launched
    assert kube.jobs() == {} and kube.pods() == {}
