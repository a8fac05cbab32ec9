"""Creating an attempt's Job, off the caller's thread: create, or adopt what already runs the same thing.

``launch`` (in :mod:`.executor`) registers the attempt and hands it here. A create answered 409 reads the existing
Job: an earlier master's Job of this attempt that runs the same thing (its spec hash: image, command with the
hand-off spec's sha256, resources, placement) is adopted; one that failed, or runs something else, is deleted and
created afresh, and the attempt's log says so. Whatever goes wrong ends the attempt with a Finished.
"""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING, Any

from kannon.backends.base import BackendError, Finished, Launch
from kannon.backends.kubernetes import classify as kc
from kannon.backends.kubernetes import raw
from kannon.backends.kubernetes.api import api_status
from kannon.backends.kubernetes.attempt import Attempt, Phase
from kannon.backends.kubernetes.manifest import spec_changes
from kannon.backends.kubernetes.names import LABEL_RUN, LABEL_TASK, label_value
from kannon.backends.kubernetes.tracker import JobTracker

if TYPE_CHECKING:
    from kubernetes.client import V1Job

log = logging.getLogger("kannon.kubernetes")


class _Again(Exception):
    """The create must be tried again (the Job of that name vanished, or was a stale failed attempt)."""

def _newer(a: V1Job, b: V1Job) -> bool:
    """Whether ``a`` is a later state of the same Job than ``b`` (resourceVersions are etcd revisions; if either is
    not a number, trust the watch's ``a``)."""
    ra, rb = a.metadata.resource_version or "", b.metadata.resource_version or ""
    return not (ra.isdigit() and rb.isdigit()) or int(ra) > int(rb)


class JobCreator(JobTracker):
    """The create/adopt half of :class:`K8sJobExecutor`."""

    container: str | None

    def _create_step(self, attempt: Attempt, body: dict[str, Any], leftover: V1Job | None,
                     replace: str | None = None) -> None:  # fmt: skip
        """In the creator pool: adopt or create the attempt's Job (after deleting ``replace``, a changed Job of an
        earlier master); whatever goes wrong ends the attempt."""
        try:
            if leftover is not None:
                self._adopt(attempt, leftover, why="left running by an earlier master")
                return
            if replace is not None:
                self._delete_and_wait(replace)
            for tries_left in reversed(range(3)):  # a plain loop: a tenacity one cost ~20 us per create
                try:
                    self._create(attempt, body)
                    break
                except _Again:
                    if not tries_left:
                        raise
        except Exception as e:
            if isinstance(e, BackendError) and self._fatal is None:
                self._fatal = e  # unusable as configured (permission, namespace): the next launch() says so
            if isinstance(e, _Again):
                e = BackendError(f"Job {attempt.name} keeps appearing and disappearing; is another kannon master "
                                 "running?")  # fmt: skip
            log.warning("could not create Job %s: %s", attempt.name, e)
            self._end_now(attempt, Finished(attempt.launch.key, None, f"the {self.name} backend could not launch "
                                            f"it: {e}", "LaunchFailed", where=f"job {attempt.name}"))  # fmt: skip

    def _create(self, attempt: Attempt, body: dict[str, Any]) -> None:
        from kubernetes.client.rest import ApiException

        launch, name = attempt.launch, attempt.name
        try:
            # the answer's uid is all that is read: a JSON view, not the client's model (raw.py says why)
            created = raw.Job(self.api.call("create", "jobs", raw.as_json(self._batch.create_namespaced_job),
                                            self.namespace, body))  # fmt: skip
        except ApiException as e:
            if e.status != 409:
                reason, message = api_status(e)
                if e.status == 404:
                    raise BackendError(f"cannot create Jobs in namespace {self.namespace!r}: {message or reason}. "
                                       "Create the namespace or pass namespace=/--namespace") from e  # fmt: skip
                for value in {*launch.env.values(), *launch.hints.env.values()}:
                    if len(value) >= 4:  # the server may echo an invalid value back: env values are never shown
                        message = message.replace(value, "***")
                self._end_now(attempt, Finished(
                    launch.key, None, f"the API server refused the Job {name} ({e.status} {reason}): {message}",
                    "InvalidJob", where=f"job {name}",
                ))  # fmt: skip
                return
            self._on_conflict(attempt, body)  # 409: a retried create that had landed, or an earlier master's attempt
            return
        with self._state:
            attempt.uid = created.metadata.uid
            early = self._early.pop(name, None)  # the watch may have been quicker than the create's answer
            if early is not None and early.metadata.uid == attempt.uid:
                attempt.job = early
        self._created(attempt)

    def _on_conflict(self, attempt: Attempt, body: dict[str, Any]) -> None:
        launch, name = attempt.launch, attempt.name
        existing = self._read_job(name)
        if existing is None:  # deleted in between: create again
            raise _Again
        labels = existing.metadata.labels or {}
        ours = labels.get(LABEL_RUN) == label_value(launch.run_id) and labels.get(LABEL_TASK) == label_value(
            launch.task_id)  # fmt: skip
        if not ours:
            self._end_now(attempt, Finished(
                launch.key, None, f"a Job named {name} already exists and is not kannon's for this task; "
                "choose another job_prefix", "NameConflict", where=f"job {name}",
            ))  # fmt: skip
            return
        terminal = kc.job_terminal(existing)
        if terminal is not None and terminal[0] == "Failed":
            # an earlier master's failed attempt of the same number: its result is stale, run it again
            self._delete_and_wait(name)
            raise _Again
        changes = spec_changes(existing, body, self.container)
        if changes:  # the same name, but it runs something else (the code or the hints changed): run ours
            self._replacing(attempt, name, changes)
            self._delete_and_wait(name)
            raise _Again
        self._adopt(attempt, existing, why="created earlier (409 AlreadyExists)")

    def _replacing(self, attempt: Attempt, old: str, changes: list[str]) -> None:
        """Say, in the log and in the attempt's own log and ``where``, that a Job was not adopted, and why."""
        why = f"Job {old} of an earlier master runs a different {', '.join(changes)}: deleted, not adopted"
        log.warning("%s %s: %s", attempt.launch.family, attempt.launch.task_id, why)
        with self._state:
            attempt.replaced = why
            attempt.notes.append(f"kannon: {why}")

    def _adopt(self, attempt: Attempt, job: V1Job, why: str) -> None:
        name = job.metadata.name
        log.info("adopting Job %s for %s %s (%s)", name, attempt.launch.family, attempt.launch.task_id, why)
        with self._state:
            # The watch may have seen this Job change (even finish) after our read and before the attempt knew
            # its uid: that newer state is kept in _early, and no later event will repeat it.
            early = self._early.pop(name, None)
            if early is not None and early.metadata.uid == job.metadata.uid and _newer(early, job):
                job = early
            attempt.job = job
            attempt.uid = job.metadata.uid
            attempt.adopted = why
            attempt.notes.append(f"kannon: adopted existing Job {name} ({why})")
        self._created(attempt)

    def _created(self, attempt: Attempt) -> None:
        """The attempt's Job exists: watch it, or delete it at once if it was cancelled while being created."""
        with self._state:
            if attempt.phase not in (Phase.CREATING, Phase.CANCELLING):
                return  # ended meanwhile (its Job was already deleted by someone else)
            attempt.since = time.monotonic()
            cancelled = attempt.phase is Phase.CANCELLING
            lost = self._fatal if not cancelled and self._fatal is not None and attempt.end() else None
            if not cancelled and lost is None:
                attempt.to(Phase.PENDING)
        if lost is not None:  # the watches died while it was being created: nobody would see it finish
            self._abandon(attempt, lost)
        elif cancelled:
            if not self._delete(attempt.name):
                self._end_now(attempt, self._cancelled(attempt))
        else:
            self._evaluate(attempt)

    def _register(self, launch: Launch, name: str) -> Attempt:
        attempt = Attempt(launch, name, time.monotonic())
        with self._state:
            self._by_name[name] = attempt
            self._by_key[launch.key] = attempt
            self._done.discard(name)
        self.track(launch.key)
        return attempt

    def _end_now(self, attempt: Attempt, finished: Finished) -> None:
        with self._state:
            claimed = attempt.end()
        if claimed:
            self._finish(attempt, finished)

