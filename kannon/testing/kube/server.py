"""HTTP front end: the Kubernetes REST paths for jobs, pods, pod logs, namespaces, discovery; JSON only.

Request/response conventions follow kubernetes.io/docs/reference/using-api/api-concepts/ (collections with
``metadata.resourceVersion``, watch streams of newline-delimited ``{"type", "object"}`` JSON over chunked
HTTP/1.1, bookmarks, 410 inside a 200 watch) and .../kubernetes-api/common-parameters/common-parameters/.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import hmac
import io
import json
import logging
import queue
import re
import select
import socket
import ssl
import struct
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import yaml

from kannon.testing.kube import configmaps, errors, kueue, leases, openapi, secrets, tables
from kannon.testing.kube.deletion import delete_job
from kannon.testing.kube.errors import ApiError, Cause, bad_request
from kannon.testing.kube.schema import check_fields
from kannon.testing.kube.selectors import parse_field_selector, parse_label_selector
from kannon.testing.kube.store import Watcher
from kannon.testing.kube.validation import decode_checks, prepare_job, validate_job_update

if TYPE_CHECKING:
    from kannon.testing.kube.emulator import KubeEmulator

log = logging.getLogger("kannon.testing.kube")

VERSION = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.13-kannon-emulator",  # the release tests/e2e/upstream compares the emulator with
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-08-27T00:00:00Z",
    "goVersion": "go1.24.6",
    "compiler": "gc",
    "platform": "linux/amd64",
}

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

ORPHAN_WARNING = (
    '299 - "child pods are preserved by default when jobs are deleted; set propagationPolicy=Background to remove '
    'them or set propagationPolicy=Orphan to suppress this warning"'
)

_KINDS = {
    "jobs": ("batch/v1", "Job"),
    "pods": ("v1", "Pod"),
    "namespaces": ("v1", "Namespace"),
    "events": ("v1", "Event"),
    "leases": (leases.GROUP_VERSION, "Lease"),
    "secrets": ("v1", "Secret"),
    "configmaps": ("v1", "ConfigMap"),
    "workloads": (f"{kueue.GROUP}/{kueue.VERSION}", "Workload"),
    "resourcequotas": ("v1", "ResourceQuota"),
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


def query_bool(value: str | None) -> bool:
    """Query booleans: present and not "0"/"false" means true (client 36 sends ``watch=True``)."""
    if value is None:
        return False
    return value.strip().lower() not in ("0", "false")


def _dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


def _discovery_core() -> dict[str, Any]:
    def res(name: str, kind: str, verbs: list[str], namespaced: bool = True) -> dict[str, Any]:
        return {"name": name, "singularName": "", "namespaced": namespaced, "kind": kind, "verbs": verbs}

    return {
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": [
            res("namespaces", "Namespace", ["get", "list", "watch"], namespaced=False),
            res("pods", "Pod", ["delete", "get", "list", "patch", "watch"]),
            res("pods/log", "Pod", ["get"]),
            res("pods/status", "Pod", ["get"]),
            res("events", "Event", ["get", "list", "watch"]),
            res("secrets", "Secret", ["create", "delete", "get", "list", "patch", "update", "watch"]),
            res("configmaps", "ConfigMap", ["create", "delete", "get", "list", "patch", "update", "watch"]),
        ],
    }


def _discovery_batch() -> dict[str, Any]:
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": "batch/v1",
        "resources": [
            {
                "name": "jobs",
                "singularName": "job",
                "namespaced": True,
                "kind": "Job",
                "verbs": ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"],
                "categories": ["all"],
            },
            {"name": "jobs/status", "singularName": "", "namespaced": True, "kind": "Job", "verbs": ["get"]},
        ],
    }


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch (strategic merge patch is treated the same: lists are replaced)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = merge_patch(out.get(k), v)
    return out


def json_patch(target: Any, ops: list[dict[str, Any]]) -> Any:
    """RFC 6902 JSON patch: add / remove / replace / test (what clients send for metadata edits)."""
    doc = copy.deepcopy(target)
    for op in ops:
        parts = [p.replace("~1", "/").replace("~0", "~") for p in str(op.get("path", "")).split("/")[1:]]
        if not parts:
            raise bad_request("the server rejected our request due to an error in our request: empty path")
        parent: Any = doc
        for p in parts[:-1]:
            parent = parent[int(p)] if isinstance(parent, list) else parent.setdefault(p, {})
        last = parts[-1]
        kind = op.get("op")
        try:
            if kind in ("add", "replace"):
                if isinstance(parent, list):
                    idx = len(parent) if last == "-" else int(last)
                    if kind == "add":
                        parent.insert(idx, op.get("value"))
                    else:
                        parent[idx] = op.get("value")
                else:
                    if kind == "replace" and last not in parent:
                        raise bad_request(
                            "the server rejected our request: replace operation does not apply: "
                            f"doc is missing key: {op['path']}"
                        )
                    parent[last] = op.get("value")
            elif kind == "remove":
                if isinstance(parent, list):
                    parent.pop(int(last))
                else:
                    del parent[last]
            elif kind == "test":
                cur = parent[int(last)] if isinstance(parent, list) else parent.get(last)
                if cur != op.get("value"):
                    raise ApiError(
                        422, "Invalid", f"the server rejected our request: testing value {op['path']} failed"
                    )
            else:
                raise bad_request(f"the server rejected our request: unexpected op {kind!r}")
        except (KeyError, IndexError, ValueError) as exc:
            raise bad_request(f"the server rejected our request: {exc}") from exc
    return doc


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


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: with Nagle's algorithm the body waits for the client's delayed ACK
    # (~40 ms on Linux), which made every request cost ~45 ms.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

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

    # -- response helpers ----------------------------------------------------------------------------------------

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = _dump(body)
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _send_text(self, code: int, text: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(text)))
        self.end_headers()
        self.wfile.write(text)

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
        if method == "GET" and path == "/version":
            self._send_json(200, VERSION)
            return
        if method == "GET" and path == "/api":
            self._send_json(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {"clientCIDR": "0.0.0.0/0", "serverAddress": emu.url.split("//", 1)[1]}
                    ],
                },
            )
            return
        if method == "GET" and path == "/apis":
            gv = {"groupVersion": "batch/v1", "version": "v1"}
            self._send_json(
                200,
                {
                    "kind": "APIGroupList",
                    "apiVersion": "v1",
                    "groups": [{"name": "batch", "versions": [gv], "preferredVersion": gv},
                               {k: v for k, v in leases.discovery_group().items() if k not in ("kind", "apiVersion")}],
                },
            )
            return
        if method == "GET" and path == f"/apis/{leases.GROUP}":
            self._send_json(200, leases.discovery_group())
            return
        if method == "GET" and path == f"/apis/{leases.GROUP_VERSION}":
            self._send_json(200, leases.discovery_resources())
            return
        if method == "GET" and path == "/api/v1":
            self._send_json(200, _discovery_core())
            return
        if method == "GET" and path == "/apis/batch":
            gv = {"groupVersion": "batch/v1", "version": "v1"}
            self._send_json(
                200, {"kind": "APIGroup", "apiVersion": "v1", "name": "batch", "versions": [gv], "preferredVersion": gv}
            )
            return
        if method == "GET" and path == "/apis/batch/v1":
            self._send_json(200, _discovery_batch())
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
                obj = tables.table(res, [obj], None, query.get("includeObject"), *_KINDS[res])
            self._send_json(200, obj)
        elif method == "DELETE" and sub is None:
            self._delete(res, ns or "", name, raw, query)
        elif method in ("PUT", "PATCH") and sub is None and res in ("jobs", "pods"):
            self._update(res, ns or "", name, method, raw, query)
        else:
            raise errors.method_not_allowed(method)

    # -- handlers ------------------------------------------------------------------------------------------------

    def _body(self, raw: bytes) -> Any:
        if not raw:
            return {}
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip().lower()
        if self.command in ("POST", "PUT") and ctype not in ("application/json", "application/yaml"):
            # Upstream also decodes protobuf (and CBOR behind a gate); the emulator speaks JSON and YAML only, and
            # says so the way the apiserver refuses a media type it has no serializer for.
            raise ApiError(
                415,
                "UnsupportedMediaType",
                "the body of the request was in an unknown format - accepted media types include: "
                "application/json, application/yaml",
            )
        try:
            if ctype == "application/yaml":
                return yaml.safe_load(raw.decode())
            return json.loads(raw)
        except (ValueError, yaml.YAMLError) as exc:
            raise bad_request(f"the server rejected our request due to an error in our request: {exc}") from exc

    def _create_job(self, ns: str, raw: bytes, query: dict[str, str]) -> None:
        emu = self.server.emulator
        import uuid

        uid = str(uuid.uuid4())
        body = self._body(raw)
        warn = _warnings(check_fields(body, "V1Job", "Job", query.get("fieldValidation")))
        job = prepare_job(emu.kueue.mutate_job(body), ns, uid)
        job["metadata"]["uid"] = uid
        job.pop("status", None)
        job["status"] = {}
        if query.get("dryRun") == "All":
            self._send_json(201, job, warn)
            return
        created = emu.store.create("jobs", job)
        self._send_json(201, created, warn)

    def _leases(self, method: str, ns: str, name: str | None, raw: bytes, query: dict[str, str]) -> None:
        store = self.server.emulator.store
        body = self._body(raw) if method in ("POST", "PUT") else None
        warn = _warnings(check_fields(body, "V1Lease", "Lease", query.get("fieldValidation")))
        if method == "POST" and name is None:
            self._send_json(201, leases.create(store, ns, body), warn)
        elif method == "GET" and name is not None:
            self._send_json(200, store.require("leases", ns, name))
        elif method == "PUT" and name is not None:
            self._send_json(200, leases.update(store, ns, name, body), warn)
        elif method == "DELETE" and name is not None:
            self._send_json(200, leases.delete(store, ns, name, self._body(raw) or {}))
        else:
            raise errors.method_not_allowed(method)

    def _secrets(self, method: str, ns: str, name: str | None, raw: bytes, query: dict[str, str]) -> None:
        store = self.server.emulator.store
        body = self._body(raw) if method in ("POST", "PUT") else None
        warn = _warnings(check_fields(body, "V1Secret", "Secret", query.get("fieldValidation")))
        dry = query.get("dryRun") == "All"
        if method == "POST" and name is None:
            self._send_json(201, secrets.prepare(body, ns, None) if dry else secrets.create(store, ns, body), warn)
        elif method == "GET" and name is not None:
            self._send_json(200, store.require(secrets.RESOURCE, ns, name))
        elif method == "PUT" and name is not None:
            self._send_json(200, secrets.replace(store, ns, name, body), warn)
        elif method == "PATCH" and name is not None:
            self._send_json(200, secrets.replace(store, ns, name, self._patched(store.require("secrets", ns, name),
                                                                                raw)))  # fmt: skip
        elif method == "DELETE" and name is not None:
            self._send_json(200, secrets.delete(store, ns, name))
        else:
            raise errors.method_not_allowed(method)

    def _configmaps(self, method: str, ns: str, name: str | None, raw: bytes, query: dict[str, str]) -> None:
        store = self.server.emulator.store
        body = self._body(raw) if method in ("POST", "PUT") else None
        warn = _warnings(check_fields(body, "V1ConfigMap", "ConfigMap", query.get("fieldValidation")))
        if method == "POST" and name is None:
            dry = query.get("dryRun") == "All"
            made = configmaps.prepare(body, ns, None) if dry else configmaps.create(store, ns, body)
            self._send_json(201, made, warn)
        elif method == "GET" and name is not None:
            self._send_json(200, store.require(configmaps.RESOURCE, ns, name))
        elif method == "PUT" and name is not None:
            self._send_json(200, configmaps.replace(store, ns, name, body), warn)
        elif method == "PATCH" and name is not None:
            current = store.require(configmaps.RESOURCE, ns, name)
            self._send_json(200, configmaps.replace(store, ns, name, self._patched(current, raw)))
        elif method == "DELETE" and name is not None:
            self._send_json(200, configmaps.delete(store, ns, name))
        else:
            raise errors.method_not_allowed(method)

    def _patched(self, cur: dict[str, Any], raw: bytes) -> Any:
        """``cur`` with the request's JSON / merge / strategic-merge patch applied (Secrets have no list keys)."""
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        body = self._body(raw)
        if ctype == "application/json-patch+json":
            if not isinstance(body, list):
                raise bad_request("the server rejected our request: json patch must be a list")
            return json_patch(copy.deepcopy(cur), body)
        if ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
            return merge_patch(copy.deepcopy(cur), body)
        raise ApiError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - accepted "
                       "media types include: application/json-patch+json, application/merge-patch+json, "
                       f"application/strategic-merge-patch+json ({ctype})")  # fmt: skip

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
        api_version, kind = _KINDS[res]
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
            meta["continue"] = base64.urlsafe_b64encode(_dump({"o": start + limit, "rv": rv})).decode()
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
        api_version, kind = _KINDS[res]
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
                self._chunk(_dump({"type": "ERROR", "object": errors.expired(since or 0, expired_floor)}) + b"\n")
                self._end_chunked()
                return
            for etype, obj in initial:
                self._chunk(_dump({"type": etype, "object": {**obj, "apiVersion": api_version, "kind": kind}}) + b"\n")
            if initial_events and bookmarks:
                self._bookmark(api_version, kind, watcher, {"k8s.io/initial-events-end": "true"})
            next_bookmark = time.monotonic() + emu.bookmark_interval
            while not emu.stopping:
                now = time.monotonic()
                if deadline is not None and now >= deadline:
                    break
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
                self._chunk(_dump({"type": etype, "object": {**obj, "apiVersion": api_version, "kind": kind}}) + b"\n")
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
            _dump({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version, "metadata": meta}}) + b"\n"
        )

    def _delete(self, res: str, ns: str, name: str, raw: bytes, query: dict[str, str]) -> None:
        emu = self.server.emulator
        opts = self._body(raw) or {}
        if not isinstance(opts, dict):
            raise bad_request("DeleteOptions must be an object")
        policy = query.get("propagationPolicy") or opts.get("propagationPolicy")
        orphan: Any = query.get("orphanDependents", opts.get("orphanDependents"))
        grace_raw = query.get("gracePeriodSeconds", opts.get("gracePeriodSeconds"))
        grace = int(grace_raw) if grace_raw not in (None, "") else None
        if policy is not None and policy not in ("Orphan", "Background", "Foreground"):
            raise errors.invalid(
                "DeleteOptions",
                "meta.k8s.io",
                "",
                [
                    Cause(
                        "propagationPolicy",
                        f'Unsupported value: "{policy}": supported values: "Foreground", "Background", "Orphan", "nil"',
                        "FieldValueNotSupported",
                    )
                ],
            )
        if policy is None and orphan is not None:
            policy = "Orphan" if orphan is True or (isinstance(orphan, str) and query_bool(orphan)) else "Background"
        if res == "pods":
            self._send_json(200, emu.kubelet.delete_pod(ns, name, grace, opts.get("preconditions")))
            return
        if res != "jobs":
            raise errors.method_not_allowed("DELETE")
        headers = {}
        if policy is None:
            headers["Warning"] = ORPHAN_WARNING
        out = delete_job(emu.store, ns, name, policy, opts.get("preconditions"))
        if out["metadata"].get("deletionTimestamp") and name_still_present(emu, ns, name):
            self._send_json(200, out, headers)
            return
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Success",
            "details": {"name": name, "group": "batch", "kind": "jobs", "uid": out["metadata"]["uid"]},
        }
        self._send_json(200, status, headers)

    def _update(self, res: str, ns: str, name: str, method: str, raw: bytes, query: dict[str, str]) -> None:
        emu = self.server.emulator
        ctype = (self.headers.get("Content-Type") or "application/json").split(";")[0].strip()
        body = self._body(raw)
        model, kind_name = ("V1Job", "Job") if res == "jobs" else ("V1Pod", "Pod")
        # A JSON patch (a list) names paths, not fields: only object bodies are checked.
        warn = _warnings(check_fields(body, model, kind_name, query.get("fieldValidation")))
        with emu.store.cond:
            cur = emu.store.require(res, ns, name)
            if method == "PATCH":
                if ctype == "application/json-patch+json":
                    if not isinstance(body, list):
                        raise bad_request("the server rejected our request: json patch must be a list")
                    new = json_patch(cur, body)
                elif ctype in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                    new = merge_patch(cur, body)
                else:
                    raise ApiError(
                        415,
                        "UnsupportedMediaType",
                        f"the body of the request was in an unknown format - "
                        f"accepted media types include: application/json-patch+json, "
                        f"application/merge-patch+json, application/strategic-merge-patch+json ({ctype})",
                    )
                expected = (body.get("metadata") or {}).get("resourceVersion") if isinstance(body, dict) else None
            else:
                api_version, kind = _KINDS[res]
                new = decode_checks(body, kind, api_version, ns)
                if (new.get("metadata") or {}).get("name") not in (None, name):
                    raise bad_request("the name of the object does not match the name on the URL")
                expected = (new.get("metadata") or {}).get("resourceVersion")
            new = copy.deepcopy(new)
            meta = new.setdefault("metadata", {})
            for key in (
                "uid",
                "creationTimestamp",
                "namespace",
                "name",
                "generation",
                "deletionTimestamp",
                "ownerReferences" if res == "jobs" else "_",
            ):
                if key in cur["metadata"]:
                    meta[key] = cur["metadata"][key]
            new["status"] = cur.get("status", {})  # status is only writable through the status subresource
            new.setdefault("apiVersion", cur.get("apiVersion"))
            new.setdefault("kind", cur.get("kind"))
            if res == "jobs":
                validate_job_update(cur, new)
            elif new.get("spec") != cur.get("spec"):
                raise errors.invalid(
                    "Pod",
                    "",
                    name,
                    [
                        Cause(
                            "spec",
                            "Forbidden: pod updates may not change fields other than `spec.containers[*].image`, "
                            "`spec.initContainers[*].image`, `spec.activeDeadlineSeconds`, `spec.tolerations` "
                            "(only additions to existing tolerations), `spec.terminationGracePeriodSeconds` (allow it "
                            "to be set to 1 if it was previously negative)",
                            "FieldValueForbidden",
                        )
                    ],
                )
            meta["resourceVersion"] = cur["metadata"]["resourceVersion"]
            out = emu.store.replace(res, new, str(expected) if expected else None)
        self._send_json(200, out, warn)

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


def _warnings(values: list[str]) -> dict[str, str]:
    # One Warning header with comma-separated values is equivalent to several (RFC 7234 §5.5); clients split it.
    return {"Warning": ", ".join(values)} if values else {}


def _stamp_epoch(stamp: str) -> float:
    from datetime import datetime, timezone

    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=timezone.utc).timestamp()


def name_still_present(emu: KubeEmulator, ns: str, name: str) -> bool:
    return emu.store.get("jobs", ns, name) is not None


__all__ = ["EmulatorHTTPServer", "merge_patch", "query_bool"]
