"""The run lease on Kubernetes (issue 10 §3): the emulator's ``coordination.k8s.io/v1`` Leases as upstream serves
them, and ``K8sJobExecutor.acquire_lease`` / ``release_lease`` on top — one master per run, takeover of a Lease
that was not renewed for its duration, exactly one winner among concurrent masters, and only the holder touching
the run's Jobs.

Upstream: kubernetes.io/docs/reference/kubernetes-api/cluster-resources/lease-v1/ (fields, MicroTime), API concepts
(resourceVersion, 409 Conflict on a stale update, delete preconditions), client-go's leader election (takeover of an
expired lease through an update carrying the resourceVersion that was read).
"""

from __future__ import annotations

import datetime as dt
import threading
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from kannon.backends.base import BackendError, LeaseHeld, RunInfo
from kannon.testing import KubeEmulator
from tests.e2e.k8s import test_k8s_backend as kb
from tests.e2e.k8s.test_k8s_backend import launch_of, wait_flag

pytestmark = pytest.mark.k8s
make = kb.make  # the executor factory fixture
NS = "default"


def lease_body(name: str, holder: str, renewed: dt.datetime, duration: int = 15, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": name},
            "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": renewed.isoformat(),
                     "renewTime": renewed.isoformat(), "leaseTransitions": 0, **spec}}  # fmt: skip


def now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


# -- the emulator serves Leases as upstream does --------------------------------------------------------------------
def test_emulator_discovery_lists_the_coordination_group(kube: KubeEmulator) -> None:
    groups = client.ApisApi(kube.api_client()).get_api_versions()
    assert "coordination.k8s.io" in [g.name for g in groups.groups]
    resources = client.CoordinationV1Api(kube.api_client()).get_api_resources()
    (lease,) = [r for r in resources.resources if r.name == "leases"]
    assert lease.kind == "Lease" and lease.namespaced and {"create", "get", "update", "delete"} <= set(lease.verbs)


def test_emulator_lease_create_get_update_conflict_delete(kube: KubeEmulator) -> None:
    api = client.CoordinationV1Api(kube.api_client())
    renewed = dt.datetime(2026, 12, 3, 12, 1, 2, 345678, tzinfo=dt.timezone.utc)
    created = api.create_namespaced_lease(NS, lease_body("l1", "a", renewed))
    assert created.metadata.uid and created.metadata.resource_version
    assert created.spec.renew_time == renewed  # MicroTime keeps the microseconds
    with pytest.raises(ApiException) as exists:
        api.create_namespaced_lease(NS, lease_body("l1", "b", renewed))
    assert exists.value.status == 409 and '"reason":"AlreadyExists"' in exists.value.body.replace(" ", "")

    stale = created.metadata.resource_version
    body = lease_body("l1", "a", now())
    body["metadata"]["resourceVersion"] = stale
    updated = api.replace_namespaced_lease("l1", NS, body)
    assert updated.metadata.resource_version != stale and updated.metadata.uid == created.metadata.uid
    body = lease_body("l1", "b", now())
    body["metadata"]["resourceVersion"] = stale  # the version read before someone else's update
    with pytest.raises(ApiException) as conflict:
        api.replace_namespaced_lease("l1", NS, body)
    assert conflict.value.status == 409 and "the object has been modified" in conflict.value.body
    assert api.read_namespaced_lease("l1", NS).spec.holder_identity == "a"

    assert [lease.metadata.name for lease in api.list_namespaced_lease(NS).items] == ["l1"]
    stale_delete = client.V1DeleteOptions(preconditions=client.V1Preconditions(resource_version=stale))
    with pytest.raises(ApiException) as precondition:
        api.delete_namespaced_lease("l1", NS, body=stale_delete)
    assert precondition.value.status == 409 and "Precondition failed" in precondition.value.body
    api.delete_namespaced_lease("l1", NS)
    with pytest.raises(ApiException) as gone:
        api.read_namespaced_lease("l1", NS)
    assert gone.value.status == 404


def test_emulator_rejects_what_lease_validation_rejects(kube: KubeEmulator) -> None:
    api = client.CoordinationV1Api(kube.api_client())
    for field, value in (("leaseDurationSeconds", 0), ("leaseTransitions", -1)):
        with pytest.raises(ApiException) as invalid:
            api.create_namespaced_lease(NS, lease_body("bad", "a", now(), **{field: value}))
        assert invalid.value.status == 422 and f"spec.{field}" in invalid.value.body


# -- the executor's lease ----------------------------------------------------------------------------------------
def run_info(tmp_path: Path, run_id: str = "run1") -> RunInfo:
    return RunInfo(run_id, tmp_path / "run")


def test_a_second_master_gets_lease_held_naming_the_holder(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    first, _ = make()
    first.acquire_lease(run_info(tmp_path), wait=None)
    second, _ = make()
    with pytest.raises(LeaseHeld) as held:
        second.acquire_lease(run_info(tmp_path), wait=None)
    assert first._run_lease is not None
    assert held.value.holder.startswith(first._run_lease.identity) and " since " in held.value.holder
    assert "pid" in held.value.holder and "host" in held.value.holder
    other_run, _ = make()
    other_run.acquire_lease(run_info(tmp_path, "run2"), wait=None)  # another run: its own lease
    first.release_lease()
    first.release_lease()  # idempotent
    second.acquire_lease(run_info(tmp_path), wait=None)  # released: free at once


def test_a_waiting_master_gets_the_lease_when_it_is_released(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    first, _ = make()
    first.acquire_lease(run_info(tmp_path), wait=None)
    second, _ = make()
    with pytest.raises(LeaseHeld):
        second.acquire_lease(run_info(tmp_path), wait=0.5)  # waits, then gives up
    done: list[BaseException | None] = []
    waiter = threading.Thread(target=lambda: done.append(_call(second.acquire_lease, run_info(tmp_path), 60.0)))
    waiter.start()
    first.release_lease()
    waiter.join(timeout=90)
    assert done == [None]


def _call(fn: Any, *args: Any) -> BaseException | None:
    try:
        fn(*args)
    except BaseException as e:
        return e
    return None


def test_a_lease_not_renewed_for_its_duration_is_taken_over(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    """A SIGKILLed master's Lease: renewTime older than leaseDurationSeconds. The next master takes it over."""
    api = client.CoordinationV1Api(kube.api_client())
    dead = "host gone pid 4242 (invocation 20261203T120102Z-3fa9c1)"
    api.create_namespaced_lease(NS, lease_body("kannon-run1", dead, now() - dt.timedelta(seconds=16), duration=15))
    rerun, _ = make()
    rerun.acquire_lease(run_info(tmp_path), wait=None)
    lease = api.read_namespaced_lease("kannon-run1", NS)
    assert rerun._run_lease is not None and lease.spec.holder_identity == rerun._run_lease.identity
    assert lease.spec.lease_transitions == 1
    # a Lease renewed within its duration is not taken over
    api.create_namespaced_lease(NS, lease_body("kannon-run2", dead, now() - dt.timedelta(seconds=5), duration=15))
    other, _ = make()
    with pytest.raises(LeaseHeld, match="pid 4242"):
        other.acquire_lease(run_info(tmp_path, "run2"), wait=None)


@pytest.mark.parametrize("start", ["no lease", "an expired lease"])
def test_concurrent_acquires_exactly_one_wins(kube: KubeEmulator, make: Any, tmp_path: Path, start: str) -> None:
    """Six masters at the same moment: through the create's 409, or through the takeover's resourceVersion."""
    if start == "an expired lease":
        client.CoordinationV1Api(kube.api_client()).create_namespaced_lease(
            NS, lease_body("kannon-run1", "host gone pid 1 (invocation y)", now() - dt.timedelta(seconds=60)))
    masters = [make()[0] for _ in range(6)]
    barrier = threading.Barrier(len(masters))
    results: list[BaseException | None] = [None] * len(masters)

    def race(i: int) -> None:
        barrier.wait()
        results[i] = _call(masters[i].acquire_lease, run_info(tmp_path), None)

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(masters))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=90)
    winners = [i for i, r in enumerate(results) if r is None]
    assert len(winners) == 1, results
    winner = masters[winners[0]]._run_lease
    assert winner is not None
    for r in results:
        assert r is None or (isinstance(r, LeaseHeld) and r.holder.startswith(winner.identity)), r
    holder = client.CoordinationV1Api(kube.api_client()).read_namespaced_lease("kannon-run1", NS).spec.holder_identity
    assert holder == winner.identity


def test_only_the_holder_deletes_the_lease_or_the_runs_jobs(kube: KubeEmulator, make: Any, tmp_path: Path) -> None:
    """A master whose lease was taken over stops touching the run: no Job deletes, no launches, and its release
    leaves the new holder's Lease alone. A master that never held the lease releases nothing."""
    api = client.CoordinationV1Api(kube.api_client())
    first, rec = make(lease_duration=3)
    first.acquire_lease(run_info(tmp_path), wait=None)
    bystander, _ = make()
    with pytest.raises(LeaseHeld):
        bystander.acquire_lease(run_info(tmp_path), wait=None)
    bystander.release_lease()  # not the holder: nothing happens
    assert first._run_lease is not None
    assert api.read_namespaced_lease("kannon-run1", NS).spec.holder_identity == first._run_lease.identity

    running = launch_of(tmp_path, 1, wait_flag(tmp_path / "never"))
    first.launch(running)
    rec.wait_started(running.key)
    # another master takes the Lease over (as after an expiry): the first notices at its next renewal
    taken = api.read_namespaced_lease("kannon-run1", NS)
    body = lease_body("kannon-run1", "host other pid 7 (invocation x)", now(), duration=3, leaseTransitions=1)
    body["metadata"]["resourceVersion"] = taken.metadata.resource_version
    api.replace_namespaced_lease("kannon-run1", NS, body)
    kube.wait_for(lambda: first._run_lease is not None and first._run_lease.lost.is_set(), timeout=30,
                  message="the first master never noticed it lost the lease")  # fmt: skip
    with pytest.raises(BackendError, match="no longer holds the run lease"):
        first.cancel(running.key)
    with pytest.raises(BackendError, match="took over the run lease"):
        first.launch(launch_of(tmp_path, 2, "print('never')"))
    assert list(kube.jobs()) != []  # the running Job is the new holder's to adopt, not deleted
    first.release_lease()
    assert api.read_namespaced_lease("kannon-run1", NS).spec.holder_identity == "host other pid 7 (invocation x)"


def test_a_sigkilled_masters_lease_is_taken_over_by_a_rerun_that_adopts_its_jobs(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    """The first master dies without releasing anything (SIGKILL): no renewals, no cleanup. A rerun waiting for the
    lease gets it once leaseDurationSeconds have passed since the last renewal, and adopts the running Job."""
    first, rec1 = make(lease_duration=2)
    first.acquire_lease(run_info(tmp_path), wait=None)
    code = wait_flag(tmp_path / "go", "print('adopted')")
    first.launch(launch_of(tmp_path, 1, code))
    rec1.wait_started(f"{1:032x}-1")
    assert first._run_lease is not None
    first._run_lease._stop.set()  # SIGKILL: the renewals stop, the Lease stays
    first._stop.set()
    for w in first._watchers:
        w.stop()

    rerun, rec2 = make(lease_duration=2)
    with pytest.raises(LeaseHeld):
        rerun.acquire_lease(run_info(tmp_path), wait=None)  # not expired yet (renewed within the last 2 s)
    rerun.acquire_lease(run_info(tmp_path), wait=60)  # waits for the expiry, then takes it over
    lease = client.CoordinationV1Api(kube.api_client()).read_namespaced_lease("kannon-run1", NS)
    assert rerun._run_lease is not None and lease.spec.holder_identity == rerun._run_lease.identity
    assert lease.spec.lease_transitions == 1
    again = launch_of(tmp_path, 1, code)
    rerun.launch(again)
    assert (rec2.wait_started(again.key).where or "").endswith("(adopted)")
    (tmp_path / "go").touch()
    fin = rec2.wait_finished(again.key)
    assert fin.ok and fin.log_tail[-1] == "adopted"


def test_a_lease_that_may_not_be_taken_is_a_backend_error_naming_the_permission(
    kube: KubeEmulator, make: Any, tmp_path: Path
) -> None:
    executor, _ = make()
    kube.faults.forbid("create", "leases")
    with pytest.raises(BackendError, match="may not create leases") as info:
        executor.acquire_lease(run_info(tmp_path), wait=None)
    assert "kannon k8s rbac" in str(info.value)
    kube.faults.clear()
