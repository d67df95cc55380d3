"""Keys, certificates and signed assertions made at test time, so no credential is checked in.

A certificate is what an app registration holds (its key signs the app's own client
assertions); an issuer is a workload identity provider (the Kubernetes cluster's OIDC
issuer) whose key signs the projected service account token.
"""

from __future__ import annotations

import datetime
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

FEDERATED_AUDIENCE = "api://AzureADTokenExchange"
ISSUER = "https://oidc.cluster.test/7f3c9a1e-0000-4000-8000-00000000c1a5/"
SUBJECT = "system:serviceaccount:inventory:inventory-pipelines"


@dataclass(frozen=True)
class KeyPair:
    """An RSA key and a self-signed certificate for it, both as PEM text."""

    key_pem: str
    certificate_pem: str

    def write(self, path: Path) -> Path:
        """The file `GRAPH_CLIENT_CERTIFICATE_PATH` names: private key, then certificate."""
        path.write_text(self.key_pem + self.certificate_pem)
        return path

    def sign(self, claims: dict[str, Any], headers: dict[str, Any] | None = None) -> str:
        return jwt.encode(claims, self.key_pem, algorithm="RS256", headers=headers)


def new_key_pair(common_name: str = "inventory-pipelines test") -> KeyPair:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return KeyPair(key_pem, certificate.public_bytes(serialization.Encoding.PEM).decode())


def federated_token(
    issuer_keys: KeyPair,
    *,
    issuer: str = ISSUER,
    subject: str = SUBJECT,
    audience: str = FEDERATED_AUDIENCE,
    lifetime: float = 3600,
    issued_at: float | None = None,
) -> str:
    """A projected service account token as the cluster's OIDC issuer signs it."""
    now = time.time() if issued_at is None else issued_at
    claims = {
        "iss": issuer,
        "sub": subject,
        "aud": [audience],
        "iat": int(now),
        "nbf": int(now),
        "exp": int(now + lifetime),
        "jti": str(uuid.uuid4()),
    }
    return issuer_keys.sign(claims, headers={"kid": "cluster-signing-key"})


def write_token_file(path: Path, token: str) -> Path:
    """Write like the kubelet rotates: a new file content and a new modification time."""
    path.write_text(token)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    return path


def federated_registration(issuer_keys: KeyPair, **overrides: str) -> dict[str, str]:
    """The app's federated identity credential trusting the test issuer's service account."""
    values = {
        "issuer": ISSUER,
        "subject": SUBJECT,
        "audience": FEDERATED_AUDIENCE,
        "certificate": issuer_keys.certificate_pem,
    }
    values.update(overrides)
    return values
