"""The emulator's API server front door: HTTPS, authentication, injected request faults and routing of the REST
paths (jobs, pods, pod logs, events, namespaces, leases, secrets, configmaps, resource quotas, workloads, discovery,
OpenAPI) to the handler's parts: reads.py (lists, watches, logs), writes.py (create, update, patch, delete),
discovery.py and openapi.py. JSON and YAML bodies; JSON answers.

Request/response conventions follow kubernetes.io/docs/reference/using-api/api-concepts/ and
.../kubernetes-api/common-parameters/common-parameters/.
"""

from __future__ import annotations

import contextlib
import hmac
import io
import logging
import re
import socket
import ssl
import struct
import sys
import threading
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from kannon.testing.kube import discovery, errors, kueue, leases, openapi, tables
from kannon.testing.kube.discovery import KINDS
from kannon.testing.kube.errors import ApiError
from kannon.testing.kube.exchange import query_bool
from kannon.testing.kube.reads import Reads
from kannon.testing.kube.writes import Writes

if TYPE_CHECKING:
    from kannon.testing.kube.emulator import KubeEmulator

log = logging.getLogger("kannon.testing.kube")

# Reachable without a token: the health endpoints (the paths upstream's anonymous-auth conditions are meant for,
# KEP-4633) and /version, which the default system:public-info-viewer ClusterRole grants to unauthenticated users.
ANONYMOUS_PATHS = frozenset({"/healthz", "/livez", "/readyz", "/version"})
# What kube-apiserver answers a request whose credentials it cannot authenticate.
UNAUTHORIZED = {
    "kind": "Status",
    "apiVersion": "v1",
    "metadata": {},
    "status": "Failure",
    "message": "Unauthorized",
    "reason": "Unauthorized",
    "code": 401,
}

_ROUTES = [
    (
        re.compile(
            r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/(?P<res>jobs)(?:/(?P<name>[^/]+)(?:/(?P<sub>status))?)?$"
        ),
        "batch",
    ),
    (re.compile(r"^/apis/batch/v1/(?P<res>jobs)$"), "batch"),
    (re.compile(r"^/apis/coordination\.k8s\.io/v1/namespaces/(?P<ns>[^/]+)/(?P<res>leases)(?:/(?P<name>[^/]+))?$"),
     leases.GROUP),
    (re.compile(r"^/apis/coordination\.k8s\.io/v1/(?P<res>leases)$"), leases.GROUP),
    (
        re.compile(
            r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<res>pods|events|secrets|configmaps)(?:/(?P<name>[^/]+)(?:/(?P<sub>log|status))?)?$"
        ),
        "",
    ),
    (re.compile(r"^/api/v1/(?P<res>pods|events|secrets|configmaps)$"), ""),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/(?P<res>resourcequotas)(?:/(?P<name>[^/]+))?$"), ""),
    (re.compile(r"^/apis/kueue\.x-k8s\.io/v1beta1/namespaces/(?P<ns>[^/]+)/(?P<res>workloads)(?:/(?P<name>[^/]+))?$"),
     kueue.GROUP),  # read-only: Kueue's controller owns them
    (re.compile(r"^/api/v1/(?P<res>namespaces)(?:/(?P<name>[^/]+))?$"), ""),
]


class EmulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], emulator: KubeEmulator, context: ssl.SSLContext) -> None:
        self.emulator = emulator
        self.context = context
        self.open_sockets: set[socket.socket] = set()
        self._sock_lock = threading.Lock()
        super().__init__(addr, Handler)

    def get_request(self) -> tuple[socket.socket, Any]:
        sock, addr = super().get_request()
        # The handshake happens on the first read, in the request's own thread: a slow or plain-http client never
        # holds up the accept loop.
        return self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    def handle_error(self, request: Any, client_address: Any) -> None:
        exc = sys.exc_info()[1]
        if isinstance(exc, (ssl.SSLError, ConnectionError)):  # e.g. a client speaking plain http, or gone
            log.debug("%s: %s", client_address, exc)
            return
        super().handle_error(request, client_address)

    def process_request(self, request: Any, client_address: Any) -> None:
        with self._sock_lock:
            self.open_sockets.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self._sock_lock:
            self.open_sockets.discard(request)
        super().shutdown_request(request)

    def close_all(self) -> None:
        with self._sock_lock:
            socks = list(self.open_sockets)
        for s in socks:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)


class Handler(Reads, Writes):
    """The requests of one connection: authenticated, faults applied, routed to a read, a write or discovery."""

    # Every verb goes through one dispatcher.
    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _authenticated(self, path: str) -> bool:
        if path in ANONYMOUS_PATHS or path.startswith(("/healthz/", "/livez/", "/readyz/")):
            return True
        scheme, _, token = (self.headers.get("Authorization") or "").partition(" ")
        expected = self.server.emulator.token
        return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), expected.encode())

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send a TCP RST: the client sees a connection reset, no answer at all.
        with contextlib.suppress(OSError):
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        self.close_connection = True

    # -- dispatch ------------------------------------------------------------------------------------------------

    def _dispatch(self, method: str) -> None:
        emu = self.server.emulator
        split = urlsplit(self.path)
        path = split.path.rstrip("/") or "/"
        query = {k: v[-1] for k, v in parse_qs(split.query, keep_blank_values=True).items()}
        emu._record_request(method, path, query)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not self._authenticated(path):
            self._send_json(401, UNAUTHORIZED)
            return
        try:
            fault = emu.faults.take_request_fault(method, path)
            if fault is not None and fault[0] == "hold":
                assert isinstance(fault[1], threading.Event)
                fault[1].wait(300)
                fault = None
            if fault is not None:
                if fault[0] == "reset":
                    self._reset()
                    return
                if fault[0] == "hold_answer":
                    # Do the work now, answer later: what the client then reads is already stale.
                    real, self.wfile = self.wfile, io.BytesIO()
                    try:
                        self._route(method, path, query, raw)
                    except ApiError as exc:
                        self._send_json(exc.code, exc.body(), exc.headers)
                    answer, self.wfile = self.wfile.getvalue(), real
                    assert isinstance(fault[1], threading.Event)
                    fault[1].wait(300)
                    self.wfile.write(answer)
                    return
                if fault[0] == "drop":
                    # Do the work, throw the answer away, reset the connection.
                    self.wfile = io.BytesIO()
                    with contextlib.suppress(ApiError):
                        self._route(method, path, query, raw)
                    self._reset()
                    return
                assert isinstance(fault[1], ApiError)
                raise fault[1]
            self._route(method, path, query, raw)
        except ApiError as exc:
            self._send_json(exc.code, exc.body(), exc.headers)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the emulator must still look like an apiserver 500
            log.exception("emulator error on %s %s", method, path)
            err = ApiError(500, "InternalError", f"Internal error occurred: {exc}")
            with contextlib.suppress(OSError):
                self._send_json(500, err.body())

    def _route(self, method: str, path: str, query: dict[str, str], raw: bytes) -> None:
        emu = self.server.emulator
        if method == "GET" and path in ("/healthz", "/readyz", "/livez"):
            self._send_text(200, b"ok")
            return
        if method == "GET" and path.startswith("/openapi/v3"):
            doc = path.removeprefix("/openapi/v3").strip("/")
            if not doc:
                self._send_json(200, openapi.root())
            elif doc in openapi.SERVED:
                self._send_text(200, openapi.group_version_doc(doc), "application/json")
            else:
                raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
            return
        if method == "GET":
            answer = discovery.document(path, emu.url)
            if answer is not None:
                self._send_json(200, answer)
                return
        for rx, _group in _ROUTES:
            m = rx.match(path)
            if m:
                break
        else:
            raise ApiError(404, "NotFound", "the server could not find the requested resource", {})
        parts = m.groupdict()
        ns, res, name, sub = parts.get("ns"), parts["res"], parts.get("name"), parts.get("sub")
        resource = f"{res}/{sub}" if sub else res
        watch = query_bool(query.get("watch"))
        verb = {
            "GET": "get" if name else ("watch" if watch else "list"),
            "POST": "create",
            "PUT": "update",
            "PATCH": "patch",
            "DELETE": "delete" if name else "deletecollection",
        }[method]
        denied = emu.faults.check_forbidden(verb, resource, ns, name, method, path)
        if denied is not None:
            raise denied
        if ns is not None:
            emu._ensure_namespace(ns)
        if res in ("workloads", "resourcequotas") and method != "GET":
            raise errors.method_not_allowed(method)  # read-only here: tests set them through KubeEmulator
        if res == "namespaces":
            self._namespaces(method, name, query, watch)
        elif res == "leases" and ns is not None and (method != "GET" or name is not None):
            self._leases(method, ns, name, raw, query)
        elif res == "secrets" and ns is not None and (method != "GET" or name is not None) and sub is None:
            self._secrets(method, ns, name, raw, query)
        elif res == "configmaps" and ns is not None and (method != "GET" or name is not None) and sub is None:
            self._configmaps(method, ns, name, raw, query)
        elif sub == "log":
            self._pod_log(ns or "", name or "", query)
        elif name is None:
            if method == "GET":
                self._list_or_watch(res, ns, query, watch)
            elif method == "POST" and res == "jobs" and ns:
                self._create_job(ns, raw, query)
            else:
                raise errors.method_not_allowed(method)
        elif method == "GET":
            obj = emu.store.require(res, ns or "", name)
            if sub is None and tables.wants_table(self.headers.get("Accept")):
                obj = tables.table(res, [obj], None, query.get("includeObject"), *KINDS[res])
            self._send_json(200, obj)
        elif method == "DELETE" and sub is None:
            self._delete(res, ns or "", name, raw, query)
        elif method in ("PUT", "PATCH") and sub is None and res in ("jobs", "pods"):
            self._update(res, ns or "", name, method, raw, query)
        else:
            raise errors.method_not_allowed(method)
