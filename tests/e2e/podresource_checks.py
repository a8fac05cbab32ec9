"""How init containers and native sidecars count in a pod's resources, shared by the emulator's tier
(tests/e2e/k8s/test_emulator_podresources.py) and the real control plane's (tests/e2e/upstream/test_node.py, where
the real kube-scheduler and kube-apiserver decide). Both nodes offer 16Gi of memory.

Upstream ("Resource sharing within containers", kubernetes.io/docs/concepts/workloads/pods/init-containers/ and
.../sidecar-containers/; k8s.io/component-helpers/resource ``PodRequests``): init containers run one at a time, so
the highest counts, not the sum; a native sidecar keeps running, so it adds to every later init container and to the
app containers. ``status.qosClass`` is computed over app and init containers (pod-qos docs).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests.support.procs import wait_until

Container = Callable[[str], dict[str, Any]]  # name -> a container that exits 0 at once (image, command)
WAIT = 180


def _mem(gi: int) -> dict[str, Any]:
    return {"resources": {"requests": {"memory": f"{gi}Gi"}}}


def _job(name: str, pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"backoffLimit": 0, "template": {"spec": {"restartPolicy": "Never", **pod_spec}}}}  # fmt: skip


def _pod(core: Any, namespace: str, job: str) -> Any:
    pods = core.list_namespaced_pod(namespace, label_selector=f"batch.kubernetes.io/job-name={job}").items
    return pods[0] if pods else None


def _unschedulable(core: Any, namespace: str, job: str) -> str | None:
    pod = _pod(core, namespace, job)
    if pod is not None and pod.spec.node_name:
        raise AssertionError(f"the pod of {job} was bound to {pod.spec.node_name}: the scheduler found it fits")
    for c in (pod.status.conditions or []) if pod is not None and pod.status else []:
        if c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable":
            return str(c.message)
    return None


# name -> (init containers as (memory Gi, is a sidecar), app containers' memory Gi, schedulable on 16Gi)
SCHEDULING = {
    "init-max": ([(10, False), (10, False)], [1], True),  # one at a time: max(10, 10) = 10, not 20
    "init-over": ([(20, False)], [1], False),  # the init container alone does not fit
    "sidecar-app": ([(9, True)], [9], False),  # a sidecar runs beside the app container: 18
    "sidecar-init": ([(9, True), (9, False)], [1], False),  # the init container starts beside the sidecar: 18
}


def check_init_containers_count_in_scheduling(batch: Any, core: Any, namespace: str, container: Container,
                                              selector: dict[str, str]) -> None:  # fmt: skip
    for name, (inits, apps, fits) in SCHEDULING.items():
        spec: dict[str, Any] = {
            "nodeSelector": selector,
            "containers": [{**container(f"app-{i}"), **_mem(gi)} for i, gi in enumerate(apps)],
            "initContainers": [
                {**container(f"init-{i}"), **_mem(gi), **({"restartPolicy": "Always"} if sidecar else {})}
                for i, (gi, sidecar) in enumerate(inits)
            ],
        }
        batch.create_namespaced_job(namespace, _job(name, spec))
    for name, (_, _, fits) in SCHEDULING.items():
        if fits:
            # It was scheduled and ran: its Job completes.
            def complete(n: str = name) -> bool:
                job = batch.read_namespaced_job(n, namespace)
                return any(c.type == "Complete" and c.status == "True" for c in job.status.conditions or [])

            wait_until(complete, WAIT, f"Job {name} to complete", max_delay=0.5)
        else:
            def refused(n: str = name) -> str | None:
                return _unschedulable(core, namespace, n)

            message = wait_until(refused, WAIT, f"pod of {name} to be unschedulable", max_delay=0.5)
            assert message is not None and "Insufficient memory" in message, (name, message)


# name -> (app container resources, init container resources or None, expected qosClass)
_G = {"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "100m", "memory": "64Mi"}}
QOS = {
    "qos-init-unbounded": (_G, {}, "Burstable"),  # Guaranteed app, an init container without limits
    "qos-init-bounded": (_G, _G, "Guaranteed"),
    "qos-limits-only": ({"limits": {"cpu": "100m", "memory": "64Mi"}}, None, "Guaranteed"),  # requests default
    "qos-init-asks": ({}, {"requests": {"memory": "64Mi"}}, "Burstable"),  # only the init container asks
    "qos-nothing": ({}, {}, "BestEffort"),
}


def check_qos_class_covers_init_containers(batch: Any, core: Any, namespace: str, container: Container) -> None:
    unschedulable = {"kubernetes.io/hostname": "no-such-node"}  # the pods only need to exist
    for name, (app, init, _) in QOS.items():
        spec: dict[str, Any] = {"nodeSelector": unschedulable, "containers": [{**container("main"), "resources": app}]}
        if init is not None:
            spec["initContainers"] = [{**container("setup"), "resources": init}]
        batch.create_namespaced_job(namespace, _job(name, spec))
    for name, (_, _, expected) in QOS.items():
        def created(n: str = name) -> Any:
            return _pod(core, namespace, n)

        pod = wait_until(created, WAIT, f"pod of {name}", max_delay=0.5)
        assert pod.status.qos_class == expected, (name, pod.status.qos_class, expected)
