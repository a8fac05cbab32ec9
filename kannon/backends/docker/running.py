"""One attempt's container, on a thread of its own: create it (or adopt one a previous master left running), start
it, stream its output into the attempt's log until the engine closes the stream (the container ended), read the exit
state, classify it, remove the container and report ``Finished``. No polling.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from kannon import childresult, logtail
from kannon.backends.base import BackendError, Finished, Launch, LogLine, Started, tail_lines
from kannon.backends.docker.classify import classify
from kannon.backends.docker.config import LABEL_CONFIG, LABEL_RUN
from kannon.backends.docker.containers import ContainerSpecs
from kannon.backends.docker.engine import yielded

MAX_LINE = 64 * 1024  # longest live log line passed on whole

log = logging.getLogger("kannon.docker")


@dataclass
class _Handle:
    launch: Launch
    name: str
    config: dict[str, Any]
    container: Any = None  # docker.models.containers.Container once created or adopted
    started: bool = False
    cancelled: bool = False
    adopted: bool = False
    thread: threading.Thread | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        short = self.container.id[:12] if self.container is not None else "not created"
        return f"container {self.name} ({short}{', adopted' if self.adopted else ''})"


class ContainerRunner(ContainerSpecs):
    """The per-container half of :class:`~kannon.backends.docker.DockerExecutor`: launch() and its thread."""

    _handles: dict[str, _Handle]
    _adoptable: dict[str, Any]  # task id -> running container left by a previous master

    def launch(self, launch: Launch) -> None:
        config = self.container_config(launch)
        problem = self._missing_image(config["image"])
        if problem:
            raise BackendError(problem)
        launch.log_path.parent.mkdir(parents=True, exist_ok=True)
        handle = _Handle(launch, config["name"], config)
        with self._lock:
            self._handles[launch.key] = handle
        self.track(launch.key)
        # One thread per container. The container's output must be streamed per container anyway (a blocking HTTP
        # stream each); that stream ends exactly when the container ends, and wait() then returns at once. So the
        # same thread knows the end without polling, and no second mechanism (the engine's event stream) has to be
        # correlated with it. The number of threads is bounded by the core's max_parallel.
        handle.thread = threading.Thread(target=self._run, args=(handle,), name=f"kannon-docker-{handle.name}")
        handle.thread.daemon = True
        handle.thread.start()

    def _run(self, h: _Handle) -> None:
        finished: Finished | None = None
        try:
            finished = self._run_container(h)
        except Exception as e:  # whatever happens, the core must get its Finished
            finished = self._failure(h, e)
        finally:
            if h.container is not None:
                try:
                    self._remove(h.container)
                except Exception as e:  # the Finished below must go out regardless
                    log.warning("could not remove %s: %s", h.where, e)
            with contextlib.suppress(OSError):
                self._remove_secret_file(launch=h.launch)
            if finished is None:
                finished = Finished(h.launch.key, None, "the docker backend lost track of the container", where=h.where)
            with self._lock:
                self._handles.pop(h.launch.key, None)
            self.emit(finished)

    def _run_container(self, h: _Handle) -> Finished:
        import docker.errors

        launch = h.launch
        container = self._claim_adoptable(launch.task_id, h.config)
        if container is None:
            container = self._create(h)
        else:
            h.adopted = True
        with self._lock:
            h.container = container
            cancelled = h.cancelled
        if cancelled:
            return Finished(launch.key, None, "cancelled before it started", "Cancelled", where=h.where)
        if not h.adopted:
            try:
                container.start()
            except docker.errors.APIError as e:
                return Finished(
                    launch.key,
                    None,
                    f"the engine could not start the container: {e.explanation or e}. Check that the image provides "
                    f"the interpreter {self.python!r} (DockerExecutor(python=...)) and the requested devices",
                    "ContainerStart",
                    where=h.where,
                )
        with self._lock:
            h.started = True
            cancelled = h.cancelled
        if cancelled:  # cancel() arrived between create and start: it could not stop what had not started
            self._stop(container)
        self.emit(Started(launch.key, h.where))
        self._stream_log(h)
        status = container.wait()  # returns at once: the log stream ended because the container did
        container.reload()
        state = dict(container.attrs.get("State") or {})
        if state.get("ExitCode") is None:
            state["ExitCode"] = status.get("StatusCode")
        finished = classify(launch, state, cancelled=h.cancelled, where=h.where,
                            log_tail=tail_lines(launch.log_path), command=h.config["command"][0])  # fmt: skip
        # Classified on the raw lines (the child's reason line is there); reported shaped, as on every backend.
        return dataclasses.replace(finished, log_tail=logtail.read_tail(launch.log_path),
                                   result=_read_result(launch, container.attrs))  # fmt: skip

    def _create(self, h: _Handle) -> Any:
        import docker.errors

        containers = self.client().containers
        self._write_secret_file(h.launch)
        for attempt in range(3):
            try:
                return containers.create(**h.config)
            except docker.errors.APIError as e:
                if e.status_code != 409 or attempt == 2:
                    raise
            # The name (run, task, attempt) is taken. If one of our own launches holds it, this is a duplicate
            # launch; otherwise it is a leftover of this run that start() did not see (its master was dying, or
            # another executor is removing it right now), and replacing it is safe.
            with self._lock:
                duplicate = any(o is not h and o.name == h.name for o in self._handles.values())
            try:
                old = containers.get(h.name)
            except docker.errors.NotFound:
                continue  # gone in the meantime
            if duplicate or old.labels.get(LABEL_RUN) != h.config["labels"][LABEL_RUN]:
                raise BackendError(f"a container named {h.name} already exists (another launch of the same attempt, "
                                   "or not kannon's); remove it with `docker rm -f` if it is stale")  # fmt: skip
            self._stop_and_remove(old)
        raise AssertionError("unreachable")  # the loop returns or raises

    def _claim_adoptable(self, task_id: str, config: Mapping[str, Any]) -> Any:
        import docker.errors

        with self._lock:
            container = self._adoptable.pop(task_id, None)
        if container is None:
            return None
        try:
            container.reload()
        except docker.errors.NotFound:
            return None  # it ended and went in the meantime
        if (container.status == "running" or yielded(container)) and container.labels.get(
                LABEL_CONFIG) == config["labels"][LABEL_CONFIG]:  # fmt: skip
            return container
        self._stop_and_remove(container)  # ended meanwhile, or started with other code/limits: run afresh
        return None

    def _stream_log(self, h: _Handle) -> None:
        """Copy the container's output (from its start) into the attempt's log file until the container ends."""
        follow = self.run is not None and self.run.follow_logs
        pending = b""
        with h.launch.log_path.open("wb") as log:
            for chunk in h.container.logs(stream=True, follow=True, stdout=True, stderr=True):
                log.write(chunk)
                log.flush()  # the file is the live view of a running task
                if follow:
                    pending += chunk
                    *lines, pending = pending.split(b"\n")
                    if len(pending) > MAX_LINE:  # a child writing without newlines must not grow this forever
                        lines.append(pending)
                        pending = b""
                    for line in lines:
                        self.emit(LogLine(h.launch.key, line.decode("utf-8", "replace").rstrip("\r")))
        if follow and pending:
            self.emit(LogLine(h.launch.key, pending.decode("utf-8", "replace")))

    def _failure(self, h: _Handle, e: BaseException) -> Finished:
        import requests

        import docker.errors

        tail = tail_lines(h.launch.log_path)
        if h.cancelled:  # e.g. the container was removed under the stream by the cancel sweep
            return Finished(h.launch.key, None, "cancelled", "Cancelled", log_tail=tail, where=h.where)
        if isinstance(e, BackendError):
            return Finished(h.launch.key, None, str(e), "BackendError", log_tail=tail, where=h.where)
        if isinstance(e, (requests.exceptions.RequestException, docker.errors.DockerException)) and not isinstance(
            e, docker.errors.APIError
        ):
            reason = str(self._unreachable(e))
            return Finished(h.launch.key, None, reason, "EngineUnreachable", infra=True, log_tail=tail, where=h.where)
        if isinstance(e, docker.errors.APIError):
            return Finished(
                h.launch.key, None, f"Docker engine error: {e.explanation or e}", "EngineError", log_tail=tail,
                where=h.where,
            )  # fmt: skip
        return Finished(h.launch.key, None, f"docker backend error: {type(e).__name__}: {e}", "BackendError",
                        infra=True, log_tail=tail, where=h.where)  # fmt: skip


def _read_result(launch: Launch, attrs: Mapping[str, Any]) -> childresult.ChildResult | None:
    """The record at the path the container was given (an adopted container names the master that made it)."""
    env = (attrs.get("Config") or {}).get("Env") or []
    prefix = childresult.RESULT_PATH_ENV + "="
    path = next((e[len(prefix) :] for e in env if isinstance(e, str) and e.startswith(prefix)), None)
    return childresult.read_for(path, launch) if path else None
