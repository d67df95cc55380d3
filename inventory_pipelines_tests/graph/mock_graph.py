"""A scripted Graph + authority for `httpx.MockTransport` unit tests of the client.

Integration tests use the real simulator; these unit tests need exact control over single
responses (one 429 with a given header, one truncated body) without a server.
"""

from __future__ import annotations

import itertools
import threading
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.settings import GraphSettings

BASE = "https://graph.test"
AUTHORITY = "https://login.test"
CLIENT_ID = "client-id-0001"
CLIENT_SECRET = "s3cr3t-Value~With.Specials_0123"
TENANT = "11111111-2222-3333-4444-555555555555"

Responder = Callable[[httpx.Request], httpx.Response]


def page(items: list[Any], next_link: str | None = None, **extra: Any) -> httpx.Response:
    body: dict[str, Any] = {"@odata.context": f"{BASE}/beta/$metadata#x", **extra, "value": items}
    if next_link is not None:
        body["@odata.nextLink"] = next_link
    return httpx.Response(200, json=body)


def graph_error(
    status: int,
    code: str,
    message: str,
    *,
    request_id: str = "req-123",
    headers: dict[str, str] | None = None,
) -> httpx.Response:
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": "2024-01-01T00:00:00", "request-id": request_id},
        }
    }
    return httpx.Response(status, json=body, headers=headers or {})


def items(prefix: str, count: int) -> list[dict[str, Any]]:
    return [{"id": f"{prefix}-{i}", "displayName": f"{prefix} {i}"} for i in range(count)]


@dataclass
class MockGraph:
    """Routes token POSTs to a token factory and GETs to per-path scripts of responses.

    A script is a list consumed in order; its last entry repeats. Every request is recorded.
    """

    scripts: dict[str, list[Responder | httpx.Response]] = field(default_factory=dict)
    token_responses: list[Responder | httpx.Response] = field(default_factory=list)
    requests: list[httpx.Request] = field(default_factory=list)
    tokens_issued: list[str] = field(default_factory=list)
    expires_in: int = 3599
    _counter: itertools.count[int] = field(default_factory=lambda: itertools.count(1))
    _positions: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def on(self, path: str, *responses: Responder | httpx.Response) -> MockGraph:
        self.scripts[path] = list(responses)
        return self

    def __call__(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
        if request.method == "POST" and request.url.path.endswith("/oauth2/v2.0/token"):
            return self._token(request)
        if is_discovery(request):
            return openid_configuration(request)
        key = request.url.path
        if request.url.query:
            key += "?" + request.url.query.decode()
        if key not in self.scripts:
            key = request.url.path
        script = self.scripts.get(key)
        if script is None:
            return graph_error(404, "ResourceNotFound", f"no route {key}")
        with self._lock:
            position = self._positions[key]
            self._positions[key] += 1
        entry = script[min(position, len(script) - 1)]
        return entry(request) if callable(entry) else entry

    def _token(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            scripted = self.token_responses.pop(0) if self.token_responses else None
        if scripted is not None:
            return scripted(request) if callable(scripted) else scripted
        with self._lock:
            token = f"tok-{next(self._counter):04d}-abcdefghijkl"
            self.tokens_issued.append(token)
        return httpx.Response(
            200,
            json={"token_type": "Bearer", "expires_in": self.expires_in, "access_token": token},
        )

    def graph_requests(self) -> list[httpx.Request]:
        return [
            r
            for r in self.requests
            if not r.url.path.endswith("/oauth2/v2.0/token") and not is_discovery(r)
        ]


DISCOVERY_SUFFIX = "/v2.0/.well-known/openid-configuration"


def is_discovery(request: httpx.Request) -> bool:
    """msal's first request per tenant: the authority's OpenID configuration."""
    return request.method == "GET" and request.url.path.endswith(DISCOVERY_SUFFIX)


def openid_configuration(request: httpx.Request) -> httpx.Response:
    tenant_base = str(request.url.copy_with(query=None))[: -len(DISCOVERY_SUFFIX)]
    return httpx.Response(
        200,
        json={
            "issuer": f"{tenant_base}/v2.0",
            "authorization_endpoint": f"{tenant_base}/oauth2/v2.0/authorize",
            "token_endpoint": f"{tenant_base}/oauth2/v2.0/token",
        },
    )


def settings(**overrides: Any) -> GraphSettings:
    values: dict[str, Any] = {
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
        "base_url": BASE,
        "authority_url": AUTHORITY,
    }
    values.update(overrides)
    return GraphSettings(**values)


class SleepRecorder:
    """Injected `sleep` that records instead of waiting, so unit tests never take real time."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def make_client(
    graph: MockGraph,
    *,
    retry: RetryPolicy | None = None,
    sleep: SleepRecorder | None = None,
    random: Callable[[], float] = lambda: 0.5,
    **kwargs: Any,
) -> GraphClient:
    return GraphClient(
        settings(),
        retry=retry or RetryPolicy(),
        transport=httpx.MockTransport(graph),
        sleep=sleep or SleepRecorder(),
        random=random,
        **kwargs,
    )
