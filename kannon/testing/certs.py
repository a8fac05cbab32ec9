"""A throw-away CA and one serving certificate, for the test control planes (the emulator, kannon/testing/kube/tls.py,
and the upstream tier, kannon/testing/upstream/pki.py).

Both certificates carry what strict X.509 verification requires (OpenSSL's X509_V_FLAG_X509_STRICT, RFC 5280), which
Python 3.13's ``ssl.create_default_context()`` — and urllib3 2.x, hence the kubernetes client, on 3.13 — turn on:

* the CA: basicConstraints CA:TRUE marked critical, keyUsage keyCertSign/cRLSign, a subjectKeyIdentifier;
* the serving certificate: an authorityKeyIdentifier naming the CA's key (strict mode refuses a non-root certificate
  without one: "Missing Authority Key Identifier"), its own subjectKeyIdentifier, basicConstraints CA:FALSE,
  keyUsage digitalSignature (an EC key signs the TLS handshake; keyEncipherment is for RSA key transport only),
  extendedKeyUsage serverAuth and the host names and addresses as subjectAltNames.

Keys are EC P-256: generated in about a millisecond, so a fresh CA per emulator costs nothing noticeable.
"""

from __future__ import annotations

import datetime
import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# Both control planes listen on loopback; their clients reach them by either name.
LOOPBACK = ("127.0.0.1", "localhost")


@dataclass(frozen=True)
class ServingCertificates:
    ca_pem: bytes
    cert_pem: bytes  # the serving certificate, signed by the CA
    key_pem: bytes  # its private key, PKCS#8, unencrypted


def make_serving_certificates(
    ca_name: str, server_name: str, hosts: Iterable[str] = (), days: int = 30
) -> ServingCertificates:
    """A new CA named ``ca_name`` and a certificate for ``server_name`` valid for 127.0.0.1, localhost and ``hosts``
    (IP addresses or DNS names), both valid from 5 minutes ago (clock skew between processes) for ``days``."""
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=days)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_subject = _name(ca_name)
    ca_ski = x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key())
    ca = (
        _builder(ca_subject, ca_subject, ca_key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True, crl_sign=True), critical=True)
        .add_extension(ca_ski, critical=False)
        .sign(ca_key, hashes.SHA256())
    )

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in dict.fromkeys([*LOOPBACK, *hosts]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        _builder(_name(server_name), ca_subject, key.public_key(), start, end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    return ServingCertificates(
        ca_pem=ca.public_bytes(serialization.Encoding.PEM),
        cert_pem=cert.public_bytes(serialization.Encoding.PEM),
        key_pem=private_pem(key),
    )


def private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _builder(
    subject: x509.Name, issuer: x509.Name, public_key: ec.EllipticCurvePublicKey, start: datetime.datetime,
    end: datetime.datetime,
) -> x509.CertificateBuilder:  # fmt: skip
    return (
        x509.CertificateBuilder()
        .subject_name(subject).issuer_name(issuer).public_key(public_key)
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
    )  # fmt: skip


def _key_usage(digital_signature: bool = False, key_cert_sign: bool = False, crl_sign: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature, content_commitment=False, key_encipherment=False,
        data_encipherment=False, key_agreement=False, key_cert_sign=key_cert_sign, crl_sign=crl_sign,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip
