"""Connection settings for Microsoft Graph, validated once so bad configuration fails fast."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from inventory_pipelines.core.errors import ConfigurationError

DEFAULT_BASE_URL = "https://graph.microsoft.com"
DEFAULT_AUTHORITY_URL = "https://login.microsoftonline.com"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"

ENV_BASE_URL = "GRAPH_BASE_URL"
ENV_AUTHORITY_URL = "GRAPH_AUTHORITY_URL"
ENV_CLIENT_ID = "GRAPH_CLIENT_ID"
ENV_CLIENT_SECRET = "GRAPH_CLIENT_SECRET"
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


@dataclass(frozen=True, kw_only=True)
class GraphSettings:
    """Where Graph and the authority live and which app credentials to use.

    The secret is excluded from `repr` so settings can be logged or shown in tracebacks.
    """

    client_id: str
    client_secret: str = field(repr=False)
    base_url: str = DEFAULT_BASE_URL
    authority_url: str = DEFAULT_AUTHORITY_URL
    connect_timeout: float = 10.0
    read_timeout: float = 60.0
    write_timeout: float = 30.0
    pool_timeout: float = 30.0
    batching: bool = True
    """Fetch through JSON batches (`$batch`, 20 requests per round trip); off: one GET each."""

    def __post_init__(self) -> None:
        if not self.client_id or not self.client_id.strip():
            raise ConfigurationError(
                f"{ENV_CLIENT_ID} is empty; set it to the application (client) id of the "
                f"Entra app registration"
            )
        if not self.client_secret:
            raise ConfigurationError(
                f"{ENV_CLIENT_SECRET} is empty; set it to a client secret of the Entra app "
                f"registration"
            )
        object.__setattr__(self, "client_id", self.client_id.strip())
        object.__setattr__(
            self, "base_url", _checked_url(self.base_url, ENV_BASE_URL, DEFAULT_BASE_URL)
        )
        object.__setattr__(
            self,
            "authority_url",
            _checked_url(self.authority_url, ENV_AUTHORITY_URL, DEFAULT_AUTHORITY_URL),
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
        client_secret = required(ENV_CLIENT_SECRET, "a client secret of the Entra app")
        return cls(
            client_id=client_id,
            client_secret=client_secret,
            base_url=env.get(ENV_BASE_URL, "").strip() or DEFAULT_BASE_URL,
            authority_url=env.get(ENV_AUTHORITY_URL, "").strip() or DEFAULT_AUTHORITY_URL,
            batching=parse_switch(env.get(ENV_BATCHING, "") or "on", ENV_BATCHING),
        )
