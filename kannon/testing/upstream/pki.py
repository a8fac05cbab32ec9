"""Credentials for a throw-away control plane: a CA of its own, one serving certificate for 127.0.0.1 (all
components listen there only; both from kannon/testing/certs.py, as the emulator's), the service-account signing key
pair and static bearer tokens."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from kannon.testing.certs import make_serving_certificates, private_pem

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
    made = make_serving_certificates("kannon-upstream-ca", "kannon-upstream",
                                     # The in-cluster names of the API server (the `kubernetes` Service), for pods.
                                     ["kubernetes.default.svc", "kubernetes.default"])  # fmt: skip
    _write(creds.ca, made.ca_pem)
    _write(creds.serving_cert, made.cert_pem)
    _write(creds.serving_key, made.key_pem)

    # Service-account tokens are signed with RSA (RS256), the algorithm every client and verifier accepts.
    sa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    _write(creds.sa_key, private_pem(sa))
    _write(creds.sa_pub, sa.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))  # fmt: skip

    rows = []
    for uid, (user, groups) in enumerate(USERS.items(), start=1):
        group_column = f',"{",".join(groups)}"' if groups else ""
        rows.append(f"{secrets.token_hex(24)},{user},{uid}{group_column}\n")
    _write(creds.token_file, "".join(rows).encode())
    return creds


def _write(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    path.chmod(0o600)
