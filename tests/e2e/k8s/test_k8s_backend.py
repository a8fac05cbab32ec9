"""K8sJobExecutor against the emulated control plane, over real HTTP with the official client.

Bullets here are plain ``python -c`` scripts (``ScriptK8sExecutor`` swaps the child entrypoint for the script) so
each test controls exit codes, output and duration exactly; whole pipelines are in test_k8s_backend_build.py.
Nothing sleeps: tests wait on executor events or emulator state with generous timeouts.
"""

from __future__ import annotations

import dataclasses
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from kannon.backends.base import BackendError, Finished, Launch, LogLine, RunInfo, Started
from kannon.backends.kubernetes import (
    LABEL_RUN,
    LABEL_TASK,
    K8sJobExecutor,
    job_name,
    render_rbac,
)
from kannon.backends.kubernetes import classify as kc
from kannon.hints import Hints
from kannon.testing import KubeEmulator
from tests.support.events import Recorder

pytestmark = pytest.mark.k8s

PY = sys.executable
WAIT = 60.0  # default timeout of the Recorder's waits
TEMPLATE: dict[str, Any] = {
    "apiVersion": "batch/v1",
    "kind": "Job",
    "metadata": {"labels": {"team": "tests"}},
    "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "kannon-test:latest",
                                                   "env": [{"name": "FROM_TEMPLATE", "value": "yes"}]}]}}},
}  # fmt: skip


class ScriptK8sExecutor(K8sJobExecutor):
    """Test-only: the container runs ``python -c <child_args[0]>`` instead of the kannon child."""

    def command(self, launch: Launch) -> list[str]:
        return [PY, "-c", launch.child_args[0]]


def launch_of(tmp_path: Path, n: int, code: str, *, run_id: str = "run1", attempt: int = 1, hints: Hints = Hints(),
              env: dict[str, str] | None = None, family: str = "Script") -> Launch:  # fmt: skip
    task_id = f"{n:032x}"
    return Launch(
        key=f"{task_id}-{attempt}", run_id=run_id, task_id=task_id, family=family, attempt=attempt,
        child_args=(code,), env=env or {}, hints=hints, log_path=tmp_path / "logs" / f"{n}-{attempt}.log",
        labels={LABEL_RUN: run_id},
    )  # fmt: skip


def wait_flag(flag: Path, then: str = "") -> str:
    """A script that runs until ``flag`` exists (the test decides when it ends, without timing)."""
    return f"import os, time\nwhile not os.path.exists({str(flag)!r}): time.sleep(0.02)\n{then}"


@pytest.fixture
def make(kube: KubeEmulator, tmp_path: Path) -> Iterator[Callable[..., tuple[K8sJobExecutor, Recorder]]]:
    """Start executors against the emulator; every one is closed after the test."""
    made: list[K8sJobExecutor] = []

    def factory(run_id: str = "run1", follow: bool = False, cls: type = ScriptK8sExecutor,
                **kw: Any) -> tuple[K8sJobExecutor, Recorder]:  # fmt: skip
        kw.setdefault("retry_backoff", 0.05)
        executor = cls(kw.pop("template_job", TEMPLATE), api_client=kube.api_client(), python=PY, **kw)
        rec = Recorder(timeout=WAIT)
        executor.start(RunInfo(run_id, tmp_path / "run", follow_logs=follow), rec)
        made.append(executor)
        return executor, rec

    yield factory
    for executor in made:  # as the core ends a run (scheduler/run.py): close, then give the run lease back
        executor.close()
        executor.release_lease()  # a lease left held keeps renewing against an emulator that is gone


def requests(kube: KubeEmulator, method: str, fragment: str, **query: str) -> list[tuple[str, str, dict[str, str]]]:
    return [r for r in kube.requests if r[0] == method and fragment in r[1]
            and all(r[2].get(k) == v for k, v in query.items())]  # fmt: skip


# -- the normal path ----------------------------------------------------------------------------------------------
def test_success_and_failure_with_logs_exit_codes_and_labels(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make()
    ok = launch_of(tmp_path, 1, "import os; print('hello', os.environ['FROM_TEMPLATE'], os.environ['MINE'])",
                   env={"MINE": "secret-value"}, hints=Hints(cpu="250m", memory="256Mi"))
    bad = launch_of(tmp_path, 2, "import sys\nfor i in range(30): print('line', i)\nsys.exit(6)")
    executor.launch(ok)
    executor.launch(bad)
    fin_ok, fin_bad = rec.wait_finished(ok.key), rec.wait_finished(bad.key)
    assert fin_ok.ok and fin_ok.log_tail == ("hello yes secret-value",)
    assert fin_ok.where is not None and fin_ok.where.startswith("pod kannon-script-")
    assert rec.wait_started(ok.key).where == fin_ok.where
    assert (fin_bad.exit_code, fin_bad.failure_class, fin_bad.infra) == (6, "TaskFailed", False)
    assert fin_bad.log_tail == tuple(f"line {i}" for i in range(10, 30))
    assert ok.log_path.read_text() == "hello yes secret-value\n"
    assert bad.log_path.read_text().splitlines()[0] == "line 0"  # the whole log, not only the tail
    job = kube.jobs()[job_name("kannon", "run1", ok.task_id, 1, "Script")]
    meta, spec = job["metadata"], job["spec"]
    assert meta["labels"][LABEL_TASK] == ok.task_id and meta["labels"]["team"] == "tests"
    assert meta["annotations"]["kannon.io/task-id"] == ok.task_id
    assert spec["backoffLimit"] == 0 and spec["ttlSecondsAfterFinished"] == 3600
    container = spec["template"]["spec"]["containers"][0]
    assert container["resources"]["limits"] == {"cpu": "250m", "memory": "256Mi"}
    assert executor.live_keys() == []


def test_api_requests_per_task_do_not_grow_with_duration(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    """One create and one log read per task, plus O(1) list/watch requests, for short and long bullets alike."""
    executor, rec = make()
    setup = len(kube.requests)
    flag = tmp_path / "long-may-end"
    quick = [launch_of(tmp_path, n, "print('quick')") for n in range(1, 6)]
    long = launch_of(tmp_path, 9, wait_flag(flag, "print('long')"))
    executor.launch(long)
    for launch in quick:
        executor.launch(launch)
    for launch in quick:
        assert rec.wait_finished(launch.key).ok
    rec.wait_started(long.key)
    during = len(kube.requests)
    # while the long bullet runs, bookmarks keep flowing on the open watches (one every 0.3 s here): wait for a few
    # to prove time passed with the watches alive, then check that nothing was requested meanwhile
    jobs_watch = executor._watchers[0]
    seen = jobs_watch.bookmarks
    kube.wait_for(lambda: jobs_watch.bookmarks >= seen + 4, timeout=30, message="no bookmarks on the job watch")
    assert len(kube.requests) == during
    flag.touch()
    assert rec.wait_finished(long.key).ok
    task_requests = kube.requests[setup:]
    creates = [r for r in task_requests if r[0] == "POST"]
    logs = [r for r in task_requests if r[1].endswith("/log")]
    assert len(creates) == 6 and len(logs) == 6
    assert len(task_requests) == 12  # 2 per task, no polling
    assert setup == 4  # list pods, list jobs, watch jobs, watch pods


@pytest.mark.parametrize("after", [None, 0.0])  # the default (followed once it ran 1 s), and from its start
def test_follow_logs_streams_lines_live(kube: KubeEmulator, make: Any, tmp_path: Path, after: float | None) -> None:
    executor, rec = make(follow=True, **({} if after is None else {"log_follow_after": after}))
    flag = tmp_path / "second-half"
    launch = launch_of(tmp_path, 1, "print('first', flush=True)\n" + wait_flag(flag, "print('second')"))
    executor.launch(launch)
    rec.wait_for(lambda: [e.line for e in rec.of(LogLine, launch.key)] == ["first"])
    assert not rec.of(Finished, launch.key)  # live: the line arrived while the bullet still runs
    flag.touch()
    fin = rec.wait_finished(launch.key)
    assert [e.line for e in rec.of(LogLine, launch.key)] == ["first", "second"]
    assert fin.ok and fin.log_tail == ("first", "second")
    assert launch.log_path.read_text() == "first\nsecond\n"
    assert len(requests(kube, "GET", "/log")) == 1  # the follow request replaced the final read
    assert requests(kube, "GET", "/log")[0][2].get("follow") == "True"  # the official client sends a Python bool


def test_a_pod_that_ends_before_it_is_followed_has_its_lines_read_once_at_its_end(
        kube: KubeEmulator, make: Any, tmp_path: Path) -> None:  # fmt: skip
    """A follower (a thread and a stream) per pod is most of the master's cost for short bullets: a pod that ends
    within log_follow_after is not followed; its log is read once, and its lines still reach the run, before its
    Finished (a bullet's status lines travel in them)."""
    executor, rec = make(follow=True, log_follow_after=3600)
    launch = launch_of(tmp_path, 1, "for i in range(3): print('line', i)")
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.ok and rec.lines(launch.key) == ["line 0", "line 1", "line 2"]
    kinds = [type(e).__name__ for e in rec.events if e.key == launch.key]
    assert kinds == ["Started", "LogLine", "LogLine", "LogLine", "Finished"]
    assert launch.log_path.read_text() == "line 0\nline 1\nline 2\n"
    (read,) = requests(kube, "GET", "/log")
    assert "follow" not in read[2]
    assert executor._followers == [] and executor.live_keys() == []


def test_log_follow_after_is_checked_and_a_short_job_ttl_follows_every_pod(kube: KubeEmulator) -> None:
    with pytest.raises(BackendError, match="log_follow_after must be a number of seconds >= 0, not -1 "):
        K8sJobExecutor(TEMPLATE, api_client=kube.api_client(), python=PY, log_follow_after=-1)
    with pytest.raises(BackendError, match="log_follow_after"):
        K8sJobExecutor(TEMPLATE, api_client=kube.api_client(), python=PY, log_follow_after=float("nan"))
    assert K8sJobExecutor(TEMPLATE, api_client=kube.api_client(), python=PY).follow_after == 1.0
    # a Job deleted seconds after its end may take the pod's log along before a read at its end could run
    short = K8sJobExecutor(TEMPLATE, api_client=kube.api_client(), python=PY, ttl_seconds_after_finished=5)
    assert short.follow_after == 0.0


# -- classified failures ------------------------------------------------------------------------------------------
def test_oom_eviction_and_preemption_are_classified(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make()
    flag = tmp_path / "never"
    cases = {"OOMKilled": 1, "Evicted": 2, "Preempted": 3}
    launches = {}
    for behaviour, n in cases.items():
        launch = launch_of(tmp_path, n, wait_flag(flag), family=f"Fam{behaviour}", hints=Hints(memory="64Mi"))
        kube.faults.pod_behaviour(f"kannon-fam{behaviour.lower()}-", behaviour, times=1)
        executor.launch(launch)
        launches[behaviour] = launch
    oom = rec.wait_finished(launches["OOMKilled"].key)
    assert (oom.exit_code, oom.failure_class, oom.infra) == (137, "OOMKilled", False)
    assert "64Mi" in (oom.reason or "") and "Hints(memory=" in (oom.reason or "")
    evicted = rec.wait_finished(launches["Evicted"].key)
    assert (evicted.failure_class, evicted.infra) == ("Evicted", True)
    assert "low on resource" in (evicted.reason or "")
    preempted = rec.wait_finished(launches["Preempted"].key)
    assert (preempted.failure_class, preempted.infra) == ("Preempted", True)


def test_a_preemption_is_classified_when_the_pod_stream_lags_behind_the_job(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """The API server orders each watch stream, never two against each other: the Job's Failed (the controller counts
    a deleted pod failed at once) can reach kannon before the pod changes that explain it, and by then the pod is gone
    from a list. kannon waits for the pod stream instead of calling a preemption BackoffLimitExceeded."""
    executor, rec = make()
    launch = launch_of(tmp_path, 1, wait_flag(tmp_path / "never"))
    name = job_name("kannon", "run1", launch.task_id, 1, "Script")
    pods_held, jobs_held = kube.faults.hold_watch("pods"), kube.faults.hold_watch("jobs")
    kube.faults.pod_behaviour(name, "Preempted", times=1)
    executor.launch(launch)
    kube.wait_for(lambda: (kube.jobs().get(name, {}).get("status", {}).get("failed") == 1
                           and not any(p["metadata"]["labels"].get("job-name") == name for p in kube.pods().values())),
                  timeout=60, message="the Job did not fail with its pod gone")  # fmt: skip
    lists_before = len([r for r in requests(kube, "GET", "/pods") if "watch" not in r[2]])
    jobs_held.set()  # kannon hears of the failure now; the pod stream still lags
    kube.wait_for(lambda: len([r for r in requests(kube, "GET", "/pods") if "watch" not in r[2]]) > lists_before
                  or bool(rec.finished(launch.key)), timeout=60, message="kannon neither read the pods nor finished")
    pods_held.set()
    fin = rec.wait_finished(launch.key)
    assert (fin.failure_class, fin.infra) == ("Preempted", True), fin


@pytest.mark.parametrize(("behaviour", "klass", "infra"), [
    ("ImagePullBackOff", "ImagePull", True), ("ErrImagePull", "ImagePull", True),
    ("CreateContainerConfigError", "ContainerConfig", False)])  # fmt: skip
def test_pods_that_cannot_start_fail_fast_and_their_job_is_deleted(
    kube: KubeEmulator, make: Any, tmp_path: Path, behaviour: str, klass: str, infra: bool
) -> None:
    executor, rec = make()
    kube.faults.pod_behaviour("kannon-", behaviour)
    launch = launch_of(tmp_path, 1, "print('never runs')")
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert (fin.exit_code, fin.failure_class, fin.infra) == (None, klass, infra)
    # an image pull shows ErrImagePull before the kubelet backs off to ImagePullBackOff: either fails it at once
    assert (behaviour if klass != "ImagePull" else "ImagePull") in (fin.reason or "")
    assert not rec.of(Started, launch.key)
    kube.wait_for(lambda: not kube.jobs() and not kube.pods(), timeout=30, message="job not cleaned up")
    assert fin.failure_class in launch.log_path.read_text()


def test_unschedulable_pod_fails_after_the_pending_timeout(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make(pending_timeout=0.5)
    kube.faults.pod_behaviour("kannon-", "Unschedulable")
    launch = launch_of(tmp_path, 1, "print('never runs')", hints=Hints(cpu="64"))
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.failure_class == "Unschedulable" and not fin.infra
    assert "cannot be scheduled" in (fin.reason or "") and "pending_timeout" in (fin.reason or "")
    kube.wait_for(lambda: not kube.jobs(), timeout=30, message="job not cleaned up")


def test_deadline_from_the_timeout_hint(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make()
    launch = launch_of(tmp_path, 1, wait_flag(tmp_path / "never"), hints=Hints(timeout=0.5))
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.failure_class == "DeadlineExceeded" and "1 s" in (fin.reason or "")
    assert kube.jobs()[job_name("kannon", "run1", launch.task_id, 1, "Script")]["spec"]["activeDeadlineSeconds"] == 1


def test_job_deleted_by_someone_else(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make()
    launch = launch_of(tmp_path, 1, wait_flag(tmp_path / "never"))
    executor.launch(launch)
    rec.wait_started(launch.key)
    kube.faults.delete_job_externally(job_name("kannon", "run1", launch.task_id, 1, "Script"))
    fin = rec.wait_finished(launch.key)
    assert fin.failure_class == "JobDeleted" and "deleted by someone else" in (fin.reason or "")


def test_command_in_the_template_is_refused(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    template = yaml.safe_load(yaml.safe_dump(TEMPLATE))
    template["spec"]["template"]["spec"]["containers"][0]["command"] = ["bash", "-c", "anything"]
    with pytest.raises(BackendError, match="sets `command`"):  # at construction: before anything is launched
        make(template_job=template, cls=K8sJobExecutor)
    assert kube.jobs() == {}


# -- cancellation ---------------------------------------------------------------------------------------------------
def test_cancel_and_cancel_all_delete_jobs_and_confirm(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make()
    # each script is PID 1 of its pod: like kannon's child it needs a SIGTERM handler, or the kernel drops the
    # signal and the pod lingers for its 30 s grace period (pid_namespaces(7)) — what upstream does too
    # (and a signal that lands before the handler is installed, while the interpreter starts, is dropped as well:
    # the test waits for each script to say it is ready)
    def script(n: int) -> str:
        return ("import pathlib, signal, sys\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(143))\n"
                f"pathlib.Path({str(tmp_path / f'ready-{n}')!r}).touch()\n" + wait_flag(tmp_path / "never"))

    launches = [launch_of(tmp_path, n, script(n)) for n in range(1, 5)]
    for launch in launches:
        executor.launch(launch)
    for launch in launches:
        rec.wait_started(launch.key)
    kube.wait_for(lambda: all((tmp_path / f"ready-{n}").exists() for n in range(1, 5)), timeout=60,
                  message="the scripts did not start")  # fmt: skip
    executor.cancel(launches[0].key)
    fin = rec.wait_finished(launches[0].key)
    assert fin.failure_class == "Cancelled" and fin.exit_code is None
    assert job_name("kannon", "run1", launches[0].task_id, 1, "Script") not in kube.jobs()
    assert executor.cancel_all(timeout=60) == []
    assert all(rec.wait_finished(launch.key).failure_class == "Cancelled" for launch in launches)
    assert kube.jobs() == {}
    kube.wait_for(lambda: not kube.pods(), timeout=30, message="pods not garbage-collected")
    deletes = requests(kube, "DELETE", "/jobs/")
    assert len(deletes) == 4  # each Job deleted once, with Background propagation (pods go too)


def test_cancel_all_names_each_job_it_could_not_delete_and_why(
    kube: KubeEmulator, make: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    executor, rec = make()
    launches = [launch_of(tmp_path, n, wait_flag(tmp_path / "never")) for n in (1, 2)]
    for launch in launches:
        executor.launch(launch)
    for launch in launches:
        rec.wait_started(launch.key)
    kube.faults.forbid("delete", "jobs")
    with caplog.at_level("WARNING", logger="kannon.kubernetes"):
        left = executor.cancel_all(timeout=60)  # returns at once: nothing is being deleted, nothing to wait for
    assert left == sorted(launch.key for launch in launches)
    for launch in launches:
        name = job_name("kannon", "run1", launch.task_id, 1, "Script")
        assert name in kube.jobs()
        assert any(f"Job {name} (Script {launch.task_id}) is left running: permission denied" in r.getMessage()
                   and "may not delete jobs" in r.getMessage() for r in caplog.records), caplog.text  # fmt: skip
    kube.faults.clear()


def test_close_stops_what_is_still_running(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make()
    launch = launch_of(tmp_path, 1, wait_flag(tmp_path / "never"))
    executor.launch(launch)
    rec.wait_started(launch.key)
    executor.close()
    assert rec.wait_finished(launch.key, timeout=0).failure_class == "Cancelled"
    assert kube.jobs() == {}


# -- resilience -----------------------------------------------------------------------------------------------------
def test_watches_survive_stream_ends_compaction_and_resets(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make()
    flag = tmp_path / "go"
    launches = [launch_of(tmp_path, n, wait_flag(flag, f"print({n})")) for n in range(1, 4)]
    for launch in launches:
        executor.launch(launch)
    for launch in launches:
        rec.wait_started(launch.key)
    jobs_watch = executor._watchers[0]
    # a change the run's watches do not see, then compaction and the streams' end, atomically: both watches resume
    # from a resourceVersion older than the retained history and get 410 Gone
    with kube.store.cond:
        kube._ensure_namespace("unrelated", create=True)
        kube.faults.compact_history()
        assert kube.faults.end_watches() >= 2
    kube.wait_for(lambda: jobs_watch.relists >= 1, timeout=30, message="no re-list after 410")
    kube.faults.reset_connections(2, method="GET", path_regex="watch|jobs|pods")
    kube.faults.end_watches()
    flag.touch()
    for n, launch in enumerate(launches, 1):
        fin = rec.wait_finished(launch.key)
        assert fin.ok and fin.log_tail == (str(n),)
    assert jobs_watch.reconnects >= 2


def test_create_is_retried_through_5xx_429_and_resets_without_duplicates(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    executor, rec = make()
    kube.faults.fail_requests(2, 503, method="POST")
    kube.faults.fail_requests(1, 429, method="POST", retry_after=1)
    kube.faults.reset_connections(1, method="POST")
    launch = launch_of(tmp_path, 1, "print('once')")
    executor.launch(launch)
    assert rec.wait_finished(launch.key).ok
    assert len(kube.jobs()) == 1
    assert kube.faults.count("fail_request") == 3 and kube.faults.count("reset_connection") == 1
    assert executor.api.retries >= 4


def test_launch_returns_while_the_create_is_still_unanswered(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    """The Executor contract: launch() must not block. The API server holds the create; launch() returns anyway."""
    executor, rec = make()
    gate = kube.faults.hold_requests(1, method="POST", path_regex=r"/jobs$")
    launch = launch_of(tmp_path, 1, "print('created late')")
    caller = threading.Thread(target=executor.launch, args=(launch,), daemon=True)
    caller.start()
    caller.join(timeout=30)
    returned = not caller.is_alive()
    gate.set()
    assert returned, "launch() waited for the API server's answer"
    fin = rec.wait_finished(launch.key)
    assert fin.ok and fin.log_tail[-1] == "created late"
    assert kube.faults.count("hold_request") == 1


def test_a_cancel_during_the_create_deletes_the_job_once_it_exists(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    executor, rec = make()
    gate = kube.faults.hold_requests(1, method="POST", path_regex=r"/jobs$")
    launch = launch_of(tmp_path, 1, wait_flag(tmp_path / "never"))
    executor.launch(launch)
    kube.wait_for(lambda: kube.faults.count("hold_request") == 1, timeout=30, message="the create never came")
    executor.cancel(launch.key)
    gate.set()
    assert rec.wait_finished(launch.key).failure_class == "Cancelled"
    executor.close()  # waits for the create in flight to land and be dealt with
    assert kube.faults.count("hold_request") == 1 and len(requests(kube, "POST", "/jobs")) == 1
    # a pod that started meanwhile runs a script with no SIGTERM handler as PID 1: it may take its 30 s grace period
    kube.wait_for(lambda: not kube.jobs() and not kube.pods(), timeout=60, message="the cancelled Job stayed")
    assert executor.live_keys() == []


def test_a_create_that_landed_is_adopted_on_409(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    """The first create reached the server but its answer was lost: the retry gets 409 and adopts, no duplicate."""
    executor, rec = make()
    flag = tmp_path / "go"
    launch = launch_of(tmp_path, 1, wait_flag(flag, "print('single')"))
    other, _ = make()  # an earlier master of the same run already created this attempt's Job
    # its own log file: two executors following one Job would otherwise race on one file
    other.launch(dataclasses.replace(launch, log_path=tmp_path / "earlier-master.log"))
    kube.wait_for(lambda: kube.jobs(), timeout=30, message="the first create never landed")
    executor.launch(launch)
    flag.touch()
    fin = rec.wait_finished(launch.key)
    assert fin.ok and "single" in fin.log_tail
    assert len(kube.jobs()) == 1 and len(requests(kube, "POST", "/jobs")) == 2
    assert "adopted existing Job" in launch.log_path.read_text()


def test_a_job_that_finishes_while_its_adoption_is_read_is_seen_finished(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """The 409 path reads the existing Job; it finishes after that read and before the attempt knows its uid, so
    the watch's event of the finish is the only news of it. The adopted attempt must end with it, not wait for an
    event that never comes (seen as a hang under load)."""
    executor, rec = make()
    flag = tmp_path / "go"
    launch = launch_of(tmp_path, 1, wait_flag(flag, "print('finished meanwhile')"))
    other, _ = make()  # an earlier master of the same run created this attempt's Job
    other.launch(dataclasses.replace(launch, log_path=tmp_path / "earlier-master.log"))
    name = kube.wait_for(lambda: next(iter(kube.jobs()), None), timeout=30, message="the first create never landed")
    gate = kube.faults.hold_answers(1, method="GET", path_regex=f"/jobs/{name}$")
    executor.launch(launch)
    kube.wait_for(lambda: kube.faults.count("hold_answer") == 1, timeout=30, message="the 409 read never came")
    flag.touch()  # the Job finishes after the (held) read was carried out
    complete = lambda j: any(c.get("type") == "Complete" for c in (j.get("status") or {}).get("conditions") or [])  # noqa: E731
    kube.wait_for(lambda: complete(kube.jobs()[name]), timeout=60, message="the Job never completed")
    # the executor's watch has seen the finish before the attempt knows its Job's uid
    kube.wait_for(lambda: name in executor._early and kc.job_terminal(executor._early[name]) is not None,
                  timeout=60, message="the watch never delivered the finish")  # fmt: skip
    gate.set()
    fin = rec.wait_finished(launch.key, timeout=60)
    assert fin.ok and "finished meanwhile" in fin.log_tail
    assert "adopted existing Job" in launch.log_path.read_text()


def test_reattach_adopts_running_jobs_and_cleans_finished_leftovers(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    first, rec1 = make()
    flag = tmp_path / "go"
    running = launch_of(tmp_path, 1, wait_flag(flag, "print('adopted')"), attempt=2)
    failed = launch_of(tmp_path, 2, "raise SystemExit(6)")
    first.launch(running)
    first.launch(failed)
    rec1.wait_started(running.key)
    assert rec1.wait_finished(failed.key).exit_code == 6
    first._stop.set()  # the first master dies: its watches stop, nothing is cleaned up
    for w in first._watchers:
        w.stop()
    creates_before = len(requests(kube, "POST", "/jobs"))

    second, rec2 = make()
    failed_name = job_name("kannon", "run1", failed.task_id, 1, "Script")
    kube.wait_for(lambda: failed_name not in kube.jobs(), timeout=30, message="finished leftover not deleted")
    # the restarted master counts attempts from 1 again: the running Job of attempt 2 runs the same thing (same
    # command, so the same hand-off spec), and is adopted all the same
    again = launch_of(tmp_path, 1, wait_flag(flag, "print('adopted')"), attempt=1)
    second.launch(again)
    rec2.wait_started(again.key)
    flag.touch()
    fin = rec2.wait_finished(again.key)
    assert fin.ok and fin.log_tail[-1] == "adopted"
    assert fin.where == rec1.wait_started(running.key).where
    assert rec2.wait_started(again.key).where == f"{fin.where} (adopted)"
    assert len(requests(kube, "POST", "/jobs")) == creates_before  # nothing new was created


def test_unadopted_leftovers_are_removed_when_the_run_ends(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    first, rec1 = make()
    stray = launch_of(tmp_path, 7, wait_flag(tmp_path / "never"))
    first.launch(stray)
    rec1.wait_started(stray.key)
    first._stop.set()
    for w in first._watchers:
        w.stop()
    second, _ = make()
    second.close()
    kube.wait_for(lambda: not kube.jobs(), timeout=30, message="stray job left running")


# -- permissions ------------------------------------------------------------------------------------------------------
def test_forbidden_create_names_the_permission(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    """launch() returns at once (creation runs off the caller's thread); the attempt ends naming the permission,
    and the backend refuses every later launch with the same BackendError, so the core stops launching."""
    executor, rec = make()
    kube.faults.forbid("create", "jobs")
    first = launch_of(tmp_path, 1, "x")
    executor.launch(first)
    fin = rec.wait_finished(first.key)
    assert fin.failure_class == "LaunchFailed"
    assert fin.reason is not None and "may not create jobs" in fin.reason and "kannon k8s rbac" in fin.reason
    with pytest.raises(BackendError) as info:
        executor.launch(launch_of(tmp_path, 2, "x"))
    assert "may not create jobs" in str(info.value) and "kannon k8s rbac" in str(info.value)
    assert executor.live_keys() == []


def test_forbidden_watch_fails_at_start(kube: KubeEmulator, tmp_path: Path) -> None:
    kube.faults.forbid("watch", "pods")
    executor = ScriptK8sExecutor(TEMPLATE, api_client=kube.api_client(), python=PY)
    try:
        with pytest.raises(BackendError, match="may not watch pods"):
            executor.start(RunInfo("run1", tmp_path / "run"), Recorder(timeout=WAIT))
    finally:
        executor.close()


def test_rbac_role_covers_every_request_the_backend_made(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    executor, rec = make(follow=True, lease_duration=3)
    executor.acquire_lease(RunInfo("run1", tmp_path / "run"), wait=None)
    flag = tmp_path / "go"
    launches = [launch_of(tmp_path, n, wait_flag(flag, "print('x')")) for n in (1, 2)]
    for launch in launches:
        executor.launch(launch)
    rec.wait_started(launches[1].key)
    executor.cancel(launches[1].key)
    kube.wait_for(lambda: executor._run_lease is not None and executor._run_lease.renewals > 0, timeout=30,
                  message="the lease was never renewed")  # fmt: skip
    flag.touch()
    rec.wait_finished(launches[0].key)
    rec.wait_finished(launches[1].key)
    executor.release_lease()
    (role, _) = yaml.safe_load_all(render_rbac("default", "sa"))
    allowed = {(res, verb) for rule in role["rules"] for res in rule["resources"] for verb in rule["verbs"]}
    seen = set()
    for method, path, query in kube.requests:
        parts = path.strip("/").split("/")
        named = parts[-2] in ("jobs", "pods", "leases") or parts[-1] == "log"
        resource = "pods/log" if parts[-1] == "log" else (parts[-2] if named else parts[-1])
        verb = {"POST": "create", "DELETE": "delete", "PUT": "update"}.get(method) or (
            "get" if named else ("watch" if query.get("watch") else "list"))
        seen.add((resource, verb))
    assert seen <= allowed, seen - allowed
    assert {("jobs", "create"), ("jobs", "watch"), ("pods", "watch"), ("pods/log", "get"), ("jobs", "delete"),
            ("leases", "get"), ("leases", "create"), ("leases", "update"), ("leases", "delete")} <= seen


# -- in a cluster: the master's own pod ------------------------------------------------------------------------------
def test_in_cluster_template_and_owner_come_from_the_master_pod(kube: KubeEmulator, tmp_path: Path) -> None:
    """The master runs as a Job: its pod is the child template, its Job the owner of every child Job."""
    batch = client.BatchV1Api(kube.api_client())
    master = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "master"},
              "spec": {"template": {"spec": {"restartPolicy": "Never", "serviceAccountName": "pipeline", "containers": [
                  {"name": "master", "image": "repo/pipeline:7", "command": [PY, "-c", wait_flag(tmp_path / "never")],
                   "env": [{"name": "FROM_MASTER", "value": "inherited"}]}]}}}}  # fmt: skip
    batch.create_namespaced_job("default", master)
    pod_name = kube.wait_for(lambda: next((n for n, p in kube.pods().items()
                                           if p["metadata"]["labels"].get("job-name") == "master"), None), timeout=30)
    executor = ScriptK8sExecutor(api_client=kube.api_client(), in_cluster=True, master_pod_name=pod_name,
                                 namespace="default", python=PY)  # fmt: skip
    rec = Recorder(timeout=WAIT)
    try:
        executor.start(RunInfo("run1", tmp_path / "run"), rec)
        launch = launch_of(tmp_path, 1, "import os; print(os.environ['FROM_MASTER'])")
        executor.launch(launch)
        fin = rec.wait_finished(launch.key)
        assert fin.ok and fin.log_tail == ("inherited",)
        job = kube.jobs()[job_name("kannon", "run1", launch.task_id, 1, "Script")]
        (owner,) = job["metadata"]["ownerReferences"]
        assert (owner["kind"], owner["name"]) == ("Job", "master")
        assert owner["uid"] == kube.jobs()["master"]["metadata"]["uid"]
        podspec = job["spec"]["template"]["spec"]
        assert podspec["serviceAccountName"] == "pipeline"
        assert podspec["containers"][0]["image"] == "repo/pipeline:7"
    finally:
        executor.close()


# -- the example manifests ------------------------------------------------------------------------------------------
def test_example_manifests_are_valid(kube: KubeEmulator, tmp_path: Path) -> None:
    from kannon.backends.kubernetes import build_job, load_template

    examples = Path(__file__).resolve().parents[3] / "examples" / "k8s"
    docs = list(yaml.safe_load_all((examples / "rbac.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Namespace", "ServiceAccount", "Role", "RoleBinding"]
    assert docs[2:] == list(yaml.safe_load_all(render_rbac("kannon-demo", "kannon-master")))
    batch = client.BatchV1Api(kube.api_client())
    master = yaml.safe_load((examples / "master-job.yaml").read_text())
    assert master["spec"]["template"]["spec"]["serviceAccountName"] == docs[1]["metadata"]["name"]
    batch.create_namespaced_job("kannon-demo", master, dry_run="All")  # the server validates the schema
    child = build_job(load_template(examples / "child-job-template.yaml"), launch_of(tmp_path, 1, "x"),
                      name="kannon-example-1", namespace="kannon-demo")  # fmt: skip
    batch.create_namespaced_job("kannon-demo", child, dry_run="All")
    claim = yaml.safe_load((examples / "pvc.yaml").read_text())["metadata"]["name"]
    assert {v["persistentVolumeClaim"]["claimName"] for v in child["spec"]["template"]["spec"]["volumes"]} == {claim}
    assert kube.jobs("kannon-demo") == {}


def test_an_owner_that_does_not_exist_is_refused_before_any_job(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    """The garbage collector deletes a child whose ownerReference names an absent owner (a wrong master_pod_uid, a
    deleted master pod) at once: kannon checks the owner first and says what is wrong, creating nothing."""
    batch = client.BatchV1Api(kube.api_client())
    parked = batch.create_namespaced_job("default", {  # a real object to own the Jobs: suspended, so no pods
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "the-master"},
        "spec": {"suspend": True, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "main", "image": "kannon-test:latest", "command": ["true"]}]}}}})  # fmt: skip
    real = {"apiVersion": "batch/v1", "kind": "Job", "name": "the-master", "uid": parked.metadata.uid}
    with pytest.raises(BackendError, match="does not exist in namespace 'default'"):
        make(owner={**real, "name": "gone"})
    with pytest.raises(BackendError, match=f"has uid {parked.metadata.uid}.*owner=None"):
        make(owner={**real, "uid": "0b5e-not-it"})
    assert [j.metadata.name for j in batch.list_namespaced_job("default").items] == ["the-master"]
    executor, rec = make(owner=real)  # the real one is used
    owned_launch = launch_of(tmp_path, 1, "print('owned')")
    executor.launch(owned_launch)
    done = rec.wait_finished(owned_launch.key)
    assert done.ok, done
    owned = [j for j in batch.list_namespaced_job("default").items if j.metadata.name != "the-master"]
    assert owned and all(j.metadata.owner_references[0].uid == parked.metadata.uid for j in owned)
