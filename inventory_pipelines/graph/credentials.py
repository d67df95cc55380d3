"""The app's proof of identity at the token endpoint: a client secret, a certificate, or a
federated token file (Kubernetes workload identity).

Each kind knows what msal needs from it and which strings must never be printed. Files are
read when the settings are built, so a wrong path or a key that does not match its
certificate fails at start, not at the first token request.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from inventory_pipelines.core.errors import ConfigurationError, ErrorCode, GraphError

ENV_CLIENT_SECRET = "GRAPH_CLIENT_SECRET"
ENV_CLIENT_CERTIFICATE_PATH = "GRAPH_CLIENT_CERTIFICATE_PATH"
ENV_FEDERATED_TOKEN_FILE = "GRAPH_FEDERATED_TOKEN_FILE"
CREDENTIAL_SETTINGS = (ENV_CLIENT_SECRET, ENV_CLIENT_CERTIFICATE_PATH, ENV_FEDERATED_TOKEN_FILE)


@dataclass(frozen=True)
class ClientSecret:
    """A client secret of the app registration (the simplest kind; Microsoft prefers the others)."""

    value: str = field(repr=False)
    kind = "client secret"

    def for_msal(self) -> str | dict[str, Any]:
        return self.value

    def secrets(self) -> tuple[str, ...]:
        return (self.value,)


@dataclass(frozen=True)
class ClientCertificate:
    """A certificate registered on the app, with its private key, from one PEM file.

    msal signs each client assertion with the key and names the certificate by its SHA-256
    thumbprint (`x5t#S256`), which it derives from the certificate: nothing to configure.
    """

    path: str
    private_key_pem: str = field(repr=False)
    certificate_pem: str
    kind = "certificate"

    @classmethod
    def load(cls, path: str) -> ClientCertificate:
        data = _read_setting_file(path, ENV_CLIENT_CERTIFICATE_PATH, "PEM file")
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError) as exc:
            raise ConfigurationError(
                f"{ENV_CLIENT_CERTIFICATE_PATH} ({path}) holds no readable unencrypted private "
                f"key ({type(exc).__name__}); put the PEM private key and the certificate in it"
            ) from None
        try:
            certificate = x509.load_pem_x509_certificate(data)
        except ValueError:
            raise ConfigurationError(
                f"{ENV_CLIENT_CERTIFICATE_PATH} ({path}) holds no PEM certificate; append the "
                f"certificate registered on the app to the private key"
            ) from None
        if not isinstance(key, rsa.RSAPrivateKey):
            raise ConfigurationError(
                f"{ENV_CLIENT_CERTIFICATE_PATH} ({path}) holds a {type(key).__name__}; Entra "
                f"client assertions need an RSA key"
            )
        public = serialization.PublicFormat.SubjectPublicKeyInfo
        key_spki = key.public_key().public_bytes(serialization.Encoding.DER, public)
        if key_spki != certificate.public_key().public_bytes(serialization.Encoding.DER, public):
            raise ConfigurationError(
                f"{ENV_CLIENT_CERTIFICATE_PATH} ({path}): the private key does not belong to the "
                f"certificate; put the matching pair in the file"
            )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()
        return cls(
            path=path,
            private_key_pem=key_pem,
            certificate_pem=certificate.public_bytes(serialization.Encoding.PEM).decode(),
        )

    def for_msal(self) -> str | dict[str, Any]:
        # With `public_certificate` and no `thumbprint`, msal derives the SHA-256 thumbprint
        # and signs with PS256, as Entra recommends (SHA-1 thumbprints are deprecated).
        return {"private_key": self.private_key_pem, "public_certificate": self.certificate_pem}

    def secrets(self) -> tuple[str, ...]:
        return (self.private_key_pem,)


class FederatedTokenFile:
    """A token file another identity provider keeps fresh (the Kubernetes projected service
    account token of Entra workload identity); read again whenever it has been rotated."""

    kind = "federated token file"

    def __init__(self, path: str) -> None:
        _read_setting_file(path, ENV_FEDERATED_TOKEN_FILE, "token file")
        self.path = path
        self._lock = threading.Lock()
        self._seen: tuple[int, int] | None = None
        self._assertion = ""

    def __repr__(self) -> str:
        return f"FederatedTokenFile(path={self.path!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FederatedTokenFile) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def assertion(self) -> str:
        """The file's current token; re-read only when its modification time or size changed."""
        try:
            stat = os.stat(self.path)
            with self._lock:
                if self._seen != (stat.st_mtime_ns, stat.st_size):
                    self._assertion = Path(self.path).read_text(encoding="utf-8").strip()
                    self._seen = (stat.st_mtime_ns, stat.st_size)
                return self._assertion
        except OSError as exc:
            raise GraphError(
                f"cannot read the federated token file {self.path} "
                f"({ENV_FEDERATED_TOKEN_FILE}): {type(exc).__name__}: {exc.strerror}",
                code=ErrorCode.AUTHENTICATION_FAILED,
            ) from None

    def for_msal(self) -> str | dict[str, Any]:
        # A callable: msal asks for the assertion only when it sends a token request.
        reader: Callable[[], str] = self.assertion
        return {"client_assertion": reader}

    def secrets(self) -> tuple[str, ...]:
        with self._lock:
            return (self._assertion,) if self._assertion else ()


Credential = ClientSecret | ClientCertificate | FederatedTokenFile


def _read_setting_file(path: str, setting: str, what: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise ConfigurationError(
            f"{setting} points to {path!r}, which cannot be read ({exc.strerror}); set it to "
            f"the path of the {what}"
        ) from None


def choose_credential(
    *, client_secret: str = "", certificate_path: str = "", federated_token_file: str = ""
) -> Credential:
    """Exactly one credential kind, or a ConfigurationError naming the settings involved."""
    given = {
        ENV_CLIENT_SECRET: client_secret,
        ENV_CLIENT_CERTIFICATE_PATH: certificate_path.strip(),
        ENV_FEDERATED_TOKEN_FILE: federated_token_file.strip(),
    }
    chosen = [name for name, value in given.items() if value]
    if not chosen:
        raise ConfigurationError(
            f"no Graph credential is set; set it to exactly one of {ENV_CLIENT_SECRET} (a client "
            f"secret), {ENV_CLIENT_CERTIFICATE_PATH} (a PEM file with private key and "
            f"certificate) or {ENV_FEDERATED_TOKEN_FILE} (a workload identity token file)"
        )
    if len(chosen) > 1:
        raise ConfigurationError(
            f"{' and '.join(chosen)} are all set; set only one Graph credential and unset "
            f"the others"
        )
    if client_secret:
        return ClientSecret(client_secret)
    if given[ENV_CLIENT_CERTIFICATE_PATH]:
        return ClientCertificate.load(given[ENV_CLIENT_CERTIFICATE_PATH])
    return FederatedTokenFile(given[ENV_FEDERATED_TOKEN_FILE])
