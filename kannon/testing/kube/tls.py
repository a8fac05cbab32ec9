"""The emulator's credentials: a CA of its own, one serving certificate, and a random bearer token.

Like a real API server the emulator only talks TLS and only to a holder of its token: client-go (kubectl) does not
send a bearer token over plain http, so an emulator that required a token over http would lock kubectl out.
The certificates come from kannon/testing/certs.py, as the upstream tier's do (kannon/testing/upstream/pki.py adds a
service-account RSA key and a token file the emulator does not need: RSA generation would cost every emulator start).
"""

from __future__ import annotations

import secrets
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from kannon.testing.certs import make_serving_certificates


@dataclass(frozen=True)
class Credentials:
    ca_pem: bytes
    cert_pem: bytes
    key_pem: bytes
    token: str

    def server_context(self) -> ssl.SSLContext:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # load_cert_chain only reads files: the key lives on disk for the blink of this call, in a 0700 directory.
        with tempfile.TemporaryDirectory(prefix="kannon-emu-tls-") as d:
            cert, key = Path(d) / "tls.crt", Path(d) / "tls.key"
            cert.write_bytes(self.cert_pem)
            key.touch(0o600)
            key.write_bytes(self.key_pem)
            ctx.load_cert_chain(cert, key)
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """Trusts this emulator's CA only, and checks the host name, as client-go does; verifies X.509 strictly on
        every Python, as 3.13's default context does, so a certificate 3.13 would refuse fails on 3.10-3.12 too."""
        ctx = ssl.create_default_context(cadata=self.ca_pem.decode())
        ctx.verify_flags |= ssl.VERIFY_X509_STRICT
        return ctx


def make_credentials(hosts: list[str]) -> Credentials:
    """A fresh CA and a serving certificate for 127.0.0.1, localhost and ``hosts``, and a random token."""
    made = make_serving_certificates("kannon-emulator-ca", "kannon-emulator", hosts)
    token = secrets.token_urlsafe(32)
    return Credentials(ca_pem=made.ca_pem, cert_pem=made.cert_pem, key_pem=made.key_pem, token=token)
