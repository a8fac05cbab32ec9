"""Failure classification from the client's own V1Job / V1Pod models."""

from __future__ import annotations

from kubernetes.client import (
    V1Container,
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Job,
    V1JobCondition,
    V1JobSpec,
    V1JobStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
    V1PodTemplateSpec,
    V1ResourceRequirements,
)

from kannon.backends.kubernetes import classify as kw


def job(*conditions: tuple[str, str, str | None], deadline: int | None = None) -> V1Job:
    return V1Job(
        metadata=V1ObjectMeta(name="j"),
        spec=V1JobSpec(
            template=V1PodTemplateSpec(spec=V1PodSpec(containers=[V1Container(name="main")])),
            active_deadline_seconds=deadline,
        ),
        status=V1JobStatus(conditions=[V1JobCondition(type=t, status=s, reason=r) for t, s, r in conditions]),
    )


def pod(
    state: V1ContainerState | None = None,
    phase: str = "Failed",
    reason: str | None = None,
    conditions: list[V1PodCondition] | None = None,
    memory: str | None = None,
    init_state: V1ContainerState | None = None,
) -> V1Pod:
    limits = {"memory": memory} if memory else None
    return V1Pod(
        metadata=V1ObjectMeta(name="j-abcde"),
        spec=V1PodSpec(
            containers=[V1Container(name="main", image="img:1", resources=V1ResourceRequirements(limits=limits))]
        ),
        status=V1PodStatus(
            phase=phase,
            reason=reason,
            message="The node was low on resource: memory." if reason else None,
            conditions=conditions,
            container_statuses=None
            if state is None
            else [
                V1ContainerStatus(name="main", image="img:1", image_id="", ready=False, restart_count=0, state=state)
            ],
            init_container_statuses=None
            if init_state is None
            else [
                V1ContainerStatus(
                    name="init", image="init:1", image_id="", ready=False, restart_count=0, state=init_state
                )
            ],
        ),
    )


def terminated(code: int, reason: str = "Error", message: str | None = None) -> V1ContainerState:
    return V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=code, reason=reason, message=message))


def waiting(reason: str, message: str | None = None) -> V1ContainerState:
    return V1ContainerState(waiting=V1ContainerStateWaiting(reason=reason, message=message))


FAILED = ("Failed", "True", "BackoffLimitExceeded")


def test_only_true_complete_or_failed_conditions_are_terminal() -> None:
    assert kw.job_terminal(V1Job(metadata=V1ObjectMeta(name="j"), status=V1JobStatus())) is None
    assert kw.job_terminal(job(("SuccessCriteriaMet", "True", None))) is None
    assert kw.job_terminal(job(("FailureTarget", "True", "BackoffLimitExceeded"))) is None
    assert kw.job_terminal(job(("Failed", "False", None))) is None
    assert kw.job_terminal(job(("SuccessCriteriaMet", "True", None), ("Complete", "True", None)))[0] == "Complete"
    assert kw.job_terminal(job(FAILED)) == ("Failed", "BackoffLimitExceeded", None)


def test_oom_killed_names_the_limit_and_the_fix() -> None:
    out = kw.classify_failure(job(FAILED), pod(terminated(137, "OOMKilled"), memory="512Mi"), "main")
    assert out.failure_class == "OOMKilled" and out.exit_code == 137 and not out.infra
    assert "512Mi" in out.reason and "Hints(memory=" in out.reason


def test_non_zero_exit_uses_the_child_exit_code_vocabulary_and_its_own_reason_line() -> None:
    out = kw.classify_failure(job(FAILED), pod(terminated(6)), "main")
    assert (out.exit_code, out.failure_class, out.infra) == (6, "TaskFailed", False)
    assert "raised" in out.reason
    out = kw.classify_failure(
        job(FAILED), pod(terminated(6)), "main", log_tail=["Traceback", "kannon-child: ValueError: bad input"]
    )
    assert out.reason == "ValueError: bad input"
    out = kw.classify_failure(job(FAILED), pod(terminated(42)), "main")
    assert (out.exit_code, out.failure_class) == (42, "NonZeroExit") and "42" in out.reason


def test_eviction_and_preemption_are_infrastructure_failures() -> None:
    evicted = kw.classify_failure(job(FAILED), pod(None, reason="Evicted"), "main")
    assert (evicted.failure_class, evicted.infra) == ("Evicted", True) and "low on resource" in evicted.reason
    preempted = kw.classify_failure(
        job(FAILED),
        pod(
            terminated(143),
            conditions=[
                V1PodCondition(
                    type="DisruptionTarget", status="True", reason="PreemptionByScheduler", message="preempted by pod x"
                )
            ],
        ),
        "main",
    )
    assert (preempted.failure_class, preempted.infra) == (
        "Preempted",
        True,
    ) and "preempted by pod x" in preempted.reason
    api_evicted = kw.classify_failure(
        job(FAILED),
        pod(
            terminated(143),
            conditions=[V1PodCondition(type="DisruptionTarget", status="True", reason="EvictionByEvictionAPI")],
        ),
        "main",
    )
    assert (api_evicted.failure_class, api_evicted.infra) == ("Evicted", True)
    tainted = kw.classify_failure(
        job(FAILED),
        pod(
            terminated(143),
            conditions=[V1PodCondition(type="DisruptionTarget", status="True", reason="DeletionByTaintManager")],
        ),
        "main",
    )
    assert (tainted.failure_class, tainted.infra) == ("Disrupted", True)


def test_deadline_exceeded_wins_over_the_kill_signal() -> None:
    out = kw.classify_failure(job(("Failed", "True", "DeadlineExceeded"), deadline=30), pod(terminated(143)), "main")
    assert out.failure_class == "DeadlineExceeded" and "30 s" in out.reason and "timeout" in out.reason


def test_missing_pod_or_exit_code_falls_back_to_the_job_reason() -> None:
    out = kw.classify_failure(job(FAILED), None, "main")
    assert out.failure_class == "BackoffLimitExceeded" and out.exit_code is None
    out = kw.classify_failure(job(("Failed", "True", "PodFailurePolicy")), None, "main")
    assert out.failure_class == "PodFailurePolicy"


def test_container_that_cannot_start_points_at_the_interpreter() -> None:
    out = kw.classify_failure(
        job(FAILED), pod(terminated(128, "StartError", 'exec: "py3": not found')), "main", python="py3"
    )
    assert out.failure_class == "ContainerStart" and "'py3'" in out.reason and "not found" in out.reason


def test_fail_fast_on_image_pull_and_config_errors_including_init_containers() -> None:
    assert kw.fail_fast(pod(waiting("ContainerCreating"), phase="Pending")) is None
    pull = kw.fail_fast(pod(waiting("ImagePullBackOff", 'Back-off pulling image "img:1"'), phase="Pending"))
    assert pull is not None and (pull.failure_class, pull.infra) == ("ImagePull", True)
    assert "Back-off pulling" in pull.reason and "img:1" in pull.reason
    init = kw.fail_fast(pod(None, phase="Pending", init_state=waiting("ErrImagePull")))
    assert init is not None and init.failure_class == "ImagePull" and "'init'" in init.reason
    config = kw.fail_fast(pod(waiting("CreateContainerConfigError", 'secret "creds" not found'), phase="Pending"))
    assert config is not None and (config.failure_class, config.infra) == ("ContainerConfig", False)
    assert "creds" in config.reason


def test_pending_classification() -> None:
    assert kw.classify_pending(None, 300).failure_class == "NoPod"
    unsched = kw.classify_pending(
        pod(
            None,
            phase="Pending",
            conditions=[
                V1PodCondition(
                    type="PodScheduled", status="False", reason="Unschedulable", message="0/3 nodes: Insufficient cpu"
                )
            ],
        ),
        301,
    )
    assert unsched.failure_class == "Unschedulable" and "Insufficient cpu" in unsched.reason
    assert "301 s" in unsched.reason
    slow = kw.classify_pending(pod(waiting("ContainerCreating"), phase="Pending"), 10)
    assert slow.failure_class == "PendingTimeout" and "ContainerCreating" in slow.reason


def test_started_and_final_states() -> None:
    assert not kw.pod_started(pod(waiting("ContainerCreating"), phase="Pending"), "main")
    assert kw.pod_started(pod(V1ContainerState(running=V1ContainerStateRunning()), phase="Running"), "main")
    assert kw.pod_started(pod(terminated(0, "Completed"), phase="Succeeded"), "main")
    assert not kw.pod_started(pod(terminated(128, "StartError"), phase="Failed"), "main")
    assert kw.pod_final(pod(terminated(1), phase="Running"), "main")
    assert not kw.pod_final(pod(V1ContainerState(running=V1ContainerStateRunning()), phase="Running"), "main")
    assert kw.pod_final(pod(None, reason="Evicted"), "main")


def test_the_culprit_of_a_failed_job_is_the_disrupted_or_first_ended_pod_not_the_killed_replacement() -> None:
    import datetime

    def at(p: V1Pod, second: int, name: str) -> V1Pod:
        p.metadata.creation_timestamp = datetime.datetime(2026, 1, 1, 0, 0, second, tzinfo=datetime.timezone.utc)
        p.metadata.name = name
        return p

    preempted = at(pod(terminated(137), conditions=[V1PodCondition(type="DisruptionTarget", status="True",
                                                                   reason="PreemptionByScheduler")]), 1, "a")
    replacement = at(pod(terminated(143)), 2, "b")
    assert kw.culprit([replacement, preempted], "main") is preempted
    first, second = at(pod(terminated(6)), 1, "a"), at(pod(terminated(143)), 2, "b")
    assert kw.culprit([second, first], "main") is first
    pending = at(pod(waiting("ContainerCreating"), phase="Pending"), 3, "c")
    assert kw.culprit([pending], "main") is pending and kw.culprit([], "main") is None
    ok = at(pod(terminated(0, "Completed"), phase="Succeeded"), 1, "a")
    assert kw.succeeded([pending, ok]) is ok and kw.succeeded([pending]) is pending


def _pod_level(reason: str, message: str, state: V1ContainerState | None = None) -> V1Pod:
    p = pod(state, reason=reason)
    assert p.status is not None
    p.status.message = message
    return p


def test_pod_level_failures_without_a_container_status_have_their_own_reasons() -> None:
    """Reasons the kubelet writes on the pod itself (pkg/kubelet/lifecycle/predicate.go: admission; the pod's
    activeDeadlineSeconds; graceful node shutdown), with no or only a killed container: each named, the node's
    doing retried as infrastructure, the task's own deadline not."""
    for reason in ("OutOfcpu", "OutOfmemory", "UnexpectedAdmissionError"):
        out = kw.classify_failure(job(FAILED), _pod_level(reason, f"Pod was rejected: {reason}"), "main")
        assert (out.failure_class, out.infra) == (reason, True), out
        assert reason in (out.reason or "") and "rejected" in (out.reason or "")
    shutdown = kw.classify_failure(job(FAILED), _pod_level(
        "Terminated", "Pod was terminated in response to imminent node shutdown.", terminated(143)), "main")
    assert (shutdown.failure_class, shutdown.infra) == ("NodeShutdown", True), shutdown
    deadline = kw.classify_failure(job(FAILED), _pod_level(
        "DeadlineExceeded", "Pod was active on the node longer than the specified deadline", terminated(137)), "main")
    assert (deadline.failure_class, deadline.infra) == ("DeadlineExceeded", False), deadline
    assert "activeDeadlineSeconds" in (deadline.reason or "") and "memory" not in (deadline.reason or "")


def test_exit_137_is_not_called_an_oom_unless_the_kubelet_says_oomkilled() -> None:
    lost = kw.classify_failure(job(FAILED), pod(terminated(
        137, "ContainerStatusUnknown", "The container could not be located when the pod was terminated")), "main")
    assert (lost.failure_class, lost.infra) == ("ContainerStatusUnknown", True), lost
    assert "out of memory" not in (lost.reason or "") and "not a kill for memory" in (lost.reason or "")
    killed = kw.classify_failure(job(FAILED), pod(terminated(137, "Error")), "main")
    assert killed.failure_class == "Killed" and not killed.infra
    assert "out of memory" not in (killed.reason or "") and "OOMKilled" in (killed.reason or ""), killed.reason
    oom = kw.classify_failure(job(FAILED), pod(terminated(137, "OOMKilled"), memory="64Mi"), "main")
    assert oom.failure_class == "OOMKilled" and "64Mi" in (oom.reason or "")


def test_the_task_container_is_found_by_name_among_sorted_statuses_and_its_end_ends_the_attempt() -> None:
    # kubelet: containerStatuses sorted by name, so the sidecar's status comes first; a plain sidecar keeps the pod
    # Running after the task's container exited (getPhase).
    statuses = [
        V1ContainerStatus(name="istio-proxy", image="proxy", image_id="", ready=True, restart_count=0,
                          state=V1ContainerState(running=V1ContainerStateRunning())),
        V1ContainerStatus(name="main", image="img:1", image_id="", ready=False, restart_count=0,
                          state=V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=6))),
    ]  # fmt: skip
    running = V1Pod(metadata=V1ObjectMeta(name="j-abcde"),
                    spec=V1PodSpec(containers=[V1Container(name="main"), V1Container(name="istio-proxy")]),
                    status=V1PodStatus(phase="Running", container_statuses=statuses))  # fmt: skip
    assert kw.main_ended(running, "main")
    assert not kw.main_ended(running, "istio-proxy")
    assert kw.classify_failure(None, running, "main").exit_code == 6
    single = pod(V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=0)), phase="Running")
    assert not kw.main_ended(single, "main")  # one container: the pod, and the Job, end with it


def test_a_failed_init_container_is_named_with_its_exit_code() -> None:
    waiting = V1ContainerState(waiting=V1ContainerStateWaiting(reason="PodInitializing"))
    failed = pod(waiting)
    failed.spec.init_containers = [V1Container(name="fetch-data")]
    failed.status.init_container_statuses = [V1ContainerStatus(
        name="fetch-data", image="img:1", image_id="", ready=False, restart_count=0,
        state=V1ContainerState(terminated=V1ContainerStateTerminated(exit_code=3, reason="Error")))]  # fmt: skip
    out = kw.classify_failure(job(("Failed", "True", "BackoffLimitExceeded")), failed, "main")
    assert (out.failure_class, out.exit_code, out.infra) == ("InitContainerFailed", None, False)
    assert out.reason is not None and "'fetch-data'" in out.reason and "exit code 3 (Error)" in out.reason
