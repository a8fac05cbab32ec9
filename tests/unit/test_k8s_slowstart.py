"""Slow starts are not stuck: what a pod not started by pending_timeout waits for, from the pod and its Events.

The events are the ones upstream records, word for word: the kubelet's ``Pulling``/``Pulled``/``Failed``
(pkg/kubelet/images/image_manager.go) and the cluster autoscaler's ``TriggeredScaleUp``/``NotTriggerScaleUp``
(cluster-autoscaler processors/status/eventing_scale_up_processor.go, FAQ "What events are emitted by CA?").
"""

from __future__ import annotations

import datetime
from pathlib import Path

import pytest
from kubernetes.client import (
    CoreV1Event,
    V1Container,
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1EventSource,
    V1ObjectMeta,
    V1ObjectReference,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
)

from kannon.backends.base import BackendError
from kannon.backends.kubernetes import slowstart
from kannon.backends.kubernetes.classify import Outcome
from kannon.backends.kubernetes.pending import deadlines
from tests.support.procs import kannon as run_kannon
from tests.unit.test_k8s_config import kubeconfig as kubeconfig  # the fixture

T0 = datetime.datetime(2026, 1, 1, 12, 0, 0, tzinfo=datetime.timezone.utc)
UNSCHEDULABLE = "0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are available: 3 No preemption " \
    "victims found for incoming pod."  # fmt: skip
NO_SCALE_UP = "pod didn't trigger scale-up: 2 Insufficient cpu, 1 max node group size reached"
SCALE_UP = "pod triggered scale-up: [{pool-a 1->2 (max: 10)}]"


def pod(waiting: str | None = "ContainerCreating", scheduled: bool = True, uid: str = "u1") -> V1Pod:
    conditions = [V1PodCondition(type="PodScheduled", status="True")] if scheduled else [
        V1PodCondition(type="PodScheduled", status="False", reason="Unschedulable", message=UNSCHEDULABLE)]
    statuses = None if waiting is None or not scheduled else [V1ContainerStatus(
        name="main", image="registry.example/big:1", image_id="", ready=False, restart_count=0,
        state=V1ContainerState(waiting=V1ContainerStateWaiting(reason=waiting)))]  # fmt: skip
    return V1Pod(metadata=V1ObjectMeta(name="kannon-job-abcde", uid=uid),
                 spec=V1PodSpec(containers=[V1Container(name="main", image="registry.example/big:1")]),
                 status=V1PodStatus(phase="Pending", conditions=conditions, container_statuses=statuses))  # fmt: skip


def event(reason: str, message: str, second: int, name: str = "kannon-job-abcde", uid: str = "u1",
          component: str = "kubelet", first: int | None = None) -> CoreV1Event:  # fmt: skip
    at = T0 + datetime.timedelta(seconds=second)
    return CoreV1Event(
        metadata=V1ObjectMeta(name=f"{name}.{reason.lower()}.{second}"),
        involved_object=V1ObjectReference(kind="Pod", name=name, uid=uid, namespace="default"),
        reason=reason, message=message, type="Normal", last_timestamp=at, count=1,
        first_timestamp=at if first is None else T0 + datetime.timedelta(seconds=first),
        source=V1EventSource(component=component),
    )  # fmt: skip


def test_a_pull_in_progress_is_a_slow_start_that_says_which_image_and_for_how_long() -> None:
    events = [event("Scheduled", "Successfully assigned default/kannon-job-abcde to node-1", 0, component="sched"),
              event("Pulling", 'Pulling image "registry.example/big:1"', 1)]  # fmt: skip
    verdict = slowstart.diagnose(pod("ContainerCreating"), events, 300)
    assert isinstance(verdict, slowstart.Waiting) and verdict.kind == "pull"
    assert verdict.describe(T0 + datetime.timedelta(seconds=186)) == "pulling image registry.example/big:1 for 3m05s"
    # behind an init container the main container waits as PodInitializing: the same
    assert isinstance(slowstart.diagnose(pod("PodInitializing"), events, 300), slowstart.Waiting)


def test_a_finished_or_failed_pull_is_not_a_slow_start() -> None:
    pulled = [event("Pulling", 'Pulling image "registry.example/big:1"', 1),
              event("Pulled", 'Successfully pulled image "registry.example/big:1" in 3m2.1s (3m2.1s including '
                    "waiting). Image size: 912345678 bytes.", 183)]  # fmt: skip
    assert slowstart.diagnose(pod("ContainerCreating"), pulled, 300) is None
    same_second = [event("Pulled", 'Container image "registry.example/big:1" already present on machine', 1),
                   event("Pulling", 'Pulling image "registry.example/big:1"', 1)]  # fmt: skip
    assert slowstart.diagnose(pod("ContainerCreating"), same_second, 300) is None  # whole seconds: Pulled is later
    failed = [pulled[0], event("Failed", 'Failed to pull image "registry.example/big:1": not found', 5)]
    assert slowstart.diagnose(pod("ContainerCreating"), failed, 300) is None
    # the kubelet already reported the pull error on the container: fail_fast's case, never a slow start
    assert slowstart.diagnose(pod("ErrImagePull"), pulled[:1], 300) is None
    assert slowstart.diagnose(pod("InvalidImageName"), pulled[:1], 300) is None


def test_without_events_nothing_is_known_to_progress() -> None:
    """No `list events` permission (or no event yet): the pending deadline stays pending_timeout."""
    assert slowstart.diagnose(pod("ContainerCreating"), [], 300) is None
    assert slowstart.diagnose(pod(scheduled=False), [], 300) is None
    assert slowstart.diagnose(None, [event("Pulling", 'Pulling image "x"', 1)], 300) is None


def test_events_of_another_pod_or_an_earlier_pod_of_that_name_do_not_count() -> None:
    others = [event("Pulling", 'Pulling image "registry.example/big:1"', 1, name="kannon-other-xyz"),
              event("Pulling", 'Pulling image "registry.example/big:1"', 1, uid="an-earlier-pod")]  # fmt: skip
    assert slowstart.diagnose(pod("ContainerCreating"), others, 300) is None


def test_a_scale_up_in_progress_is_a_slow_start_with_the_autoscalers_message() -> None:
    events = [event("FailedScheduling", UNSCHEDULABLE, 0, component="default-scheduler"),
              event("TriggeredScaleUp", SCALE_UP, 10, component="cluster-autoscaler")]  # fmt: skip
    verdict = slowstart.diagnose(pod(scheduled=False), events, 300)
    assert isinstance(verdict, slowstart.Waiting) and verdict.kind == "scale-up"
    assert verdict.describe(T0 + datetime.timedelta(seconds=70)) == f"waiting for scale-up: {SCALE_UP} for 1m00s"


def test_a_pod_no_node_group_can_fit_fails_at_pending_timeout_quoting_the_autoscaler() -> None:
    events = [event("FailedScheduling", UNSCHEDULABLE, 0, component="default-scheduler"),
              event("NotTriggerScaleUp", NO_SCALE_UP, 10, component="cluster-autoscaler")]  # fmt: skip
    verdict = slowstart.diagnose(pod(scheduled=False), events, 301)
    assert isinstance(verdict, Outcome) and verdict.failure_class == "Unschedulable" and not verdict.infra
    assert verdict.reason is not None
    assert NO_SCALE_UP in verdict.reason and "NotTriggerScaleUp" in verdict.reason and "301 s" in verdict.reason
    assert "Insufficient cpu" in verdict.reason  # the scheduler's own message too


def test_the_autoscalers_latest_word_decides() -> None:
    """The autoscaler re-evaluates every scan (10 s): a scale-up that later cannot happen (the group hit its
    maximum) ends in NotTriggerScaleUp; one that becomes possible ends in TriggeredScaleUp."""
    gave_up = [event("TriggeredScaleUp", SCALE_UP, 10, component="cluster-autoscaler"),
               event("NotTriggerScaleUp", NO_SCALE_UP, 40, component="cluster-autoscaler")]  # fmt: skip
    assert isinstance(slowstart.diagnose(pod(scheduled=False), gave_up, 60), Outcome)
    assert isinstance(slowstart.diagnose(pod(scheduled=False), gave_up[::-1], 60), Outcome)  # order by time
    now_possible = [gave_up[1], event("TriggeredScaleUp", SCALE_UP, 50, component="cluster-autoscaler")]
    assert isinstance(slowstart.diagnose(pod(scheduled=False), now_possible, 60), slowstart.Waiting)


def init_pod(*steps: tuple[str, str | None, V1ContainerState | None], restarts: int = 0) -> V1Pod:
    """A pod behind init containers (name, restartPolicy, state or None before its status): the task's container
    waits as PodInitializing, as the kubelet reports it."""
    p = pod("PodInitializing")
    p.spec.init_containers = [V1Container(name=n, image="busybox", restart_policy=rp) for n, rp, _ in steps]
    p.status.init_container_statuses = [
        V1ContainerStatus(name=n, image="busybox", image_id="", ready=False, restart_count=restarts, state=st)
        for n, _, st in steps if st is not None]  # fmt: skip
    return p


def running(second: int) -> V1ContainerState:
    return V1ContainerState(running=V1ContainerStateRunning(started_at=T0 + datetime.timedelta(seconds=second)))


def exited(code: int) -> V1ContainerState:
    return V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=code, reason="Completed"))


def test_a_running_init_container_is_a_slow_start_that_names_it() -> None:
    # The pod stays Pending while its init containers run, one at a time (kubelet getPhase); a running one is the
    # template's own set-up step at work, not a stuck pod, whatever the events say.
    p = init_pod(("fetch", None, running(10)))
    verdict = slowstart.diagnose(p, [], 300)
    assert isinstance(verdict, slowstart.Waiting) and verdict.kind == "init"
    assert verdict.describe(T0 + datetime.timedelta(seconds=190)) == "init container 'fetch' running for 3m00s"
    # the second of two, the first done; a native sidecar started before it runs beside it and is not the step
    p = init_pod(("proxy", "Always", running(1)), ("setup", None, exited(0)), ("fetch", None, running(20)))
    verdict = slowstart.diagnose(p, [], 300)
    assert isinstance(verdict, slowstart.Waiting) and verdict.what == "init container 'fetch' running"
    out = slowstart.start_timed_out(verdict, 901, 900)
    assert "still init container 'fetch' running" in (out.reason or "") and "kubectl logs POD -c NAME" in (
        out.reason or "")  # fmt: skip


def test_an_init_container_that_is_not_running_is_not_a_slow_start_and_is_named() -> None:
    from kannon.backends.kubernetes.classify import classify_pending

    crashing = init_pod(("setup", None, exited(0)),
                        ("fetch", None, V1ContainerState(waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff"))),
                        restarts=4)  # fmt: skip
    assert slowstart.diagnose(crashing, [], 300) is None
    out = classify_pending(crashing, 300)
    assert out.failure_class == "PendingTimeout" and out.reason is not None
    assert "init container 'fetch' (waiting: CrashLoopBackOff, 4 restarts)" in out.reason
    assert "kubectl logs POD -c fetch" in out.reason
    assert "'fetch' (not started)" in (classify_pending(init_pod(("fetch", None, None)), 300).reason or "")
    # every init container done: the task's own container is what waits, as before
    done = init_pod(("setup", None, exited(0)))
    assert "(container waiting: PodInitializing)" in (classify_pending(done, 300).reason or "")


def test_start_timeout_reason_says_what_it_still_waited_for() -> None:
    waiting = slowstart.Waiting("pull", "pulling image registry.example/big:1", None)
    out = slowstart.start_timed_out(waiting, 901, 900)
    assert out.failure_class == "StartTimeout" and out.reason is not None
    assert "still pulling image registry.example/big:1" in out.reason and "start_timeout (900 s)" in out.reason
    assert "--k8s-start-timeout" in out.reason


def test_deadlines_are_checked_as_bad_input() -> None:
    assert deadlines(300, 900) == (300.0, 900.0)
    assert deadlines(300, 60) == (300.0, 300.0)  # below pending_timeout: no extra time, not an error
    assert deadlines(1, float("inf")) == (1.0, float("inf"))
    for bad in (0, -5, "soon", float("nan"), None):
        with pytest.raises(BackendError, match="start_timeout must be a positive number of seconds"):
            deadlines(300, bad)
    with pytest.raises(BackendError, match="pending_timeout must be"):
        deadlines(0, 900)


@pytest.mark.parametrize("command", ["build", "plan"])
def test_the_cli_refuses_a_bad_start_timeout_in_one_line_with_exit_2(tmp_path: Path, command: str) -> None:
    (tmp_path / "pipe.py").write_text("from tests.support.dyntasks import PidBullet\nroot = PidBullet(name='a')\n")
    out = run_kannon(command, "pipe.py:root", "--backend", "kubernetes", "--k8s-start-timeout", "-5", cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert "start_timeout must be a positive number of seconds, not -5.0 (--k8s-start-timeout)" in out.stderr


@pytest.mark.parametrize(("flag", "value", "says"), [
    ("--pending-timeout", "0", "pending_timeout must be a positive number of seconds, not 0.0 (--pending-timeout)"),
    ("--pending-timeout", "-1", "pending_timeout must be a positive number of seconds, not -1.0 (--pending-timeout)"),
    ("--k8s-qps", "0", "qps must be a positive number of requests per second, not 0.0 (--k8s-qps)"),
    ("--k8s-qps", "nan", "qps must be a positive number of requests per second, not nan (--k8s-qps)"),
    ("--k8s-log-follow-after", "-1", "log_follow_after must be a number of seconds >= 0, not -1.0 "
                                     "(--k8s-log-follow-after)"),
])  # fmt: skip
def test_the_cli_never_swaps_a_bad_value_for_the_default(tmp_path: Path, flag: str, value: str, says: str) -> None:
    """A value given on the command line is the user's: 0 is refused as bad input, never read as "unset"."""
    (tmp_path / "pipe.py").write_text("from tests.support.dyntasks import PidBullet\nroot = PidBullet(name='a')\n")
    out = run_kannon("plan", "pipe.py:root", "--backend", "kubernetes", flag, value, cwd=tmp_path)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr and out.stderr.count("\n") == 1, out.stderr
    assert says in out.stderr


def test_the_cli_option_reaches_the_executor(kubeconfig: Path) -> None:
    import argparse

    from kannon import plugins

    spec = plugins.get_backend("kubernetes")
    parser = argparse.ArgumentParser()
    assert spec.add_options is not None
    spec.add_options(parser.add_argument_group("kubernetes"))
    template = kubeconfig.parent / "job.yaml"
    template.write_text('{"apiVersion": "batch/v1", "kind": "Job", "spec": {"template": {"spec": {"containers": '
                        '[{"name": "main", "image": "x:1"}]}}}}')  # fmt: skip
    default = spec.from_cli(parser.parse_args(["--job-template", str(template)]))
    assert (default.pending_timeout, default.start_timeout) == (300.0, 900.0)
    assert default.follow_after == 1.0
    given = spec.from_cli(parser.parse_args(["--job-template", str(template), "--k8s-start-timeout", "1800",
                                             "--k8s-log-follow-after", "0"]))  # fmt: skip
    assert given.start_timeout == 1800.0 and given.follow_after == 0.0  # 0 is a value, not "unset"


def test_the_legacy_factory_passes_start_timeout_through(kubeconfig: Path) -> None:
    from kannon.backends.kubernetes import make_executor

    template = {"apiVersion": "batch/v1", "kind": "Job",
                "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "x:1"}]}}}}  # fmt: skip
    executor = make_executor(legacy=True, template_job=template, pending_timeout=60, start_timeout=1200)
    assert (executor.pending_timeout, executor.start_timeout) == (60.0, 1200.0)
