"""An attempt's log: followed live (``LogLine`` events) when the run asks for it and the pod runs past the tracker's
``follow_after``, else read once when it ends (its lines emitted then when the run asks for them), and written to
``Launch.log_path`` either way."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from kannon.backends.base import BackendError, ExecutorEvent, LogLine, tail_lines
from kannon.backends.kubernetes.api import ApiCaller, api_status
from kannon.backends.kubernetes.attempt import Attempt, Phase
from kannon.backends.kubernetes.watch import iter_lines, shutdown_response

if TYPE_CHECKING:
    from kubernetes.client import V1Pod

log = logging.getLogger("kannon.kubernetes")

class JobLogs:
    """Log reads for the executor's attempts (``lock`` is the executor's state lock)."""

    def __init__(self, api: ApiCaller, namespace: str, container: str | None, log_lines: int,
                 emit: Callable[[ExecutorEvent], None], lock: Any) -> None:  # fmt: skip
        self.api, self.namespace, self.container, self.log_lines = api, namespace, container, log_lines
        self.emit, self._lock = emit, lock
        self.core: Any = None  # CoreV1Api, set when the executor starts

    def collect(self, attempt: Attempt, pod: V1Pod | None, live: bool = False) -> tuple[str, ...]:
        """The attempt's log: from the live follower if it read to the end, else one read of the pod log. ``live``
        (the run follows logs): a pod that ended before it was followed has its lines emitted now, before its end."""
        follower = attempt.follower
        if follower is not None:
            follower.join(10.0)
            if attempt.followed_to_end:
                return tail_lines(attempt.launch.log_path)
        if pod is None:
            self.write_log(attempt, [*attempt.notes, "kannon: no pod was found for this Job"])
            return ()
        text = self.read_log(pod)
        lines = text.splitlines() if text is not None else ["kannon: the pod's log could not be read"]
        self.write_log(attempt, [*attempt.notes, *lines])
        if live and follower is None:
            for line in lines:
                self.emit(LogLine(attempt.launch.key, line))
        return tuple(lines[-20:])

    def read_log(self, pod: V1Pod) -> str | None:
        from kubernetes.client.rest import ApiException

        kwargs: dict[str, Any] = {"tail_lines": self.log_lines, "_preload_content": False,
                                  "_request_timeout": (10, 60)}  # fmt: skip
        if self.container:
            kwargs["container"] = self.container
        try:
            # _preload_content=False: kubernetes 36.0.x returns the repr of the bytes otherwise (client bug #2596)
            resp = self.api.call("get", "pods/log", self.core.read_namespaced_pod_log, pod.metadata.name,
                                 self.namespace, **kwargs)  # fmt: skip
            try:
                data: bytes = resp.data
            finally:
                resp.release_conn()
            return data.decode("utf-8", "replace")
        except ApiException as e:  # 400: container never started; 404: pod already gone
            log.info("no log for pod %s: %s %s", pod.metadata.name, e.status, api_status(e)[1])
            return None
        except BackendError as e:
            log.warning("%s", e)
            return None

    def write_log(self, attempt: Attempt, lines: Iterable[str], append: bool = False) -> None:
        path = attempt.launch.log_path
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with path.open("a" if append else "w", encoding="utf-8") as f:
                for line in lines:
                    f.write(line + "\n")
        except OSError as e:
            log.warning("cannot write %s: %s", path, e)

    def start_follower(self, attempt: Attempt) -> None:
        thread = threading.Thread(target=self.follow, args=(attempt,), daemon=True,
                                  name=f"kannon-k8s-log-{attempt.name}")  # fmt: skip
        # started before it is published: a finish step on a pool thread may join it as soon as it can see it
        # (before, it could see it unstarted: "cannot join thread before it is started", the attempt lost)
        thread.start()
        attempt.follower = thread

    def follow(self, attempt: Attempt) -> None:
        """Stream the pod's log live as LogLine events (one follow request per running pod)."""
        kwargs: dict[str, Any] = {"follow": True, "_preload_content": False, "_request_timeout": (10, None)}
        if self.container:
            kwargs["container"] = self.container
        try:
            resp = self.api.call("get", "pods/log", self.core.read_namespaced_pod_log, attempt.pod_name,
                                 self.namespace, **kwargs)  # fmt: skip
        except Exception as e:
            log.info("cannot follow the log of %s: %s", attempt.pod_name, e)
            return
        with self._lock:
            attempt.follow_resp = resp
            done = attempt.phase is Phase.DONE
        if done:
            shutdown_response(resp)
            return
        try:
            attempt.launch.log_path.parent.mkdir(parents=True, exist_ok=True)
            with attempt.launch.log_path.open("w", encoding="utf-8") as f:
                for line in attempt.notes:
                    f.write(line + "\n")
                for line in iter_lines(resp):
                    f.write(line + "\n")
                    f.flush()
                    self.emit(LogLine(attempt.launch.key, line))
            attempt.followed_to_end = attempt.phase is not Phase.DONE
        except Exception as e:  # interrupted (finish, close, connection reset): the final read covers it
            log.debug("log follow of %s ended: %s", attempt.pod_name, e)
        finally:
            with contextlib.suppress(Exception):
                resp.release_conn()

