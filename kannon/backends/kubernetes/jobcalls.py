"""The requests the executor makes on the run's Jobs and pods by name: read, list a Job's pods, open a watch, and
delete (at once, waiting for the watch to see it gone, or confirmed by reading until 404).

Only the lease holder deletes (:mod:`.lease`): a master that lost the run's lease leaves the Jobs to the one that took
it over. :class:`.tracker.JobTracker` sets up the state these use (``_init_tracking``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kannon.backends.base import BackendError, Executor
from kannon.backends.kubernetes import raw
from kannon.backends.kubernetes.api import ApiCaller
from kannon.backends.kubernetes.lease import RunLease
from kannon.backends.kubernetes.raw import as_json, list_items

log = logging.getLogger("kannon.kubernetes")


class JobCalls(Executor):
    """Job and pod requests by name, shared by the tracker, the creator and the executor."""

    namespace: str
    api: ApiCaller
    _state: threading.RLock
    _gone: dict[str, threading.Event]  # job name -> set when the watch sees it deleted
    _run_lease: RunLease | None  # None: no lease asked for (direct use), every delete is ours to make
    _batch: Any
    _core: Any

    def _read_job(self, name: str) -> raw.Job | None:
        from kubernetes.client.rest import ApiException

        try:
            return raw.Job(self.api.call("get", "jobs", as_json(self._batch.read_namespaced_job), name, self.namespace))
        except ApiException as e:
            if e.status == 404:
                return None
            raise

    def _list_job_pods(self, name: str) -> list[raw.Pod]:
        found = self.api.call("list", "pods", as_json(self._core.list_namespaced_pod), self.namespace,
                              label_selector=f"job-name={name}")  # fmt: skip
        return list_items(found, raw.Pod)[1]

    def _open_watch(self, resource: str, fn: Callable[..., Any], selector: str, rv: str | None, timeout: int) -> Any:
        kwargs: dict[str, Any] = {"label_selector": selector, "watch": True, "allow_watch_bookmarks": True,
                                  "timeout_seconds": timeout, "_preload_content": False,
                                  "_request_timeout": (10, timeout + 30)}  # fmt: skip
        if rv:
            kwargs["resource_version"] = rv
        return self.api.call("watch", resource, fn, self.namespace, **kwargs)

    def _delete(self, name: str, policy: str = "Background") -> bool:
        """Delete a Job and its pods; False when it was already gone."""
        from kubernetes import client
        from kubernetes.client.rest import ApiException

        if self._run_lease is not None and not self._run_lease.held():  # only the lease holder touches the run's Jobs
            raise BackendError(f"this master no longer holds the run lease {self._run_lease.name}: Job {name} is left "
                               "to the master that took it over")  # fmt: skip
        with self._state:
            self._gone.setdefault(name, threading.Event())
        try:
            self.api.call("delete", "jobs", self._batch.delete_namespaced_job, name, self.namespace,
                          body=client.V1DeleteOptions(propagation_policy=policy))  # fmt: skip
            return True
        except ApiException as e:
            if e.status == 404:
                return False
            raise

    def _delete_and_wait(self, name: str, timeout: float = 60.0) -> None:
        with self._state:
            gone = self._gone.setdefault(name, threading.Event())
        if not self._delete(name):
            with self._state:
                self._gone.pop(name, None)
        elif not gone.wait(timeout):
            raise BackendError(f"Job {name} was not gone {timeout:.0f} s after deleting it (finalizers?)")

    def _delete_quietly(self, name: str) -> None:
        try:
            self._delete(name)
        except Exception as e:  # cleanup is best effort: TTL removes what is left
            log.warning("could not delete Job %s: %s", name, e)

    def _delete_confirmed(self, name: str, timeout: float = 60.0) -> str | None:
        """Delete a Job by name and read it by name until it is gone; None when confirmed, else why not.

        Foreground propagation keeps the Job until the garbage collector has removed its pods, so its 404 confirms
        the pods are gone too, without listing them."""
        import tenacity

        from kubernetes.client.rest import ApiException

        try:
            self._delete(name, policy="Foreground")
            present = tenacity.Retrying(
                retry=tenacity.retry_if_result(lambda job: job is not None),
                wait=tenacity.wait_exponential(multiplier=0.05, max=1.0),
                stop=tenacity.stop_after_delay(timeout),
                retry_error_callback=lambda state: state.outcome.result() if state.outcome else None,
            )(self._read_job, name)
        except BackendError as e:
            return str(e)
        except ApiException as e:
            return f"the API server answered {e.status} {e.reason}"
        if present is not None:
            return f"still present {timeout:.0f} s after deleting it (finalizers: {present.metadata.finalizers})"
        return None
