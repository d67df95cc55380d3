"""Connection settings for Microsoft Graph, validated once so bad configuration fails fast."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TypedDict
from urllib.parse import urlsplit

from inventory_pipelines.core.errors import ConfigurationError
from inventory_pipelines.graph.credentials import (
    ENV_CLIENT_CERTIFICATE_PATH,
    ENV_CLIENT_SECRET,
    ENV_FEDERATED_TOKEN_FILE,
    Credential,
    choose_credential,
)

DEFAULT_BASE_URL = "https://graph.microsoft.com"
DEFAULT_AUTHORITY_URL = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

ENV_BASE_URL = "GRAPH_BASE_URL"
ENV_AUTHORITY_URL = "GRAPH_AUTHORITY_URL"
ENV_CLIENT_ID = "GRAPH_CLIENT_ID"
ENV_BATCHING = "GRAPH_BATCHING"

_SWITCH_VALUES = {"on": True, "off": False, "true": True, "false": False, "1": True, "0": False}


def parse_switch(value: str, setting: str) -> bool:
    """`on`/`off` (also true/false, 1/0), or a ConfigurationError naming the setting."""
    switch = _SWITCH_VALUES.get(value.strip().lower())
    if switch is None:
        raise ConfigurationError(f"{setting} must be 'on' or 'off' (got {value!r})")
    return switch


def _checked_url(value: str, setting: str, example: str) -> str:
    """Return the URL without a trailing slash, or explain which setting is wrong and how."""
    value = value.strip()
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigurationError(
            f"{setting} must be an absolute http(s) URL such as {example} (got {value!r}); "
            f"fix the value or unset it to use the default"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(
            f"{setting} must not contain credentials; put the URL without user:password@ in it"
        )
    if parts.query or parts.fragment:
        raise ConfigurationError(
            f"{setting} must not carry a query or fragment (got {value!r}); "
            f"use the bare URL such as {example}"
        )
    return value.rstrip("/")


def is_loopback_host(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _checked_authority(value: str) -> str:
    """Credentials travel to the authority: plain http only on loopback (the simulator)."""
    url = _checked_url(value, ENV_AUTHORITY_URL, DEFAULT_AUTHORITY_URL)
    parts = urlsplit(url)
    if parts.scheme == "http" and not is_loopback_host(parts.hostname or ""):
        raise ConfigurationError(
            f"{ENV_AUTHORITY_URL} must use https (got {value!r}); plain http is accepted only "
            f"on loopback, for the Graph simulator"
        )
    return url


class CredentialSettings(TypedDict):
    """The three credential fields of `GraphSettings`; exactly one is non-empty."""

    client_secret: str
    certificate_path: str
    federated_token_file: str


def credential_settings_from_env(env: Mapping[str, str]) -> CredentialSettings:
    """The three credential settings as `GraphSettings` fields (unset ones empty); which one
    is set decides the credential kind."""
    return {
        "client_secret": env.get(ENV_CLIENT_SECRET, "").strip(),
        "certificate_path": env.get(ENV_CLIENT_CERTIFICATE_PATH, "").strip(),
        "federated_token_file": env.get(ENV_FEDERATED_TOKEN_FILE, "").strip(),
    }


@dataclass(frozen=True, kw_only=True)
class GraphSettings:
    """Where Graph and the authority live and which app credential to use.

    Exactly one of `client_secret`, `certificate_path` and `federated_token_file` is set; it
    becomes `credential`. Secrets are excluded from `repr` so settings can be logged.
    """

    client_id: str
    client_secret: str = field(default="", repr=False)
    certificate_path: str = ""
    """PEM file with the private key and the certificate registered on the app."""
    federated_token_file: str = ""
    """Token file of a federated identity (Kubernetes workload identity), re-read on rotation."""
    base_url: str = DEFAULT_BASE_URL
    authority_url: str = DEFAULT_AUTHORITY_URL
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    write_timeout: float = 30.0
    pool_timeout: float = 30.0
    batching: bool = True
    """Fetch through JSON batches (`$batch`, 20 requests per round trip); off: one GET each."""
    credential: Credential = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.client_id or not self.client_id.strip():
            raise ConfigurationError(
                f"{ENV_CLIENT_ID} is empty; set it to the application (client) id of the "
                f"Entra app registration"
            )
        object.__setattr__(
            self,
            "credential",
            choose_credential(
                client_secret=self.client_secret,
                certificate_path=self.certificate_path,
                federated_token_file=self.federated_token_file,
            ),
        )
        object.__setattr__(self, "client_id", self.client_id.strip())
        object.__setattr__(
            self, "base_url", _checked_url(self.base_url, ENV_BASE_URL, DEFAULT_BASE_URL)
        )
        object.__setattr__(
            self,
            "authority_url",
            _checked_authority(self.authority_url),
        )
        for name in ("connect_timeout", "read_timeout", "write_timeout", "pool_timeout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0:
                raise ConfigurationError(
                    f"GraphSettings.{name} must be a positive number of seconds (got {value!r})"
                )
        if not isinstance(self.batching, bool):
            raise ConfigurationError(
                f"GraphSettings.batching must be True or False (got {self.batching!r})"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> GraphSettings:
        """Build settings from `GRAPH_*` variables; read at call time, never at import."""
        env = os.environ if environ is None else environ

        def required(name: str, what: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigurationError(f"{name} is not set; set it to {what}")
            return value

        client_id = required(ENV_CLIENT_ID, "the application (client) id of the Entra app")
        return cls(
            client_id=client_id,
            **credential_settings_from_env(env),
            base_url=env.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL,
            authority_url=env.get(ENV_AUTHORITY_URL, "").strip() or DEFAULT_AUTHORITY_URL,
            batching=parse_switch(env.get(ENV_BATCHING, "") or "on", ENV_BATCHING),
        )
