"""kannon's node agent (kannon.testing.node) against the real control plane: kube-scheduler binds pods to it, it runs
them as processes and writes their status as a kubelet does, and the real Job controller reacts to that status.
Pods ask for kannon's node by its hostname label, so no other Node of the session can take them.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from tests.e2e import podresource_checks
from tests.e2e.upstream.kube import condition, job_manifest, job_pods, kubectl
from tests.support.procs import wait_until

pytestmark = pytest.mark.upstream

WAIT = 180  # a pod starts a Python interpreter on a loaded 2-core machine; the controllers react in about a second
PY = sys.executable


def on_node(node: str, code: str, **container: Any) -> dict[str, Any]:
    """A pod spec for kannon's node running ``python -c code``."""
    main = {"name": "main", "image": "kannon-process", "command": [PY, "-c", code], **container}
    return {"nodeSelector": {"kubernetes.io/hostname": node}, "containers": [main]}


def pod_log(core: Any, name: str, namespace: str, **options: Any) -> str:
    # Raw: client 36 turns a text/plain answer into the repr of its bytes.
    return str(core.read_namespaced_pod_log(name, namespace, _preload_content=False, **options).data.decode())


def finished(batch: Any, namespace: str, job: str) -> Any:
    current = batch.read_namespaced_job(job, namespace)
    return condition(current, "Complete") or condition(current, "Failed")


def test_job_runs_to_complete_with_kubelet_status_and_logs(batch: Any, core: Any, namespace: str,
                                                           kannon_node: str, upstream: Any) -> None:  # fmt: skip
    code = "import os; print('hello', os.environ['GREETING']); print('line two')"
    spec = on_node(kannon_node, code, env=[{"name": "GREETING", "value": "from kannon's node"}])
    batch.create_namespaced_job(namespace, job_manifest("hello", pod_spec=spec))
    done = wait_until(lambda: finished(batch, namespace, "hello"), WAIT, "the Job to finish", max_delay=0.5)
    assert done.type == "Complete"
    assert batch.read_namespaced_job("hello", namespace).status.succeeded == 1

    pod = job_pods(core, namespace, "hello")[0]
    assert pod.spec.node_name == kannon_node  # bound by kube-scheduler
    assert pod.status.phase == "Succeeded" and pod.status.start_time is not None
    assert pod.status.host_ip == "127.0.0.1"
    state = pod.status.container_statuses[0].state.terminated
    assert (state.exit_code, state.reason) == (0, "Completed") and state.started_at <= state.finished_at
    conditions = {c.type: (c.status, c.reason) for c in pod.status.conditions}
    assert conditions["PodScheduled"][0] == conditions["Initialized"][0] == "True"
    assert conditions["Ready"] == conditions["ContainersReady"] == ("False", "PodCompleted")

    # pods/log: the API server proxies to the node's HTTPS endpoint (daemonEndpoints.kubeletEndpoint).
    name = pod.metadata.name
    assert pod_log(core, name, namespace) == "hello from kannon's node\nline two\n"
    assert pod_log(core, name, namespace, tail_lines=1) == "line two\n"
    stamped = pod_log(core, name, namespace, timestamps=True).splitlines()
    assert [line.split(" ", 1)[1] for line in stamped] == ["hello from kannon's node", "line two"]
    assert all(line[:4].isdigit() and line.split(" ", 1)[0].endswith("Z") for line in stamped)
    assert kubectl(upstream, "logs", "-n", namespace, "job/hello").stdout == "hello from kannon's node\nline two\n"


def test_failing_pods_count_against_the_backoff_limit(batch: Any, core: Any, namespace: str,
                                                      kannon_node: str) -> None:  # fmt: skip
    spec = on_node(kannon_node, "import sys; print('failing', flush=True); sys.exit(3)")
    batch.create_namespaced_job(namespace, job_manifest("failing", backoffLimit=1, pod_spec=spec))
    done = wait_until(lambda: finished(batch, namespace, "failing"), WAIT, "the Job to fail", max_delay=0.5)
    assert (done.type, done.reason) == ("Failed", "BackoffLimitExceeded")
    assert batch.read_namespaced_job("failing", namespace).status.failed == 2  # the first pod and one retry
    pods = job_pods(core, namespace, "failing")
    assert len(pods) == 2
    for pod in pods:
        assert pod.status.phase == "Failed"
        state = pod.status.container_statuses[0].state.terminated
        assert (state.exit_code, state.reason) == (3, "Error")


def test_a_deleted_running_pod_of_a_backoff_limit_0_job_is_counted_failed(batch: Any, core: Any, namespace: str,
                                                                         kannon_node: str) -> None:  # fmt: skip
    spec = on_node(kannon_node, "import time; print('running', flush=True); time.sleep(600)")
    batch.create_namespaced_job(namespace, job_manifest("deleted", backoffLimit=0, pod_spec=spec))

    def running() -> Any:
        pods = job_pods(core, namespace, "deleted")
        return pods[0] if pods and pods[0].status.phase == "Running" else None

    pod = wait_until(running, WAIT, "the pod to run on kannon's node", max_delay=0.5)
    assert pod.status.container_statuses[0].ready and pod.status.container_statuses[0].state.running
    core.delete_namespaced_pod(pod.metadata.name, namespace)  # graceful (30 s): the node sends SIGTERM

    done = wait_until(lambda: condition(batch.read_namespaced_job("deleted", namespace), "Failed"), WAIT,
                      "the Job to fail", max_delay=0.5)  # fmt: skip
    assert done.reason == "BackoffLimitExceeded"
    status = batch.read_namespaced_job("deleted", namespace).status
    assert status.failed == 1 and not status.succeeded
    # No replacement pod: the deleted one was the only pod, and it is gone once its finalizer was removed and
    # kannon's node finished the deletion.
    wait_until(lambda: not job_pods(core, namespace, "deleted"), WAIT, "the deleted pod to be removed", max_delay=0.5)
    assert batch.read_namespaced_job("deleted", namespace).status.failed == 1


def test_env_from_secrets_and_config_maps_read_through_the_api(batch: Any, core: Any, namespace: str,
                                                              kannon_node: str) -> None:  # fmt: skip
    core.create_namespaced_secret(namespace, {"metadata": {"name": "creds"},
                                              "stringData": {"token": "s3cr3t", "user": "ann"}})  # fmt: skip
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "settings"},
                                                  "data": {"mode": "fast", "level": "3"}})  # fmt: skip
    code = "import os; print(*(f'{k}={os.environ.get(k)}' for k in sorted(os.environ) if k.startswith('X_')))"
    env = [{"name": "X_TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
           {"name": "X_MODE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "mode"}}},
           {"name": "X_ABSENT", "valueFrom": {"configMapKeyRef": {"name": "nope", "key": "k", "optional": True}}}]
    env_from = [{"secretRef": {"name": "creds"}, "prefix": "X_S_"}, {"configMapRef": {"name": "settings"},
                                                                     "prefix": "X_C_"}]  # fmt: skip
    spec = on_node(kannon_node, code, env=env, envFrom=env_from)
    batch.create_namespaced_job(namespace, job_manifest("env", pod_spec=spec))
    assert wait_until(lambda: finished(batch, namespace, "env"), WAIT, "the Job to finish", max_delay=0.5).type == \
        "Complete"  # fmt: skip
    pod = job_pods(core, namespace, "env")[0].metadata.name
    assert pod_log(core, pod, namespace).split() == [
        "X_C_level=3", "X_C_mode=fast", "X_MODE=fast", "X_S_token=s3cr3t", "X_S_user=ann", "X_TOKEN=s3cr3t"]


def test_a_missing_secret_holds_the_pod_until_it_is_created(batch: Any, core: Any, namespace: str,
                                                            kannon_node: str) -> None:  # fmt: skip
    env = [{"name": "X_TOKEN", "valueFrom": {"secretKeyRef": {"name": "later", "key": "token"}}}]
    spec = on_node(kannon_node, "import os; print(os.environ['X_TOKEN'])", env=env)
    batch.create_namespaced_job(namespace, job_manifest("later", pod_spec=spec))

    def waiting() -> Any:
        pods = job_pods(core, namespace, "later")
        statuses = (pods[0].status.container_statuses or []) if pods else []
        return statuses and statuses[0].state.waiting and statuses[0].state.waiting.reason == \
            "CreateContainerConfigError" and statuses[0].state.waiting  # fmt: skip

    assert wait_until(waiting, WAIT, "CreateContainerConfigError", max_delay=0.5).message == 'secret "later" not found'
    core.create_namespaced_secret(namespace, {"metadata": {"name": "later"}, "stringData": {"token": "now"}})
    assert wait_until(lambda: finished(batch, namespace, "later"), WAIT, "the Job to finish", max_delay=0.5).type == \
        "Complete"  # fmt: skip
    assert pod_log(core, job_pods(core, namespace, "later")[0].metadata.name, namespace) == "now\n"


def test_over_the_memory_limit_is_oom_killed(batch: Any, core: Any, namespace: str, kannon_node: str) -> None:
    from kannon.testing.kube.node.cgroups import _cgroup_base
    from tests.support.services import service_unavailable

    if _cgroup_base() is None:
        service_unavailable("no writable memory cgroup here: the process runtime cannot enforce memory limits",
                            "run as root on a host with cgroup v1's memory controller or a delegated cgroup v2 subtree")
    code = "import time; b = bytearray(256 * 2**20); time.sleep(60)"
    spec = on_node(kannon_node, code, resources={"limits": {"memory": "64Mi"}})
    batch.create_namespaced_job(namespace, job_manifest("oom", backoffLimit=0, pod_spec=spec))
    done = wait_until(lambda: finished(batch, namespace, "oom"), WAIT, "the Job to fail", max_delay=0.5)
    assert (done.type, done.reason) == ("Failed", "BackoffLimitExceeded")
    pod = job_pods(core, namespace, "oom")[0]
    state = pod.status.container_statuses[0].state.terminated
    assert (pod.status.phase, state.exit_code, state.reason) == ("Failed", 137, "OOMKilled")


def test_kubectl_logs_follow_streams_a_running_pod(batch: Any, core: Any, namespace: str, kannon_node: str,
                                                  upstream: Any, tmp_path: Any) -> None:  # fmt: skip
    import os
    import subprocess

    go = tmp_path / "go"
    code = (f"import os, time\nprint('first', flush=True)\nwhile not os.path.exists({str(go)!r}): time.sleep(0.05)\n"
            "print('second', flush=True)")  # fmt: skip
    batch.create_namespaced_job(namespace, job_manifest("follow", pod_spec=on_node(kannon_node, code)))
    env = {**os.environ, "KUBECONFIG": str(upstream.kubeconfig)}

    def running() -> Any:
        pods = job_pods(core, namespace, "follow")
        return pods[0].metadata.name if pods and pods[0].status.phase == "Running" else None

    pod = wait_until(running, WAIT, "the pod to run", max_delay=0.5)
    follow = subprocess.Popen(["kubectl", "logs", "-f", "-n", namespace, pod], env=env, stdout=subprocess.PIPE,
                              text=True)  # fmt: skip
    try:
        assert follow.stdout is not None
        assert follow.stdout.readline() == "first\n"  # streamed while the pod still runs
        assert follow.poll() is None
        go.touch()
        assert follow.stdout.readline() == "second\n"
        assert follow.wait(WAIT) == 0  # the stream ends when the container does
    finally:
        follow.kill()


def test_a_node_coming_back_runs_its_pods_and_finishes_their_deletions(core: Any, namespace: str, upstream: Any,
                                                                      tmp_path: Any) -> None:  # fmt: skip
    from kannon.testing.kube.node.process_runtime import ProcessRuntime
    from kannon.testing.node import NodeAgent

    name = f"kannon-node-back-{namespace[-5:]}"
    tls = (str(upstream.creds.serving_cert), str(upstream.creds.serving_key))

    def agent() -> NodeAgent:
        return NodeAgent(upstream.api_client(), name, ProcessRuntime(str(tmp_path)), tls=tls)

    with agent():  # registers the Node, then stops: its pods now wait for it
        pass
    try:
        for pod in ("kept", "dropped"):
            spec = {"nodeName": name, "restartPolicy": "Never", **on_node(name, f"print('{pod} ran')")}
            core.create_namespaced_pod(namespace, {"metadata": {"name": pod}, "spec": spec})
        core.delete_namespaced_pod("dropped", namespace)  # bound and not terminal: only its kubelet can finish this
        assert core.read_namespaced_pod("dropped", namespace).metadata.deletion_timestamp is not None

        with agent():
            phase = lambda: core.read_namespaced_pod("kept", namespace).status.phase  # noqa: E731
            wait_until(lambda: phase() == "Succeeded", WAIT, "the pod to run once its node is back", max_delay=0.5)
            assert pod_log(core, "kept", namespace) == "kept ran\n"
            wait_until(lambda: "dropped" not in [p.metadata.name for p in core.list_namespaced_pod(namespace).items],
                       WAIT, "the deleted pod to be removed", max_delay=0.5)  # fmt: skip
    finally:
        core.delete_node(name)


def test_the_command_names_bad_input_in_one_line(upstream: Any, tmp_path: Any) -> None:
    import subprocess

    def node(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([PY, "-m", "kannon.testing.node", *args], capture_output=True, text=True, timeout=120)

    missing = node("--kubeconfig", str(tmp_path / "nope"), "--name", "n")
    assert (missing.returncode, missing.stderr) == (2, f"kannon node: --kubeconfig {tmp_path / 'nope'}: no such file\n")
    broken = tmp_path / "broken.kubeconfig"
    broken.write_text("clusters: [\n")
    garbled = node("--kubeconfig", str(broken), "--name", "n")
    assert garbled.returncode == 2 and garbled.stderr.count("\n") == 1 and str(broken) in garbled.stderr
    # The API server refuses a Node name that is no DNS subdomain: 422, its message quoted.
    refused = node(*upstream.node_flags(), "--name", "Not_A_DNS_Name")
    assert refused.returncode == 1 and refused.stderr.splitlines()[-1].startswith(
        "kannon node: registering Node 'Not_A_DNS_Name' failed: 422 Node \"Not_A_DNS_Name\" is invalid")
    assert "Traceback" not in refused.stderr + garbled.stderr


def test_an_evicted_pod_keeps_its_disruption_target_and_an_ignore_rule_replaces_it(
    batch: Any, core: Any, namespace: str, kannon_node: str
) -> None:
    # The API server writes DisruptionTarget into the pod's status; the node, writing the terminal status after it
    # stopped the container, must keep it, or the Job controller counts the pod against backoffLimit: 0.
    policy = {"rules": [{"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]}]}
    spec = on_node(kannon_node, "import time; print('running', flush=True); time.sleep(600)")
    batch.create_namespaced_job(namespace, job_manifest("evicted", backoffLimit=0, podFailurePolicy=policy,
                                                        pod_spec=spec))  # fmt: skip

    def running() -> Any:
        pods = [p for p in job_pods(core, namespace, "evicted") if p.status.phase == "Running"]
        return pods[0] if pods else None

    pod = wait_until(running, WAIT, "the pod to run", max_delay=0.5)
    core.create_namespaced_pod_eviction(pod.metadata.name, namespace, {
        "apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": pod.metadata.name, "namespace": namespace},
    })  # fmt: skip
    replacement = wait_until(lambda: [p for p in job_pods(core, namespace, "evicted")
                                      if p.metadata.uid != pod.metadata.uid and p.status.phase == "Running"],
                             WAIT, "a replacement pod running", max_delay=0.5)  # fmt: skip
    assert len(replacement) == 1
    job = batch.read_namespaced_job("evicted", namespace)
    assert not job.status.failed and condition(job, "Failed") is None and condition(job, "FailureTarget") is None


def test_deletion_sends_sigterm_then_sigkill_after_the_grace_period(core: Any, namespace: str,
                                                                    kannon_node: str) -> None:  # fmt: skip
    import time

    from kubernetes import watch

    polite = ("import signal, sys, time\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
              "print('up', flush=True)\ntime.sleep(600)")  # fmt: skip
    stubborn = ("import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
                "print('up', flush=True)\ntime.sleep(600)")  # fmt: skip
    for name, code in (("polite", polite), ("stubborn", stubborn)):
        spec = {"restartPolicy": "Never", "terminationGracePeriodSeconds": 3, **on_node(kannon_node, code)}
        core.create_namespaced_pod(namespace, {"metadata": {"name": name}, "spec": spec})

    def up(name: str) -> bool:
        pod = core.read_namespaced_pod(name, namespace)
        return pod.status.phase == "Running" and pod_log(core, name, namespace) == "up\n"

    for name in ("polite", "stubborn"):
        wait_until(lambda: up(name), WAIT, f"{name} to run", max_delay=0.5)  # noqa: B023 (used at once)
    start = core.list_namespaced_pod(namespace).metadata.resource_version
    deleted_at = time.monotonic()
    for name in ("polite", "stubborn"):
        core.delete_namespaced_pod(name, namespace)  # the pod's own grace period: 3 s
    final: dict[str, tuple[Any, float]] = {}
    for event in watch.Watch().stream(core.list_namespaced_pod, namespace, resource_version=start,
                                      timeout_seconds=WAIT):  # fmt: skip
        if event["type"] == "DELETED":
            final[event["object"].metadata.name] = (event["object"], time.monotonic() - deleted_at)
        if len(final) == 2:
            break
    polite_pod, _ = final["polite"]
    stubborn_pod, stubborn_after = final["stubborn"]
    term = polite_pod.status.container_statuses[0].state.terminated
    assert (polite_pod.status.phase, term.exit_code, term.reason) == ("Succeeded", 0, "Completed")
    term = stubborn_pod.status.container_statuses[0].state.terminated
    assert (stubborn_pod.status.phase, term.exit_code, term.reason) == ("Failed", 137, "Error")
    assert stubborn_after >= 3  # SIGKILL only once the grace period is over


def test_on_failure_restarts_the_container_in_place(batch: Any, core: Any, namespace: str, kannon_node: str,
                                                    tmp_path: Any) -> None:  # fmt: skip
    mark = tmp_path / "tried"
    code = (f"import pathlib, sys\np = pathlib.Path({str(mark)!r})\nprint('attempt', 2 if p.exists() else 1)\n"
            "if not p.exists():\n    p.touch()\n    sys.exit(5)")  # fmt: skip
    spec = {**on_node(kannon_node, code), "restartPolicy": "OnFailure"}
    batch.create_namespaced_job(namespace, job_manifest("again", pod_spec=spec))
    assert wait_until(lambda: finished(batch, namespace, "again"), WAIT, "the Job", max_delay=0.5).type == "Complete"
    pods = job_pods(core, namespace, "again")
    assert len(pods) == 1  # the same pod, its container restarted
    status = pods[0].status.container_statuses[0]
    assert status.restart_count == 1 and status.state.terminated.exit_code == 0
    assert (status.last_state.terminated.exit_code, status.last_state.terminated.reason) == (5, "Error")
    name = pods[0].metadata.name
    assert pod_log(core, name, namespace) == "attempt 2\n"
    assert pod_log(core, name, namespace, previous=True) == "attempt 1\n"


def test_init_containers_and_a_native_sidecar_complete_the_job(batch: Any, core: Any, namespace: str,
                                                               kannon_node: str) -> None:  # fmt: skip
    # The real API server validates and the real Job controller counts what kannon's kubelet runs: an init
    # container, a native sidecar (restartPolicy Always, KEP-753) stopped after the app containers, statuses
    # sorted by name (the sidecar "zz-proxy" handles SIGTERM: as PID 1 it would otherwise wait out the grace period).
    proxy = "import signal, sys, time; signal.signal(signal.SIGTERM, lambda *a: sys.exit(0)); time.sleep(3600)"
    spec = on_node(kannon_node, "print('main ran')")
    spec["containers"].append({"name": "beta", "image": "kannon-process", "command": [PY, "-c", "pass"]})
    spec["initContainers"] = [
        {"name": "setup", "image": "kannon-process", "command": [PY, "-c", "print('set up')"]},
        {"name": "zz-proxy", "image": "kannon-process", "command": [PY, "-c", proxy], "restartPolicy": "Always"},
    ]
    batch.create_namespaced_job(namespace, job_manifest("sidecar", pod_spec=spec))
    done = wait_until(lambda: finished(batch, namespace, "sidecar"), WAIT, "the Job to finish", max_delay=0.5)
    assert done.type == "Complete"
    pod = job_pods(core, namespace, "sidecar")[0]
    assert pod.status.phase == "Succeeded"
    assert [cs.name for cs in pod.status.container_statuses] == ["beta", "main"]
    assert [cs.name for cs in pod.status.init_container_statuses] == ["setup", "zz-proxy"]
    assert all(cs.state.terminated is not None for cs in pod.status.init_container_statuses)
    assert pod_log(core, pod.metadata.name, namespace, container="setup") == "set up\n"


def _quick(name: str) -> dict[str, Any]:
    return {"name": name, "image": "kannon-process", "command": [PY, "-c", "pass"]}


def test_init_containers_and_sidecars_count_in_the_real_schedulers_fit(batch: Any, core: Any, namespace: str,
                                                                        kannon_node: str) -> None:  # fmt: skip
    # What the emulator's scheduler check follows (tests/e2e/k8s/test_emulator_podresources.py), decided here by the
    # real kube-scheduler against kannon's node (16Gi allocatable).
    podresource_checks.check_init_containers_count_in_scheduling(batch, core, namespace, _quick,
                                                                 {"kubernetes.io/hostname": kannon_node})  # fmt: skip


def test_qos_class_covers_init_containers_as_the_real_api_server_sets_it(batch: Any, core: Any,
                                                                          namespace: str) -> None:  # fmt: skip
    podresource_checks.check_qos_class_covers_init_containers(batch, core, namespace, _quick)
