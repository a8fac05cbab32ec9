"""A pod's effective requests and limits: what the scheduler's fit check, ResourceQuota and Kueue charge for it.

Upstream computes them once (k8s.io/component-helpers/resource ``PodRequests``/``PodLimits``) and every consumer
uses that; so does the emulator. The rules ("Resource sharing within containers" in
kubernetes.io/docs/concepts/workloads/pods/init-containers/ and .../sidecar-containers/):

* init containers run one at a time, so the effective init amount is the highest of them, not their sum;
* a native sidecar (an init container with ``restartPolicy: Always``) keeps running, so it adds to every init
  container started after it and to the app containers;
* the pod's amount is the higher of (app containers + sidecars) and the effective init amount.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kubernetes.utils import parse_quantity

Amounts = dict[str, Decimal]


def _container(c: dict[str, Any], which: str) -> Amounts:
    """A container's ``requests`` or ``limits``. An unset request falls back to the limit, as the API server's pod
    defaulting does (a Job's pod template is not defaulted, and Kueue applies the same fallback to it)."""
    res = c.get("resources") or {}
    values = {**(res.get("limits") or {}), **(res.get("requests") or {})} if which == "requests" else (
        res.get("limits") or {})  # fmt: skip
    return {name: parse_quantity(q) for name, q in values.items()}


def _add(into: Amounts, more: Amounts) -> None:
    for name, q in more.items():
        into[name] = into.get(name, Decimal(0)) + q


def _at_least(into: Amounts, other: Amounts) -> None:
    for name, q in other.items():
        if q > into.get(name, Decimal(0)):
            into[name] = q


def effective(pod_spec: dict[str, Any], which: str = "requests") -> Amounts:
    """The pod's effective ``requests`` (or ``limits``) per resource name."""
    total: Amounts = {}
    for c in pod_spec.get("containers") or []:
        _add(total, _container(c, which))
    sidecars: Amounts = {}
    init: Amounts = {}
    for c in pod_spec.get("initContainers") or []:
        own = _container(c, which)
        if c.get("restartPolicy") == "Always":
            _add(total, own)
            _add(sidecars, own)
            _at_least(init, sidecars)
        else:
            running = dict(own)
            _add(running, sidecars)  # the sidecars started before it run alongside
            _at_least(init, running)
    _at_least(total, init)
    return total


def qos_class(pod_spec: dict[str, Any]) -> str:
    """``status.qosClass`` as the API server sets it at creation (pkg/apis/core/helper/qos ``ComputePodQOS``;
    kubernetes.io/docs/concepts/workloads/pods/pod-qos/): over app *and* init containers, cpu and memory only, zero
    amounts ignored; Guaranteed when every container has both limits and the summed requests equal the summed limits."""
    requests: Amounts = {}
    limits: Amounts = {}
    guaranteed = True
    for c in [*(pod_spec.get("containers") or []), *(pod_spec.get("initContainers") or [])]:
        asked = {n: q for n, q in _container(c, "requests").items() if n in ("cpu", "memory") and q}
        capped = {n: q for n, q in _container(c, "limits").items() if n in ("cpu", "memory") and q}
        _add(requests, asked)
        _add(limits, capped)
        guaranteed = guaranteed and set(capped) == {"cpu", "memory"}
    if not requests and not limits:
        return "BestEffort"
    if guaranteed and requests == limits:
        return "Guaranteed"
    return "Burstable"
