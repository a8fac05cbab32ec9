"""The test control planes' certificates pass strict X.509 verification (VERIFY_X509_STRICT), on every Python.

Python 3.13's ``ssl.create_default_context()`` (and urllib3 2.x, which the kubernetes client uses, on 3.13) sets
VERIFY_X509_STRICT: OpenSSL then checks the RFC 5280 profile (docs.python.org/3/library/ssl.html, VERIFY_X509_STRICT).
The emulator's first CA lacked a subjectKeyIdentifier and its serving certificate an authorityKeyIdentifier, and
every emulator test failed on 3.13 with "certificate verify failed: Missing Authority Key Identifier". Setting the
flag explicitly makes these tests fail on every Python the same way. The handshakes run over memory BIOs: OpenSSL's
own verifier, no sockets.
"""

from __future__ import annotations

import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from kannon.testing.kube import tls
from kannon.testing.upstream import pki


def strict_client(ca_pem: bytes) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cadata=ca_pem.decode())
    ctx.verify_flags |= ssl.VERIFY_X509_STRICT
    return ctx


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str) -> None:
    """A full TLS handshake between the two contexts; the client's verification error propagates."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(to_client, to_server, server_hostname=server_hostname)
    s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done: set[int] = set()
    for _ in range(10):
        for i, side in enumerate((c, s)):
            if i not in done:
                try:
                    side.do_handshake()
                    done.add(i)
                except ssl.SSLWantReadError:
                    pass
        s_in.write(to_server.read())
        to_client.write(s_out.read())
        if done == {0, 1}:
            return
    raise AssertionError("the handshake did not finish")


def upstream_pair(tmp_path: Path) -> tuple[ssl.SSLContext, bytes]:
    creds = pki.make_credentials(tmp_path / "pki")
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(creds.serving_cert, creds.serving_key)
    return server, creds.ca.read_bytes()


def emulator_pair(tmp_path: Path) -> tuple[ssl.SSLContext, bytes]:
    creds = tls.make_credentials(["127.0.0.1"])
    return creds.server_context(), creds.ca_pem


PAIRS = {"emulator": emulator_pair, "upstream": upstream_pair}
NAMES = {
    "emulator": ["127.0.0.1", "localhost"],
    # kube-apiserver's in-cluster names, for pods that reach it through the `kubernetes` Service.
    "upstream": ["127.0.0.1", "localhost", "kubernetes.default.svc", "kubernetes.default"],
}


@pytest.mark.parametrize(("tier", "name"), [(t, n) for t, names in NAMES.items() for n in names])
def test_the_serving_certificate_passes_strict_verification(tier: str, name: str, tmp_path: Path) -> None:
    server, ca_pem = PAIRS[tier](tmp_path)
    handshake(server, strict_client(ca_pem), name)


@pytest.mark.parametrize("tier", PAIRS)
def test_strict_verification_still_refuses_another_ca_and_another_name(tier: str, tmp_path: Path) -> None:
    """The check above is not vacuous: the same client refuses a certificate its CA did not sign or not for the name."""
    server, ca_pem = PAIRS[tier](tmp_path)
    _, other_ca = PAIRS[tier](tmp_path / "other")
    with pytest.raises(ssl.SSLCertVerificationError, match="unable to get local issuer certificate"):
        handshake(server, strict_client(other_ca), "127.0.0.1")
    with pytest.raises(ssl.SSLCertVerificationError, match="Hostname mismatch|IP address mismatch"):
        handshake(server, strict_client(ca_pem), "example.com")


@pytest.mark.parametrize("tier", PAIRS)
def test_the_certificates_follow_the_rfc5280_profile(tier: str, tmp_path: Path) -> None:
    """What strict verifiers (OpenSSL's strict mode, Go's crypto/x509, webpki) look for, extension by extension."""
    if tier == "emulator":
        creds = tls.make_credentials(["127.0.0.1"])
        ca, leaf = x509.load_pem_x509_certificate(creds.ca_pem), x509.load_pem_x509_certificate(creds.cert_pem)
    else:
        up = pki.make_credentials(tmp_path / "pki")
        ca = x509.load_pem_x509_certificate(up.ca.read_bytes())
        leaf = x509.load_pem_x509_certificate(up.serving_cert.read_bytes())

    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints)
    assert constraints.critical and constraints.value.ca
    usage = ca.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign
    ca_ski = ca.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value

    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    aki = leaf.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value
    assert aki.key_identifier == ca_ski.digest
    leaf.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
    leaf_usage = leaf.extensions.get_extension_for_class(x509.KeyUsage).value
    assert leaf_usage.digital_signature and not leaf_usage.key_cert_sign
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in san.get_values_for_type(x509.DNSName)
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1"]
