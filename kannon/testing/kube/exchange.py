"""One request and its answer, as the API server writes it: the base of the emulator's request handler.

Conventions from kubernetes.io/docs/reference/using-api/api-concepts/ and
.../kubernetes-api/common-parameters/common-parameters/: JSON answers (compact, ``Cache-Control: no-cache,
private``), query booleans as the apiserver parses them. The handler's parts subclass ``Exchange``: reads.py (lists,
watches, logs), writes.py (create, update, patch, delete); server.py routes to them.
"""

from __future__ import annotations

import json
import logging
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from kannon.testing.kube.server import EmulatorHTTPServer

log = logging.getLogger("kannon.testing.kube")


def query_bool(value: str | None) -> bool:
    """Query booleans: present and not "0"/"false" means true (client 36 sends ``watch=True``)."""
    if value is None:
        return False
    return value.strip().lower() not in ("0", "false")


def dump(obj: Any) -> bytes:
    return json.dumps(obj, separators=(",", ":")).encode()


class Exchange(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body leave in separate writes: with Nagle's algorithm the body waits for the client's delayed ACK
    # (~40 ms on Linux), which made every request cost ~45 ms.
    disable_nagle_algorithm = True
    server: EmulatorHTTPServer

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s " + format, self.address_string(), *args)

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = dump(body)
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
