"""OAuth 2.0 client-credentials tokens per tenant, cached until shortly before expiry.

This module holds the only non-GET request the project sends: the token POST, and only to
the configured authority. Threads that sync several policy types of one tenant share one
cached token; only one of them fetches it.
"""

from __future__ import annotations

import logging
import random as _random
import re
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from inventory_pipelines.core.errors import (
    ErrorCode,
    GraphError,
    ValidationError,
    error_code_for_status,
)
from inventory_pipelines.core.redaction import project_logger, redact
from inventory_pipelines.graph.retry import (
    RETRY_AFTER_STATUSES,
    RETRYABLE_STATUSES,
    RetryBudget,
    RetryPolicy,
    parse_retry_after,
)
from inventory_pipelines.graph.settings import GRAPH_SCOPE, GraphSettings

LOGGER_NAME = "inventory_pipelines.graph"
DEFAULT_EXPIRES_IN = 3599.0
_TENANT_ID = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.\-]{0,253}[A-Za-z0-9])?$")
_AADSTS = re.compile(r"AADSTS\d+")
_KEPT_TOKENS_PER_TENANT = 3


def check_tenant_id(tenant_id: str) -> str:
    """Tenant ids go into URL paths; allow only GUIDs and domain names (no '/', '..', '?')."""
    if not isinstance(tenant_id, str) or not _TENANT_ID.match(tenant_id) or ".." in tenant_id:
        raise ValidationError(
            f"invalid tenant id {tenant_id!r}: expected an Entra tenant GUID or domain name"
        )
    return tenant_id


def token_url(settings: GraphSettings, tenant_id: str) -> str:
    return (
        f"{settings.authority_url}/{quote(check_tenant_id(tenant_id), safe='')}/oauth2/v2.0/token"
    )


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
    return bool(_TENANT_ID.match(tenant))


@dataclass
class _CachedToken:
    value: str
    refresh_at: float


def _aadsts_code(body: dict[str, Any]) -> str | None:
    description = body.get("error_description")
    if isinstance(description, str):
        match = _AADSTS.search(description)
        if match:
            return match.group(0)
    codes = body.get("error_codes")
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        return f"AADSTS{codes[0]}"
    error = body.get("error")
    return error if isinstance(error, str) and error else None


def _first_line(text: str, limit: int = 300) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[:limit] + "…"


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
        self._http = http
        self._retry = retry or RetryPolicy()
        self._logger = logger or project_logger(LOGGER_NAME)
        self._sleep = sleep
        self._random = random
        self._clock = clock
        self._refresh_margin = refresh_margin
        self._lock = threading.Lock()
        self._tenant_locks: dict[str, threading.Lock] = {}
        self._cache: dict[str, _CachedToken] = {}
        self._issued: dict[str, deque[str]] = {}

    def __repr__(self) -> str:
        return f"TokenProvider(authority_url={self._settings.authority_url!r})"

    def secrets(self) -> tuple[str, ...]:
        """Everything that must never be printed: the client secret and recent tokens."""
        with self._lock:
            tokens = [t for issued in self._issued.values() for t in issued]
        return tuple(sorted({self._settings.client_secret, *tokens}, key=len, reverse=True))

    def redact(self, text: str) -> str:
        return redact(text, self.secrets())

    def token(self, tenant_id: str) -> str:
        """A cached token, or a fresh one fetched by exactly one thread per tenant."""
        check_tenant_id(tenant_id)
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
                issued = self._issued.setdefault(tenant_id, deque(maxlen=_KEPT_TOKENS_PER_TENANT))
                issued.append(value)
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

    def _request_token(self, tenant_id: str) -> tuple[str, float]:
        url = token_url(self._settings, tenant_id)
        form = {
            "client_id": self._settings.client_id,
            "client_secret": self._settings.client_secret,
            "scope": GRAPH_SCOPE,
            "grant_type": "client_credentials",
        }
        budget = RetryBudget(self._retry, self._random)
        while True:
            attempt = budget.start_attempt()
            retry_after: float | None = None
            try:
                response = self._http.post(url, data=form, headers={"Accept": "application/json"})
            except httpx.TimeoutException as exc:
                code, reason = ErrorCode.TIMEOUT, f"{type(exc).__name__}"
            except httpx.TransportError as exc:
                code, reason = ErrorCode.NETWORK_ERROR, f"{type(exc).__name__}: {exc}"
            else:
                if response.status_code == 200:
                    return self._parse_success(tenant_id, response)
                if response.status_code not in RETRYABLE_STATUSES:
                    raise self._token_error(tenant_id, response)
                code = error_code_for_status(response.status_code)
                reason = f"HTTP {response.status_code}"
                if response.status_code in RETRY_AFTER_STATUSES:
                    retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = budget.next_wait(retry_after)
            if wait is None:
                raise GraphError(
                    self.redact(
                        f"token request for tenant {tenant_id} failed after {attempt} "
                        f"attempt(s): {reason}"
                    ),
                    code=code,
                )
            self._logger.info(
                self.redact(
                    f"retrying token request for tenant {tenant_id} in {wait:.3f}s "
                    f"(attempt {attempt} failed: {reason})"
                ),
                extra={
                    "graph_tenant": tenant_id,
                    "graph_attempt": attempt,
                    "graph_wait_seconds": wait,
                    "graph_reason": self.redact(reason),
                },
            )
            self._sleep(wait)
            budget.record_wait(wait)

    def _parse_success(self, tenant_id: str, response: httpx.Response) -> tuple[str, float]:
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict) or not isinstance(body.get("access_token"), str):
            body = {}
        token: str = body.get("access_token", "")
        if not token:
            raise GraphError(
                f"token response for tenant {tenant_id} carries no access_token",
                code=ErrorCode.AUTHENTICATION_FAILED,
                status=response.status_code,
            )
        try:
            expires_in = float(body.get("expires_in", DEFAULT_EXPIRES_IN))
        except (TypeError, ValueError):
            expires_in = DEFAULT_EXPIRES_IN
        if not expires_in > 0:
            expires_in = DEFAULT_EXPIRES_IN
        return token, expires_in

    def _token_error(self, tenant_id: str, response: httpx.Response) -> GraphError:
        """An authority rejection: keep the AADSTS code and its (redacted) description."""
        try:
            body = response.json()
        except ValueError:
            body = None
        aadsts: str | None = None
        description = ""
        request_id = response.headers.get("x-ms-request-id") or response.headers.get("request-id")
        if isinstance(body, dict):
            aadsts = _aadsts_code(body)
            raw = body.get("error_description")
            description = _first_line(raw) if isinstance(raw, str) else ""
            error = body.get("error")
            if isinstance(error, str) and error and error not in description:
                description = f"{error}: {description}" if description else error
            for key in ("trace_id", "correlation_id"):
                if not request_id and isinstance(body.get(key), str):
                    request_id = body[key]
        message = f"token request for tenant {tenant_id} rejected: HTTP {response.status_code}" + (
            f" {description}" if description else ""
        )
        return GraphError(
            self.redact(message),
            code=ErrorCode.AUTHENTICATION_FAILED,
            status=response.status_code,
            graph_code=aadsts,
            request_id=request_id,
        )
