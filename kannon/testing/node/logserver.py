"""The kubelet endpoint the API server proxies ``pods/log`` to: ``GET /containerLogs/{namespace}/{pod}/{container}``
with ``follow``, ``tailLines``, ``timestamps``, ``previous``, ``limitBytes``, ``sinceSeconds`` (kubectl logs, the
client's read_namespaced_pod_log). HTTPS, because the API server only speaks HTTPS to kubelets.

It does not authenticate its callers (a kubelet checks the API server's client certificate): it listens on
127.0.0.1 only, for a throw-away test cluster.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from kannon.testing.kube.errors import ApiError

if TYPE_CHECKING:
    from kannon.testing.node.agent import NodeAgent


def _epoch(stamp: str) -> float:
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc).timestamp()


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the agent's log is for the pods' lifecycle, not for every request

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        parts = [unquote(p) for p in url.path.strip("/").split("/")]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if parts == ["healthz"]:
            self._send(200, b"ok")
        elif len(parts) == 4 and parts[0] == "containerLogs":
            try:
                self._logs(parts[1], parts[2], parts[3], query)
            except ApiError as e:
                self._send(e.code, e.message.encode())
        else:
            self._send(404, b"404 page not found\n")

    def _logs(self, namespace: str, name: str, container: str, query: dict[str, str]) -> None:
        agent = self.server.agent
        pod = agent.pod(namespace, name)
        if pod is None:
            self._send(404, f'pod "{name}" not found on this node\n'.encode())
            return
        flag = {k: query.get(k, "").lower() in ("1", "true") for k in ("follow", "timestamps", "previous")}
        clog = agent.kubelet.container_log(pod, container, flag["previous"])
        if clog is None:
            self._send(200, b"")
            return
        lines, index, done = clog.read_from(0, None)
        if query.get("sinceSeconds"):
            cutoff = time.time() - int(query["sinceSeconds"])
            lines = [ln for ln in lines if _epoch(ln[0]) >= cutoff]
        if query.get("tailLines"):
            tail = int(query["tailLines"])
            lines = lines[len(lines) - tail :] if tail else []
        limit = int(query["limitBytes"]) if query.get("limitBytes") else None

        def render(chunk: list[tuple[str, bytes]]) -> bytes:
            # timestamps: each line prefixed with its RFC 3339 time and a space, as the kubelet writes them
            return b"".join((f"{s} ".encode() + ln) if flag["timestamps"] else ln for s, ln in chunk)

        if not flag["follow"]:
            data = render(lines)
            self._send(200, data[:limit] if limit else data)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        sent = 0
        try:
            chunk = render(lines)
            while True:
                if limit is not None:
                    chunk = chunk[: max(0, limit - sent)]
                if chunk:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                    self.wfile.flush()
                sent += len(chunk)
                if (limit is not None and sent >= limit) or done or self.server.stopping:
                    break
                more, index, done = clog.read_from(index, 0.5)
                chunk = render(more)
            self.wfile.write(b"0\r\n\r\n")
        except OSError:  # the API server hung up (kubectl logs -f interrupted)
            self.close_connection = True

    def _send(self, code: int, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    agent: NodeAgent
    stopping = False


class LogServer:
    def __init__(self, agent: NodeAgent, tls: tuple[str, str] | None, port: int) -> None:
        self.agent = agent
        self.tls = tls
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.agent = agent
        self.port = int(self._server.server_address[1])
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        cert, key = self.tls or _self_signed()
        context.load_cert_chain(cert, key)
        self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
                                        daemon=True, name="node-logs")  # fmt: skip
        self._thread.start()

    def stop(self) -> None:
        self._server.stopping = True
        if self._thread is not None:
            self._server.shutdown()
        self._server.server_close()


def _self_signed() -> tuple[str, str]:
    """A throw-away serving certificate for 127.0.0.1 (an API server verifying kubelets will refuse it)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kannon-node")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
            .sign(key, hashes.SHA256()))  # fmt: skip
    directory = Path(tempfile.mkdtemp(prefix="kannon-node-tls-"))
    (directory / "tls.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))  # fmt: skip
    return str(directory / "tls.crt"), str(directory / "tls.key")
