"""Reads that answer more than one object: lists (paging, Tables), watches and pod logs, the last two streamed.

Behaviour from kubernetes.io/docs/reference/using-api/api-concepts/ (collections with ``metadata.resourceVersion``
and ``limit``/``continue``, watch streams of newline-delimited ``{"type", "object"}`` JSON over chunked HTTP/1.1,
bookmarks, 410 Expired inside a 200 watch) and the pod log options of PodLogOptions (follow, tailLines, limitBytes,
sinceSeconds, timestamps, previous).
"""

from __future__ import annotations

import base64
import contextlib
import json
import queue
import select
import ssl
import time
from typing import Any

from kannon.testing.kube import errors, tables
from kannon.testing.kube.discovery import KINDS
from kannon.testing.kube.errors import Cause, bad_request
from kannon.testing.kube.exchange import Exchange, dump, query_bool
from kannon.testing.kube.selectors import parse_field_selector, parse_label_selector
from kannon.testing.kube.store import Watcher


class Reads(Exchange):
    """GETs of namespaces, collections (list or watch) and pod logs."""

    def _namespaces(self, method: str, name: str | None, query: dict[str, str], watch: bool) -> None:
        emu = self.server.emulator
        if method != "GET":
            raise errors.method_not_allowed(method)
        if name is None:
            self._list_or_watch("namespaces", None, query, watch)
            return
        emu._ensure_namespace(name)
        self._send_json(200, emu.store.require("namespaces", "", name))

    def _list_or_watch(self, res: str, ns: str | None, query: dict[str, str], watch: bool) -> None:
        emu = self.server.emulator
        labels = parse_label_selector(query.get("labelSelector"))
        fields = parse_field_selector(res, query.get("fieldSelector"))
        if watch:
            self._watch(res, ns, labels, fields, query)
            return
        items, rv = emu.store.list_objects(res, ns, labels, fields)
        api_version, kind = KINDS[res]
        # limit/continue: the continue token carries the offset into this (name-ordered) listing.
        meta: dict[str, Any] = {"resourceVersion": str(rv)}
        start = 0
        if query.get("continue"):
            try:
                start = int(json.loads(base64.urlsafe_b64decode(query["continue"]))["o"])
            except (ValueError, KeyError, TypeError) as exc:
                raise bad_request("continue key is not valid: incorrect encoded start resourceVersion") from exc
        limit = int(query.get("limit") or 0)
        page = items[start : start + limit] if limit > 0 else items[start:]
        if limit > 0 and start + limit < len(items):
            meta["continue"] = base64.urlsafe_b64encode(dump({"o": start + limit, "rv": rv})).decode()
            meta["remainingItemCount"] = len(items) - start - limit
        if tables.wants_table(self.headers.get("Accept")):
            self._send_json(200, tables.table(res, page, str(rv), query.get("includeObject"), api_version, kind))
            return
        out = [{**o, "apiVersion": api_version, "kind": kind} for o in page]
        # Items inside a list carry no kind/apiVersion in real responses.
        for o in out:
            o.pop("apiVersion")
            o.pop("kind")
        self._send_json(200, {"kind": f"{kind}List", "apiVersion": api_version, "metadata": meta, "items": out})

    def _watch(self, res: str, ns: str | None, labels: Any, fields: Any, query: dict[str, str]) -> None:
        emu = self.server.emulator
        api_version, kind = KINDS[res]
        rv_param = query.get("resourceVersion")
        since: int | None = None
        if rv_param not in (None, "", "0"):
            try:
                since = int(str(rv_param))
            except ValueError as exc:
                raise bad_request(f'resourceVersion: Invalid value: "{rv_param}": must be a valid integer') from exc
        initial_events = query_bool(query.get("sendInitialEvents"))
        if initial_events:
            since = None
        timeout = query.get("timeoutSeconds")
        deadline = time.monotonic() + float(timeout) if timeout not in (None, "") else None
        if emu.watch_max_seconds is not None:
            cap = time.monotonic() + emu.watch_max_seconds
            deadline = cap if deadline is None else min(deadline, cap)
        bookmarks = query_bool(query.get("allowWatchBookmarks"))
        watcher = Watcher(res, ns, labels, fields)
        initial, expired_floor = emu.store.subscribe(watcher, since)
        try:
            self._start_chunked("application/json")
            if expired_floor is not None:
                # The apiserver answers a compacted resourceVersion with 200 and an ERROR event (410 Expired).
                self._chunk(dump({"type": "ERROR", "object": errors.expired(since or 0, expired_floor)}) + b"\n")
                self._end_chunked()
                return
            while initial and (held := emu.faults.watch_hold(res)) is not None and not emu.stopping:
                held.wait(0.5)  # a re-watch's replay lags like the stream it replaces (faults.hold_watch)
            for etype, obj in initial:
                self._chunk(dump({"type": etype, "object": {**obj, "apiVersion": api_version, "kind": kind}}) + b"\n")
            if initial_events and bookmarks:
                self._bookmark(api_version, kind, watcher, {"k8s.io/initial-events-end": "true"})
            next_bookmark = time.monotonic() + emu.bookmark_interval
            while not emu.stopping:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
                held = emu.faults.watch_hold(res)
                if held is not None:  # a lagging stream (faults.hold_watch): nothing goes out, bookmarks included
                    if not held.wait(0.5) and self._client_gone():
                        break
                    continue
                wait = 0.5
                if deadline is not None:
                    wait = min(wait, deadline - now)
                if bookmarks:
                    wait = min(wait, max(0.0, next_bookmark - now))
                try:
                    ev = watcher.queue.get(timeout=max(wait, 0.0))
                except queue.Empty:
                    if bookmarks and time.monotonic() >= next_bookmark:
                        self._bookmark(api_version, kind, watcher, None)
                        next_bookmark = time.monotonic() + emu.bookmark_interval
                    elif self._client_gone():
                        break
                    continue
                if ev is None:
                    break
                etype, obj = ev
                self._chunk(dump({"type": etype, "object": {**obj, "apiVersion": api_version, "kind": kind}}) + b"\n")
            self._end_chunked()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True
        finally:
            emu.store.unsubscribe(watcher)

    def _bookmark(self, api_version: str, kind: str, watcher: Watcher, annotations: dict[str, str] | None) -> None:
        # A bookmark carries only the resourceVersion the watcher is known to be up to date with.
        store = self.server.emulator.store
        with store.cond:
            if not watcher.queue.empty():
                return
            rv = store.rv
        meta: dict[str, Any] = {"resourceVersion": str(rv), "creationTimestamp": None}
        if annotations:
            meta["annotations"] = annotations
        self._chunk(
            dump({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}) + b"\n"
        )

    def _pod_log(self, ns: str, name: str, query: dict[str, str]) -> None:
        emu = self.server.emulator
        pod = emu.store.require("pods", ns, name)
        ints: dict[str, int | None] = {}
        for key in ("tailLines", "limitBytes", "sinceSeconds"):
            v = query.get(key)
            try:
                ints[key] = int(v) if v not in (None, "") else None
            except ValueError as exc:
                raise bad_request(f'{key}: Invalid value: "{v}": must be an integer') from exc
            if ints[key] is not None and ints[key] < (0 if key == "tailLines" else 1):  # type: ignore[operator]
                raise errors.invalid(
                    "PodLogOptions", "", name, [Cause(key, f"Invalid value: {v}: must be greater than 0")]
                )
        clog = emu.kubelet.container_log(pod, query.get("container"), query_bool(query.get("previous")))
        follow = query_bool(query.get("follow"))
        stamps = query_bool(query.get("timestamps"))
        limit = ints["limitBytes"]
        if clog is None:
            self._send_text(200, b"")
            return
        lines, index, done = clog.read_from(0, None)
        since = ints["sinceSeconds"]
        if since is not None:
            cutoff = time.time() - since
            lines = [ln for ln in lines if _stamp_epoch(ln[0]) >= cutoff]
        if ints["tailLines"] is not None:
            lines = lines[len(lines) - ints["tailLines"] :] if ints["tailLines"] else []

        def render(chunk: list[tuple[str, bytes]]) -> bytes:
            return b"".join((f"{s} ".encode() + ln) if stamps else ln for s, ln in chunk)

        if not follow:
            data = render(lines)
            self._send_text(200, data[:limit] if limit else data)
            return
        sent = 0
        try:
            self._start_chunked("text/plain")
            chunk = render(lines)
            while True:
                if limit is not None:
                    chunk = chunk[: max(0, limit - sent)]
                self._chunk(chunk)
                sent += len(chunk)
                if (limit is not None and sent >= limit) or done or emu.stopping:
                    break
                more, index, done = clog.read_from(index, 0.5)
                chunk = render(more)
                if not more and not done and self._client_gone():
                    break
            self._end_chunked()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    # -- streaming: chunked transfer, and a client that went away -----------------------------------------------

    def _start_chunked(self, ctype: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.flush()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    def _end_chunked(self) -> None:
        with contextlib.suppress(OSError):
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()

    def _client_gone(self) -> bool:
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            if readable:
                # A client sends nothing while it reads a stream, so what is readable is its goodbye: a TLS
                # close_notify (client-go sends one) or a bare EOF, both b"" here, or half a TLS record (wait).
                timeout = self.connection.gettimeout()
                self.connection.setblocking(False)
                try:
                    return bool(self.connection.recv(1) == b"")
                except ssl.SSLWantReadError:
                    return False
                finally:
                    self.connection.settimeout(timeout)
        except (OSError, ValueError):
            return True
        return False


def _stamp_epoch(stamp: str) -> float:
    from datetime import datetime, timezone

    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()
