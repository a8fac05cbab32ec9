"""One label-selected list+watch loop over one resource of a run.

:class:`Watcher` tracks ``resourceVersion`` (bookmarks included), re-lists on 410 Gone, reconnects when the server
ends the stream or the connection drops, with tenacity's capped, jittered backoff. Its request count depends on
the stream timeout, never on how many objects there are or how long they run. A watcher that cannot go on (the
re-list or the watch is refused, the API server stays away past the API caller's retries) never dies quietly: it
calls ``on_fatal`` once, and its owner ends what it tracks.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Generic, TypeVar

from kannon.backends.base import BackendError
from kannon.backends.kubernetes.raw import list_items

log = logging.getLogger("kannon.kubernetes")
T = TypeVar("T")

def iter_lines(resp: Any) -> Iterator[str]:
    """Newline-delimited lines of a streamed response as they arrive."""
    buffer = bytearray()
    for chunk in resp.stream(amt=None, decode_content=False):
        buffer.extend(chunk if isinstance(chunk, bytes) else str(chunk).encode("utf-8"))
        while True:
            nl = buffer.find(b"\n")
            if nl < 0:
                break
            line = bytes(buffer[:nl]).decode("utf-8", "replace")
            del buffer[: nl + 1]
            yield line
    if buffer:
        yield bytes(buffer).decode("utf-8", "replace")

def shutdown_response(resp: Any) -> None:
    """Unblock a thread reading ``resp`` (a streamed urllib3 response) from another thread."""
    with contextlib.suppress(Exception):
        if hasattr(resp, "shutdown"):  # urllib3 >= 2.3
            resp.shutdown()
        else:
            sock = getattr(getattr(resp, "connection", None), "sock", None)
            if sock is not None:
                import socket

                sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        resp.release_conn()

def backoff_delay(failures: int) -> float:
    """tenacity's capped, jittered exponential backoff (0.1 s doubling up to 10 s) after ``failures`` failures."""
    import tenacity

    state = tenacity.RetryCallState(tenacity.Retrying(), None, (), {})
    state.attempt_number = max(1, failures)
    return float(tenacity.wait_random_exponential(multiplier=0.1, max=10.0)(state))

class Watcher(Generic[T]):
    """One label-selected list+watch over Jobs or pods of a run, feeding ``on_event(type, obj)``.

    ``list_fn()`` lists (the decoded JSON list, :func:`.raw.as_json`); ``watch_fn(rv, timeout)`` opens a watch
    stream (``_preload_content=False``). Both are expected to go through the backend's retrying, rate-limited API
    wrapper. Listed items and event objects reach the owner as ``view(the decoded JSON object)`` (:mod:`.raw`), never
    through the client's model deserialisation. ``on_relist(items)`` receives the full current set after a 410, so
    the owner can notice objects deleted while no stream was open.
    """

    def __init__(
        self,
        kind: str,
        view: Callable[[Mapping[str, Any]], T],
        list_fn: Callable[[], Mapping[str, Any]],
        watch_fn: Callable[[str | None, int], Any],
        on_event: Callable[[str, T], None],
        on_relist: Callable[[list[T]], None],
        on_fatal: Callable[[BackendError], None],
        timeout_seconds: int = 300,
    ) -> None:
        self.kind, self.view = kind, view
        self._list_fn, self._watch_fn = list_fn, watch_fn
        self._on_event, self._on_relist, self._on_fatal = on_event, on_relist, on_fatal
        self.timeout_seconds = timeout_seconds
        self.resource_version: str | None = None
        self.relists = 0
        self.reconnects = 0
        self.bookmarks = 0
        self._stop = threading.Event()
        self._resp: Any = None
        self._resp_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def list(self) -> list[T]:
        """List everything now and remember the resourceVersion to watch from."""
        self.resource_version, items = list_items(self._list_fn(), self.view)
        return items

    def start(self) -> None:
        """Open the first stream here, so a missing ``watch`` permission fails the caller, then keep it in a thread."""
        self._set_resp(self._watch_fn(self.resource_version, self.timeout_seconds))
        self._thread = threading.Thread(target=self._run, name=f"kannon-k8s-watch-{self.kind}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._resp_lock:
            resp = self._resp
        if resp is not None:
            shutdown_response(resp)
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    @property
    def stopped(self) -> bool:
        return self._stop.is_set()

    def _set_resp(self, resp: Any) -> None:
        with self._resp_lock:
            self._resp = resp
        if self._stop.is_set():  # stop() ran while the request was being opened
            shutdown_response(resp)

    def _run(self) -> None:
        """The thread: follow the stream until stopped. Whatever ends it otherwise is reported, never swallowed."""
        try:
            self._follow()
        except BackendError as e:  # a re-list or a watch refused (permission), or the API server stayed away
            if not self._stop.is_set():
                self._on_fatal(e)
        except Exception as e:  # anything unforeseen: the owner must still hear that nobody watches any more
            if not self._stop.is_set():
                log.exception("the watch on %s stopped", self.kind)
                self._on_fatal(BackendError(f"the watch on {self.kind} stopped: {type(e).__name__}: {e}"))

    def _follow(self) -> None:
        from kubernetes.client.rest import ApiException

        failures = 0
        while not self._stop.is_set():
            try:
                with self._resp_lock:
                    resp = self._resp
                if resp is None:
                    resp = self._watch_fn(self.resource_version, self.timeout_seconds)
                    self._set_resp(resp)
                    self.reconnects += 1
                try:
                    if self._consume(resp):
                        failures = 0
                finally:
                    with self._resp_lock:
                        self._resp = None
                    with contextlib.suppress(Exception):
                        resp.release_conn()
            except _Gone:
                self._relist()
            except ApiException as e:
                if e.status == 410:
                    self._relist()
                    continue
                failures += 1
                log.warning("watch on %s failed (HTTP %s); reconnecting", self.kind, e.status)
                self._backoff(failures)
            except BackendError:
                raise
            except Exception as e:  # connection reset / protocol error mid-stream: resume from resourceVersion
                if self._stop.is_set():
                    return
                failures += 1
                log.info("watch on %s interrupted (%s); reconnecting", self.kind, type(e).__name__)
                self._backoff(failures)

    def _consume(self, resp: Any) -> bool:
        """Read one stream to its end; True if it delivered anything."""
        got = False
        for line in iter_lines(resp):
            if self._stop.is_set():
                return got
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue
            kind = event.get("type")
            obj = event.get("object") or {}
            if kind == "ERROR":
                if obj.get("code") == 410:
                    raise _Gone
                raise _StreamError(f"watch on {self.kind} returned an error: {obj.get('reason')}: {obj.get('message')}")
            rv = (obj.get("metadata") or {}).get("resourceVersion")
            got = True
            if kind == "BOOKMARK":
                self.bookmarks += 1
                if rv:
                    self.resource_version = rv
                continue
            if kind not in ("ADDED", "MODIFIED", "DELETED"):
                continue
            self._on_event(kind, self.view(obj))
            if rv:
                self.resource_version = rv
        return got

    def _relist(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                items = self.list()
            except BackendError:
                raise
            except Exception as e:  # not a refusal: keep recovering with bounded backoff, and say so
                failures += 1
                log.warning("re-list of %s failed (%s: %s); retry %d", self.kind, type(e).__name__, e, failures)
                self._backoff(failures)
                continue
            self.relists += 1
            self._on_relist(items)
            return

    def _backoff(self, failures: int) -> None:
        # capped exponential backoff with jitter; interruptible by stop()
        self._stop.wait(backoff_delay(failures))

class _Gone(Exception):
    """The watch's resourceVersion is too old (410): list again."""

class _StreamError(Exception):
    pass
