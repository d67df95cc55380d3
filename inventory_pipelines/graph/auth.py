"""Client-credentials tokens per tenant through msal, cached until shortly before expiry.

msal (Microsoft's own library) builds the requests for the three credential kinds and keeps
a token cache per tenant; `TokenHttp` sends them over the Graph client's httpx client, so
the token POST stays the only non-GET request and goes only to the configured authority.
Threads that sync several policy types of one tenant share one cached token; only one of
them fetches it.
"""

from __future__ import annotations

import logging
import random as _random
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx
import msal

from inventory_pipelines.core.errors import ErrorCode, GraphError, InventoryError
from inventory_pipelines.core.redaction import project_logger, redact
from inventory_pipelines.core.tenant_ids import looks_like_guid, normalize_tenant_id
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.settings import GRAPH_SCOPE, GraphSettings
from inventory_pipelines.graph.token_http import TokenHttp, aadsts_code

LOGGER_NAME = "inventory_pipelines.graph"
DEFAULT_EXPIRES_IN = 3599.0
_KEPT_SECRETS_PER_TENANT = 3
_ASSERTIONS = " client assertions"
"""Where recent client assertions are kept among the tenants' tokens (no tenant id has a space)."""


def is_token_url(settings: GraphSettings, url: httpx.URL) -> bool:
    """True for `{authority}/{tenant}/oauth2/v2.0/token`, the only place a POST may go."""
    authority = httpx.URL(settings.authority_url)
    prefix = authority.path.rstrip("/") + "/"
    path = url.path
    if (url.scheme, url.host, url.port) != (authority.scheme, authority.host, authority.port):
        return False
    if not path.startswith(prefix) or not path.endswith("/oauth2/v2.0/token"):
        return False
    tenant = path[len(prefix) : -len("/oauth2/v2.0/token")]
    return looks_like_guid(tenant)


@dataclass
class _CachedToken:
    value: str
    refresh_at: float


def redact_msal_loggers() -> None:
    """msal logs through its own module loggers; give each our redacting filter."""
    for name in list(logging.root.manager.loggerDict):
        if name == "msal" or name.startswith("msal."):
            project_logger(name)


class TokenProvider:
    """Hands out a valid bearer token per tenant; `invalidate` supports refresh-on-401."""

    def __init__(
        self,
        settings: GraphSettings,
        http: httpx.Client,
        *,
        retry: RetryPolicy | None = None,
        logger: logging.Logger | None = None,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        clock: Callable[[], float] = time.monotonic,
        refresh_margin: float = 300.0,
    ) -> None:
        self._settings = settings
        self._logger = logger or project_logger(LOGGER_NAME)
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._lock = threading.Lock()
        self._tenant_locks: dict[str, threading.Lock] = {}
        self._cache: dict[str, _CachedToken] = {}
        self._apps: dict[str, msal.ConfidentialClientApplication] = {}
        self._issued: dict[str, deque[str]] = {}
        self._http = TokenHttp(
            settings,
            http,
            retry=retry or RetryPolicy(),
            logger=self._logger,
            redact=self.redact,
            remember_secret=self._remember_assertion,
            sleep=sleep,
            random=random,
        )
        redact_msal_loggers()

    def __repr__(self) -> str:
        return f"TokenProvider(authority_url={self._settings.authority_url!r})"

    def secrets(self) -> tuple[str, ...]:
        """Everything that must never be printed: the credential, recent tokens and assertions."""
        with self._lock:
            recent = [value for kept in self._issued.values() for value in kept]
        found = {*self._settings.credential.secrets(), *recent}
        return tuple(sorted(found, key=len, reverse=True))

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def token(self, tenant_id: str) -> str:
        """A cached token, or a fresh one fetched by exactly one thread per tenant."""
        tenant_id = normalize_tenant_id(tenant_id)
        with self._lock:
            cached = self._cache.get(tenant_id)
            if cached is not None and self._clock() < cached.refresh_at:
                return cached.value
            tenant_lock = self._tenant_locks.setdefault(tenant_id, threading.Lock())
        with tenant_lock:
            with self._lock:  # another thread may have refreshed while we waited
                cached = self._cache.get(tenant_id)
                if cached is not None and self._clock() < cached.refresh_at:
                    return cached.value
            value, expires_in = self._request_token(tenant_id)
            margin = min(self._refresh_margin, expires_in / 2)
            with self._lock:
                self._cache[tenant_id] = _CachedToken(value, self._clock() + expires_in - margin)
                self._remember(tenant_id, value)
            return value

    def invalidate(self, tenant_id: str, token: str | None = None) -> bool:
        """Drop the tenant's cached token (only if it is still `token`, when given).

        Passing the rejected token keeps one thread's 401 from discarding the fresh token
        another thread has just fetched. False when the cache holds such another token (the
        caller's retry uses it instead of a token fetched after its 401), else True.
        """
        with self._lock:
            cached = self._cache.get(tenant_id)
            if cached is not None and (token is None or cached.value == token):
                del self._cache[tenant_id]
                return True
            return cached is None

    def _remember(self, key: str, secret: str) -> None:
        kept = self._issued.setdefault(key, deque(maxlen=_KEPT_SECRETS_PER_TENANT))
        kept.append(secret)

    def _remember_assertion(self, assertion: str) -> None:
        with self._lock:
            self._remember(_ASSERTIONS, assertion)

    def _app(self, tenant_id: str) -> msal.ConfidentialClientApplication:
        """The tenant's msal application (and so its token cache), built once."""
        app = self._apps.get(tenant_id)
        if app is None:
            try:
                app = msal.ConfidentialClientApplication(
                    self._settings.client_id,
                    client_credential=self._settings.credential.for_msal(),
                    authority=self._http.msal_authority(quote(tenant_id, safe="")),
                    http_client=self._http,
                    token_cache=msal.TokenCache(),
                    # Discovery goes only to the configured authority, never to Microsoft's
                    # instance-discovery endpoint (the simulator and sovereign clouds alike).
                    instance_discovery=False,
                )
            except ValueError as exc:
                message = f"token library refused the authority of tenant {tenant_id}: {exc}"
                raise GraphError(
                    self.redact(message),
                    code=ErrorCode.AUTHENTICATION_FAILED,
                ) from None
            self._apps[tenant_id] = app
        return app

    def _request_token(self, tenant_id: str) -> tuple[str, float]:
        """A new token from the authority: our cache decided one is due, so msal's copy of the
        old one (revoked, or close to expiry) is dropped first."""
        app = self._app(tenant_id)
        app.remove_tokens_for_client()
        try:
            result: dict[str, Any] = app.acquire_token_for_client(scopes=[GRAPH_SCOPE])
        except InventoryError:
            raise
        except ValueError as exc:  # e.g. a 200 whose body is not JSON
            raise GraphError(
                self.redact(f"token response for tenant {tenant_id} is unreadable: {exc}"),
                code=ErrorCode.AUTHENTICATION_FAILED,
            ) from None
        token = result.get("access_token")
        if not isinstance(token, str) or not token:
            aadsts = aadsts_code(result)
            detail = f": {aadsts}" if aadsts else " carries no access_token"
            raise GraphError(
                self.redact(f"token response for tenant {tenant_id}{detail}"),
                code=ErrorCode.AUTHENTICATION_FAILED,
                graph_code=aadsts,
            )
        try:
            expires_in = float(result.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN
        if not expires_in > 0:
            expires_in = DEFAULT_EXPIRES_IN
        return token, expires_in
