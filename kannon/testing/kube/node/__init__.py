"""The emulated node: scheduler check, kubelet pod workers, container logs, and two container runtimes.

Pod status shapes follow the pod lifecycle page (kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/):
phase Pending -> Running -> Succeeded/Failed, container states waiting{reason} / running{startedAt} /
terminated{exitCode, reason}, pod conditions PodScheduled / PodReadyToStartContainers / Initialized /
ContainersReady / Ready, and DisruptionTarget for disruptions
(kubernetes.io/docs/concepts/workloads/pods/disruptions/#pod-disruption-conditions).

One part of a node per module: ``kubelet`` (Node: the scheduler's fit check; Kubelet: a worker per pod, logs,
deletion), ``podworker`` (one pod's lifecycle: init containers, sidecars, app containers), ``container`` (one
container's run and restarts), ``scheduling`` (binding, a cluster autoscaler's scale-up, slow image pulls, and their
events), ``status`` (phases and conditions), ``env`` (a container's
environment, Secrets, ConfigMaps, $(VAR)), ``termination`` (termination messages), ``logs`` (container logs),
``runtime`` (what a runtime offers the kubelet), ``process_runtime`` and ``warm`` (local processes, cold or forked
from a zygote: kannon's fork server, kannon.forkserver), ``cgroups`` (their memory cgroups), ``docker_runtime``.
kannon.testing.node runs the same kubelet against a real API server.
"""
