"""The Kubernetes backend on an admission-controlled cluster (Kueue) and under a ResourceQuota, against the emulator.

What real clusters do (https://kueue.sigs.k8s.io/docs/concepts/, .../preemption/,
https://kubernetes.io/docs/concepts/policy/resource-quotas/): a queued Job is suspended without pods, possibly for
an hour; a preempted one is suspended again and requeued; a quota-refused pod is retried by the Job controller. None
of these is a stuck or failed attempt: kannon waits, never creates a second Job, and spends no retry.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from kannon.backends.base import Queued
from kannon.backends.kubernetes import K8sJobExecutor
from kannon.backends.kubernetes.admission import QUEUE_LABEL
from kannon.backends.kubernetes.names import LABEL_ATTEMPT
from kannon.testing import KubeEmulator
from tests.e2e.k8s.test_k8s_backend import TEMPLATE, launch_of, requests, wait_flag
from tests.e2e.k8s.test_k8s_backend import make as make  # the fixture
from tests.support.procs import wait_until

pytestmark = pytest.mark.k8s

REPO = Path(__file__).resolve().parents[3]
PENDING = 1.0  # the backend's pending_timeout in these tests: every queue wait below is several times longer


def queued_template() -> dict[str, Any]:
    tmpl: dict[str, Any] = {**TEMPLATE, "metadata": {"labels": {"team": "tests", QUEUE_LABEL: "user-queue"}}}
    return tmpl


def setup_queue(kube: KubeEmulator, pods: int = 1, held: bool = True) -> None:
    kube.kueue.add_cluster_queue("cq", pods=pods, held=held)
    kube.kueue.add_local_queue("default", "user-queue", "cq")


def wait_queued_longer_than(kube: KubeEmulator, names: list[str], seconds: float) -> None:
    """Wait until every named Job exists, suspended, and has been queued for ``seconds`` (by the Job's own age)."""
    t0 = time.monotonic()
    kube.wait_for(lambda: all(n in kube.jobs() and kube.jobs()[n]["spec"].get("suspend") for n in names), 60)
    wait_until(lambda: time.monotonic() - t0 >= seconds, timeout=seconds + 30)


def test_queue_waits_beyond_pending_timeout_are_not_failures(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    setup_queue(kube, pods=1, held=True)
    executor, rec = make(template_job=queued_template(), pending_timeout=PENDING, follow=True)
    launches = [launch_of(tmp_path, n, "print('ran', flush=True)") for n in range(1, 4)]
    for launch in launches:
        executor.launch(launch)
    names = sorted(kube.wait_for(lambda: set(kube.jobs()) if len(kube.jobs()) == 3 else None, 30))
    wait_queued_longer_than(kube, names, 4 * PENDING)
    assert rec.finished() == [] and rec.started() == [], "a queued Job was treated as stuck"
    assert not kube.pods()
    # Kueue writes the Workload's message after the Job exists: kannon says it once known (awaited, not assumed)
    wait_until(lambda: "ClusterQueue cq is inactive" in launches[0].log_path.read_text(), timeout=30)
    log = launches[0].log_path.read_text()
    assert "queued by admission" in log and "LocalQueue" not in log  # the Workload's message: ClusterQueue held
    assert any("queued by admission" in line for line in rec.lines(launches[0].key))  # the live view's lines
    kube.kueue.hold("cq", False)
    for launch in launches:
        fin = rec.wait_finished(launch.key)
        assert fin.ok, fin
        # the attempt's log keeps why and how long it waited, ahead of the pod's own output
        lines = launch.log_path.read_text().splitlines()
        assert lines[-1] == "ran" and "queued by admission" in lines[0], lines
        waited = next(float(ln.split()[3]) for ln in lines if ln.startswith("kannon: admitted after "))
        assert waited >= 4 * PENDING
    assert len(requests(kube, "POST", "/jobs")) == 3  # one Job per task: no duplicate, no retry
    assert all(j["metadata"]["labels"][LABEL_ATTEMPT] == "1" for j in kube.jobs().values())


def test_a_queued_job_whose_workload_comes_late_still_says_why_it_waits(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """Kueue creates a Job's Workload, and then decides, after the Job exists (its job controller reconciles the
    Job; a busy Kueue can take seconds): the first look finds no message. kannon reads the Workload again until it
    has one, and says it in the attempt's log, the live view and the Queued event."""
    setup_queue(kube, pods=1, held=True)
    kube.kueue.pause()
    executor, rec = make(template_job=queued_template(), pending_timeout=PENDING, follow=True)
    launch = launch_of(tmp_path, 1, "print('ran', flush=True)")
    executor.launch(launch)
    rec.wait_for(lambda: any("queued by admission" in line for line in rec.lines(launch.key)))
    wait_until(lambda: launch.log_path.is_file() and "queued by admission" in launch.log_path.read_text(), timeout=30)
    assert kube.kueue.workload_of(kube.wait_for(lambda: next(iter(kube.jobs()), None), 30)) is None
    first = launch.log_path.read_text()
    assert "queued by admission (spec.suspend=true)\n" in first and "inactive" not in first, first
    kube.kueue.resume()
    wait_until(lambda: "ClusterQueue cq is inactive" in launch.log_path.read_text(), timeout=30)
    rec.wait_for(lambda: any("ClusterQueue cq is inactive" in line for line in rec.lines(launch.key)))
    rec.wait_for(lambda: any(q.queued and q.reason and "ClusterQueue cq is inactive" in q.reason
                             for q in rec.of(Queued, launch.key)))  # fmt: skip
    assert rec.finished() == [] and rec.started() == []
    kube.kueue.hold("cq", False)
    fin = rec.wait_finished(launch.key)
    assert fin.ok, fin
    lines = launch.log_path.read_text().splitlines()
    assert lines[-1] == "ran" and sum("ClusterQueue cq is inactive" in ln for ln in lines) == 1, lines


def test_preempted_job_is_an_infrastructure_failure_not_a_task_failure(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """Kueue re-suspends a running Job; the Job controller counts the deleted pod against backoffLimit 0 and fails
    the Job (upstream syncJob). kannon says Preempted, infra (retried without spending the task's retries)."""
    setup_queue(kube, pods=1, held=False)
    executor, rec = make(template_job=queued_template(), pending_timeout=PENDING)
    launch = launch_of(tmp_path, 1, wait_flag(tmp_path / "never"))
    executor.launch(launch)
    rec.wait_started(launch.key)
    (name,) = kube.jobs()
    kube.kueue.preempt(name)
    fin = rec.wait_finished(launch.key)
    assert (fin.failure_class, fin.infra) == ("Preempted", True), fin
    assert fin.reason is not None and "preempted by the admission queue" in fin.reason
    assert len(requests(kube, "POST", "/jobs")) == 1


def test_a_preempted_pod_that_terminates_slowly_is_not_a_pod_that_never_started(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """Kueue readmits a preempted Job as soon as ``status.active`` is 0 (its batch/Job integration), while the deleted
    pod may take its whole grace period to go; the Job stays FailureTarget (an interim condition) until then, and only
    then is it Failed (v1.31+). That wait, longer than pending_timeout here, is not a pod that never started."""
    setup_queue(kube, pods=1, held=False)
    template = queued_template()
    pod_spec = {**TEMPLATE["spec"]["template"]["spec"], "terminationGracePeriodSeconds": 6}
    template["spec"] = {"template": {"spec": pod_spec}}
    executor, rec = make(template_job=template, pending_timeout=PENDING)
    ready = tmp_path / "ready"  # SIGTERM is ignored from here on (a pod marked Running may not have got there yet)
    ignore = ("import signal, pathlib\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
              f"pathlib.Path({str(ready)!r}).touch()\n")
    launch = launch_of(tmp_path, 1, ignore + wait_flag(tmp_path / "never"))
    executor.launch(launch)
    rec.wait_started(launch.key)
    wait_until(ready.exists, timeout=60)
    (name,) = kube.jobs()
    kube.kueue.preempt(name)
    # readmitted (unsuspended) while the pod still terminates: the window in which the deadline used to fire
    kube.wait_for(lambda: not kube.jobs()[name]["spec"].get("suspend") and kube.pods(), 30, "not readmitted")
    fin = rec.wait_finished(launch.key)
    assert (fin.failure_class, fin.infra) == ("Preempted", True), fin
    # the Job is Failed only once its pod is terminal (the kubelet removes the object a moment later)
    phases = [p["status"].get("phase") for p in kube.pods().values()]
    assert all(ph in ("Failed", "Succeeded") for ph in phases), f"the attempt ended while its pod ran: {phases}"
    assert len(requests(kube, "POST", "/jobs")) == 1


def test_preempted_bullet_reruns_and_succeeds_without_spending_retries(tmp_path: Path) -> None:
    """A build with retries=0: a bullet preempted mid-run goes back to the queue (as a new Job, attempt 2, the only
    possible way with backoffLimit 0) and the build succeeds."""
    from kannon.scheduler import Kannon
    from tests.support.tasks import Bullet, Join

    started, go = tmp_path / "started", tmp_path / "go"
    root = Join(parents=[Bullet(name="preempted", started_file=str(started), wait_file=str(go))])
    template = {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"namespace": "default", "labels": {QUEUE_LABEL: "user-queue"}},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "main", "image": "kannon-test:latest", "workingDir": str(tmp_path),
                    "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}}}  # fmt: skip
    with KubeEmulator(runtime="process", bookmark_interval=0.3) as kube:
        setup_queue(kube, pods=1, held=False)
        executor = K8sJobExecutor(template, api_client=kube.api_client(), python=sys.executable, retry_backoff=0.05,
                                  pending_timeout=60)  # fmt: skip

        def preempt_once() -> None:
            wait_until(started.exists, timeout=120)
            (first,) = kube.jobs()
            kube.kueue.hold("cq")
            kube.kueue.preempt(first)
            kube.wait_for(lambda: len(kube.jobs()) == 2, 120, "the preempted task was not run again")
            go.touch()
            kube.kueue.hold("cq", False)

        driver = threading.Thread(target=preempt_once, daemon=True)
        driver.start()
        result = Kannon(executor=executor, retries=0, retry_delay=0.1).build(root)
        driver.join(30)
        assert result.ok
        attempts = sorted(j["metadata"]["labels"][LABEL_ATTEMPT] for j in kube.jobs().values())
        assert attempts == ["1", "2"]


def test_resource_quota_exhaustion_then_release(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    kube.quotas.set("default", "compute", {"pods": 1})
    executor, rec = make(pending_timeout=120)
    gate = tmp_path / "gate"
    holder = launch_of(tmp_path, 1, wait_flag(gate))
    waiter = launch_of(tmp_path, 2, "print('got capacity', flush=True)")
    executor.launch(holder)
    rec.wait_started(holder.key)
    executor.launch(waiter)
    from kubernetes import client

    core = client.CoreV1Api(kube.api_client())
    kube.wait_for(lambda: any(e.reason == "FailedCreate" and "exceeded quota" in e.message
                              for e in core.list_namespaced_event("default").items), 30)  # fmt: skip
    assert rec.finished() == [] and rec.started(waiter.key) == []
    gate.touch()
    assert rec.wait_finished(holder.key).ok
    fin = rec.wait_finished(waiter.key)
    assert fin.ok and fin.log_tail == ("got capacity",)
    assert len(requests(kube, "POST", "/jobs")) == 2


def test_quota_that_never_frees_fails_at_pending_timeout_with_the_quota_message(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    kube.quotas.set("default", "compute", {"pods": 0})
    executor, rec = make(pending_timeout=PENDING)
    launch = launch_of(tmp_path, 1, "print('never')")
    executor.launch(launch)
    fin = rec.wait_finished(launch.key)
    assert fin.failure_class == "QuotaExceeded", fin
    assert fin.reason is not None and "exceeded quota: compute, requested: pods=1, used: pods=0, limited: pods=0" \
        in fin.reason
    assert len(requests(kube, "POST", "/jobs")) == 1
    # the Job's Events only (a field selector): the cost of reading them does not grow with the namespace's events
    listed = requests(kube, "GET", "/events")
    assert listed and all(r[2].get("fieldSelector", "").startswith("involvedObject.name=") for r in listed), listed


def test_queue_name_option_labels_the_jobs(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    setup_queue(kube, pods=2, held=False)
    executor, rec = make(queue_name="user-queue", pending_timeout=PENDING)
    launch = launch_of(tmp_path, 1, "print('x')")
    executor.launch(launch)
    assert rec.wait_finished(launch.key).ok
    (job,) = kube.jobs().values()
    assert job["metadata"]["labels"][QUEUE_LABEL] == "user-queue"
    assert kube.kueue.workload_of(job["metadata"]["name"]) is not None


@pytest.mark.parametrize("admission", ["kueue", "quota"])
def test_lattice_through_a_one_job_quota(admission: str, tmp_path: Path) -> None:
    """12 bullets in 3 layers of 4, one pod at a time. Kueue: a ClusterQueue for one Job, the first layer held in
    the queue for 4x pending_timeout. ResourceQuota: ``pods: 1``, refused pods retried by the Job controller.
    Everything succeeds once: one Job per bullet, attempt 1 each, nothing retried."""
    from kannon.scheduler import Kannon
    from tests.support.tasks import Bullet, Join

    layer: list[Any] = []
    for depth in range(3):
        layer = [Bullet(name=f"{admission}{depth}{i}", parents=layer[i % len(layer):][:2] if layer else [])
                 for i in range(4)]  # fmt: skip
    root = Join(parents=layer)
    labels = {QUEUE_LABEL: "user-queue"} if admission == "kueue" else {}
    template = {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"namespace": "default", "labels": labels},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "main", "image": "kannon-test:latest", "workingDir": str(tmp_path),
                    "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}}}  # fmt: skip
    seen: dict[str, Any] = {}
    with KubeEmulator(runtime="process", warm_imports=["gokart", "kannon.child"], bookmark_interval=0.3) as kube:
        kube.warm_up()
        # Kueue holds Jobs in the queue (not bounded by pending_timeout); a quota-refused pod is bounded by it
        pending = PENDING if admission == "kueue" else 120.0
        executor = K8sJobExecutor(template, api_client=kube.api_client(), python=sys.executable, retry_backoff=0.05,
                                  pending_timeout=pending)  # fmt: skip

        def release_after_a_long_wait() -> None:  # Kannon.build() must run on the main thread: this drives Kueue
            try:
                kube.wait_for(lambda: len(kube.jobs()) >= 4, 120, "the first layer was never submitted")
                wait_queued_longer_than(kube, list(kube.jobs()), 4 * PENDING)
                seen["held"] = {n: j["spec"].get("suspend") for n, j in kube.jobs().items()}
            finally:
                kube.kueue.hold("cq", False)

        if admission == "kueue":
            setup_queue(kube, pods=1, held=True)
            driver = threading.Thread(target=release_after_a_long_wait, daemon=True)
            driver.start()
        else:
            kube.quotas.set("default", "compute", {"pods": 1})
        result = Kannon(executor=executor).build(root)
        if admission == "kueue":
            driver.join(60)
            assert list(seen["held"].values()) == [True] * 4  # the first layer, all queued for 4x pending_timeout
            # ... and the result says so: each of the first layer waited at least that long for admission
            first = [r for r in result.tasks.values() if r.family == "Bullet" and r.params.startswith("name=kueue0")]
            assert len(first) == 4 and all(r.attempts[0].admission_wait >= 4 * PENDING for r in first), [
                (r.params, r.attempts[0].admission_wait) for r in first]
        else:
            refused = [e for e in kube.store.snapshot("events", "default").values() if e["reason"] == "FailedCreate"]
            assert refused, "the quota never refused a pod: the test proves nothing"
        assert result.ok
        jobs = kube.jobs()
        assert len(jobs) == 12 and len(requests(kube, "POST", "/jobs")) == 12
        assert all(j["metadata"]["labels"][LABEL_ATTEMPT] == "1" for j in jobs.values())
        assert all(any(c["type"] == "Complete" for c in j["status"]["conditions"]) for j in jobs.values())


def test_with_a_queue_twice_max_parallel_jobs_wait_in_it(tmp_path: Path) -> None:
    """max_parallel=2 through a held queue: 4 Jobs (2x) are submitted and wait there, never more; once admitted,
    everything runs and succeeds."""
    from kannon.scheduler import Kannon
    from tests.support.tasks import Bullet, Join

    root = Join(parents=[Bullet(name=f"wide{i}") for i in range(6)])
    template = {"apiVersion": "batch/v1", "kind": "Job",
                "metadata": {"namespace": "default", "labels": {QUEUE_LABEL: "user-queue"}},
                "spec": {"template": {"spec": {"containers": [{
                    "name": "main", "image": "kannon-test:latest", "workingDir": str(tmp_path),
                    "env": [{"name": "PYTHONPATH", "value": str(REPO)}]}]}}}}  # fmt: skip
    most = {"live": 0}
    with KubeEmulator(runtime="process", warm_imports=["gokart", "kannon.child"], bookmark_interval=0.3) as kube:
        kube.warm_up()
        setup_queue(kube, pods=2, held=True)

        def count(_change: Any) -> None:  # every store change: how many Jobs are unfinished now
            live = sum(1 for j in kube.store.snapshot("jobs", "default").values()
                       if not any(c["type"] in ("Complete", "Failed") for c in j["status"].get("conditions") or []))
            most["live"] = max(most["live"], live)  # fmt: skip

        kube.store.add_listener(count)
        executor = K8sJobExecutor(template, api_client=kube.api_client(), python=sys.executable, retry_backoff=0.05,
                                  pending_timeout=PENDING)  # fmt: skip
        assert executor.submit_limit(2) == 4

        def release() -> None:
            try:
                kube.wait_for(lambda: len(kube.jobs()) >= 4, 120, "4 Jobs were never submitted")
            finally:
                kube.kueue.hold("cq", False)

        driver = threading.Thread(target=release, daemon=True)
        driver.start()
        result = Kannon(executor=executor, max_parallel=2).build(root)
        driver.join(30)
        assert result.ok
        assert most["live"] == 4  # twice max_parallel in the queue, never more
        assert len(kube.jobs()) == 6 and len(requests(kube, "POST", "/jobs")) == 6


@pytest.mark.parametrize("admission", ["kueue", "quota"])
def test_quickstart_through_admission(admission: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The quick-start pipeline with a Kueue-labelled template (one Job admitted at a time, pending_timeout far
    below the queue waits), and in a namespace whose ResourceQuota allows one pod: all 9 bullets, one Job each."""
    from kannon.cli import load_target
    from kannon.scheduler import Kannon
    from tests.e2e.k8s.test_k8s_backend_build import template

    monkeypatch.setenv("QUICKSTART_BULLET_SECONDS", "0.1")
    root, extra = load_target(f"{REPO}/examples/quickstart/pipeline.py:root")
    tmpl = template(tmp_path)
    with KubeEmulator(runtime="process", warm_imports=["gokart", "kannon.child"], bookmark_interval=0.3) as kube:
        kube.warm_up()
        if admission == "kueue":
            tmpl["metadata"]["labels"] = {QUEUE_LABEL: "user-queue"}
            setup_queue(kube, pods=1, held=False)
        else:
            kube.quotas.set("default", "compute", {"pods": 1})
        executor = K8sJobExecutor(tmpl, api_client=kube.api_client(), python=sys.executable, retry_backoff=0.05,
                                  pending_timeout=PENDING if admission == "kueue" else 120.0)  # fmt: skip
        result = Kannon(executor=executor, sys_path=extra, env_to_inherit=["QUICKSTART_BULLET_SECONDS"]).build(root)
        assert result.ok
        assert root.output().load() == "G(F(E0(D0(C0(B(A(a))))), E1(D1(C1(B(A(a))))), E2(D2(C2(B(A(a)))))))"
        jobs = kube.jobs()
        assert len(jobs) == 9 and all(j["metadata"]["labels"][LABEL_ATTEMPT] == "1" for j in jobs.values())
