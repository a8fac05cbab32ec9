"""The run lease on Kubernetes: one ``coordination.k8s.io/v1`` Lease per run, so that one master at a time runs it.

The holder renews ``spec.renewTime`` every third of ``leaseDurationSeconds``. A Lease whose renewTime is older than
its duration (its holder was SIGKILLed, its node died) is taken over: the update carries the resourceVersion that
was read, so of two masters taking over at once the API server lets exactly one through (409 Conflict for the
other). Expiry compares renewTime with this machine's clock, as the holder wrote it with its own: clocks must agree
to well within the duration (NTP does). Only the holder cancels, deletes or sweeps the run's children.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
import socket
import threading
from typing import TYPE_CHECKING, Any

from kannon.backends.base import BackendError, LeaseHeld
from kannon.backends.kubernetes.api import ApiCaller, api_status
from kannon.backends.kubernetes.names import dns_label, label_value

if TYPE_CHECKING:
    from kubernetes.client import V1Lease

log = logging.getLogger("kannon.kubernetes")


def lease_name(run_id: str) -> str:
    """``kannon-<run id>``, as a valid object name (a DNS-1123 subdomain)."""
    return "kannon-" + (dns_label(label_value(run_id)) or "run")[:200]


def holder_identity(invocation_id: str = "") -> str:
    """Who this master is, for a person reading LeaseHeld: host (the pod's name in a cluster), pid, invocation."""
    import uuid

    host = os.environ.get("POD_NAME") or socket.gethostname()
    return f"host {host} pid {os.getpid()} (invocation {invocation_id or uuid.uuid4().hex[:12]})"


_IDENTITY = re.compile(r"^host (?P<host>\S+) pid (?P<pid>\d+) ")


def holder_gone(identity: str) -> bool:
    """True when ``identity`` names a master on this very host whose process no longer exists (it was
    SIGKILLed): its lease need not run out before a rerun here takes over. A reused pid only makes us wait."""
    m = _IDENTITY.match(identity or "")
    if m is None or m["host"] != (os.environ.get("POD_NAME") or socket.gethostname()):
        return False
    try:
        os.kill(int(m["pid"]), 0)
    except ProcessLookupError:
        return True
    except OSError:  # EPERM: it exists (another user's)
        return False
    return False


def _now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _stamp(when: Any) -> str:
    return when.strftime("%Y-%m-%d %H:%M:%SZ") if isinstance(when, dt.datetime) else "an unknown time"


class _Busy(Exception):
    def __init__(self, holder: str) -> None:
        super().__init__(holder)
        self.holder = holder


class RunLease:
    """Acquire, renew (in a thread) and release one run's Lease. ``lost`` is set if another master took it."""

    def __init__(self, api: ApiCaller, api_client: Any, namespace: str, name: str, identity: str,
                 duration: float) -> None:  # fmt: skip
        from kubernetes import client

        self.api, self.namespace, self.name, self.identity = api, namespace, name, identity
        self.duration = max(1, round(duration))
        self._coord = client.CoordinationV1Api(api_client)
        self._current: V1Lease | None = None  # our last written state (its resourceVersion is the next update's)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.lost = threading.Event()
        self.renewals = 0

    # -- acquire ------------------------------------------------------------------------------------------------
    def acquire(self, wait: float | None) -> None:
        """Hold the Lease, or LeaseHeld naming the holder (at once, or after waiting ``wait`` seconds)."""
        import tenacity

        from kubernetes.client.rest import ApiException

        try:
            for attempt in tenacity.Retrying(
                retry=tenacity.retry_if_exception_type(_Busy), reraise=True,
                stop=tenacity.stop_after_delay(wait or 0), wait=tenacity.wait_fixed(min(1.0, self.duration / 3)),
            ):  # fmt: skip
                with attempt:
                    self._try_acquire()
        except _Busy as e:
            raise LeaseHeld(e.holder) from None
        except ApiException as e:  # 403 arrives as a BackendError from the caller; this is e.g. a missing namespace
            raise BackendError(f"cannot take the run lease {self.namespace}/{self.name}: {e.status} "
                               f"{api_status(e)[1] or e.reason}") from e  # fmt: skip
        self._thread = threading.Thread(target=self._renew_loop, name="kannon-k8s-lease", daemon=True)
        self._thread.start()

    def _try_acquire(self) -> None:
        from kubernetes.client.rest import ApiException

        lease = self._read()
        now = _now()
        if lease is None:
            body = self._body(now, transitions=0)
            try:
                self._current = self.api.call("create", "leases", self._coord.create_namespaced_lease, self.namespace,
                                            body)  # fmt: skip
                return
            except ApiException as e:
                if e.status != 409:
                    raise
                raise _Busy(self._describe(self._read())) from None  # another master created it first
        spec = lease.spec
        mine = spec.holder_identity == self.identity
        gone = not mine and holder_gone(spec.holder_identity)
        if not mine and spec.holder_identity and not gone and not self._expired(lease, now):
            raise _Busy(self._describe(lease))
        if not mine:
            why = "its process is gone" if gone else f"not renewed for {spec.lease_duration_seconds} s"
            log.info("taking over the run lease %s from %s (%s)", self.name, spec.holder_identity or "nobody",
                     why)  # fmt: skip
        transitions = (spec.lease_transitions or 0) + (0 if mine or not spec.holder_identity else 1)
        body = self._body(now, transitions, acquired=spec.acquire_time if mine else now)
        body["metadata"]["resourceVersion"] = lease.metadata.resource_version
        try:
            self._current = self.api.call("update", "leases", self._coord.replace_namespaced_lease, self.name,
                                        self.namespace, body)  # fmt: skip
        except ApiException as e:
            if e.status not in (404, 409):
                raise
            raise _Busy(self._describe(self._read())) from None  # someone else's update landed first

    def _body(self, now: dt.datetime, transitions: int, acquired: Any = None) -> dict[str, Any]:
        from kubernetes.client import ApiClient

        spec = {"holderIdentity": self.identity, "leaseDurationSeconds": self.duration,
                "acquireTime": acquired or now, "renewTime": now, "leaseTransitions": transitions}  # fmt: skip
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace,
                             "labels": {"app.kubernetes.io/managed-by": "kannon"}},
                "spec": ApiClient().sanitize_for_serialization(spec)}  # fmt: skip

    def _read(self) -> V1Lease | None:
        from kubernetes.client.rest import ApiException

        try:
            return self.api.call("get", "leases", self._coord.read_namespaced_lease, self.name, self.namespace)
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _expired(self, lease: V1Lease, now: dt.datetime) -> bool:
        spec = lease.spec
        renewed = spec.renew_time or spec.acquire_time
        if renewed is None:
            return True
        duration = spec.lease_duration_seconds or self.duration
        return bool(renewed + dt.timedelta(seconds=duration) < now)

    def _describe(self, lease: V1Lease | None) -> str:
        if lease is None or not lease.spec.holder_identity:
            return "another master (it was releasing the lease; try again)"
        spec = lease.spec
        return (f"{spec.holder_identity} since {_stamp(spec.acquire_time)} (Lease {self.namespace}/{self.name}, "
                f"renewed {_stamp(spec.renew_time)}, expires {spec.lease_duration_seconds} s after that)")

    # -- renew / release ----------------------------------------------------------------------------------------
    def _renew_loop(self) -> None:
        period = self.duration / 3
        while not self._stop.wait(period):
            try:
                self._renew()
            except Exception as e:  # keep trying: the lease only lapses after its whole duration
                log.warning("could not renew the run lease %s: %s", self.name, e)
            if self.lost.is_set():
                return

    def _renew(self) -> None:
        from kubernetes.client.rest import ApiException

        current = self._current
        assert current is not None
        body = self._body(_now(), current.spec.lease_transitions or 0, acquired=current.spec.acquire_time)
        body["metadata"]["resourceVersion"] = current.metadata.resource_version
        try:
            self._current = self.api.call("update", "leases", self._coord.replace_namespaced_lease, self.name,
                                        self.namespace, body)  # fmt: skip
            self.renewals += 1
        except ApiException as e:
            if e.status not in (404, 409):
                raise
            lease = self._read()
            if lease is not None and lease.spec.holder_identity == self.identity:
                self._current = lease  # our own write raced a retry: continue from the newest state
                return
            log.error("the run lease %s was taken by %s: this master no longer touches the run's Jobs",
                      self.name, self._describe(lease))  # fmt: skip
            self.lost.set()

    def held(self) -> bool:
        return self._current is not None and not self.lost.is_set()

    def release(self) -> None:
        """Stop renewing and delete the Lease if it is still ours (preconditions: our resourceVersion)."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(5.0)
        current, self._current = self._current, None
        if current is None or self.lost.is_set():
            return
        lease = self._read()
        if lease is None or lease.spec.holder_identity != self.identity:
            return  # taken over meanwhile: not ours to delete
        options = client.V1DeleteOptions(preconditions=client.V1Preconditions(
            uid=lease.metadata.uid, resource_version=lease.metadata.resource_version))  # fmt: skip
        try:
            self.api.call("delete", "leases", self._coord.delete_namespaced_lease, self.name, self.namespace,
                          body=options)  # fmt: skip
        except ApiException as e:
            if e.status not in (404, 409):
                raise

