"""Credentials for a throw-away control plane: a CA of its own, one serving certificate for 127.0.0.1 (all
components listen there only), the service-account signing key pair and static bearer tokens."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

# Static-token users: name -> groups. The admin bypasses RBAC (system:masters); the controller-manager and scheduler
# users get their permissions from the bootstrap ClusterRoleBindings that kube-apiserver creates for exactly these
# names; the restricted user has no binding at all, for RBAC tests.
USERS: dict[str, tuple[str, ...]] = {
    "admin": ("system:masters",),
    "system:kube-controller-manager": (),
    "system:kube-scheduler": (),
    "kannon-restricted": ("kannon:restricted",),
}


@dataclass(frozen=True)
class Credentials:
    directory: Path

    @property
    def ca(self) -> Path:
        return self.directory / "ca.crt"

    @property
    def serving_cert(self) -> Path:
        return self.directory / "serving.crt"

    @property
    def serving_key(self) -> Path:
        return self.directory / "serving.key"

    @property
    def sa_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def sa_pub(self) -> Path:
        return self.directory / "sa.pub"

    @property
    def token_file(self) -> Path:
        return self.directory / "tokens.csv"

    def token(self, user: str) -> str:
        for line in self.token_file.read_text().splitlines():
            token, name = line.split(",")[:2]
            if name == user:
                return token
        raise KeyError(user)


def make_credentials(directory: Path) -> Credentials:
    """Write a fresh CA, serving certificate, service-account key pair and token file into ``directory`` (0700)."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    creds = Credentials(directory)
    now = datetime.datetime.now(datetime.timezone.utc)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=30)

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kannon-upstream-ca")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                     content_commitment=False, key_encipherment=False, data_encipherment=False,
                                     key_agreement=False, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    _write(creds.ca, ca_cert.public_bytes(serialization.Encoding.PEM))

    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kannon-upstream")]))
        .issuer_name(ca_name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start).not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName([
            x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.DNSName("localhost"),
            # The in-cluster name of the API server (the `kubernetes` Service), for pods that look it up.
            x509.DNSName("kubernetes.default.svc"), x509.DNSName("kubernetes.default"),
        ]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )  # fmt: skip
    _write(creds.serving_cert, cert.public_bytes(serialization.Encoding.PEM))
    _write(creds.serving_key, _private_pem(key))

    # Service-account tokens are signed with RSA (RS256), the algorithm every client and verifier accepts.
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(creds.sa_key, _private_pem(sa))
    _write(creds.sa_pub, sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip

    rows = []
    for uid, (user, groups) in enumerate(USERS.items(), start=1):
        group_column = f',"{",".join(groups)}"' if groups else ""
        rows.append(f"{secrets.token_hex(24)},{user},{uid}{group_column}\n")
    _write(creds.token_file, "".join(rows).encode())
    return creds


def _private_pem(key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())  # fmt: skip


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
