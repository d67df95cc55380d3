"""Token caching per tenant: one fetch per tenant across threads, refresh before expiry."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from inventory_pipelines.core.errors import ErrorCode, GraphError
from inventory_pipelines.graph.auth import TokenProvider, is_token_url
from inventory_pipelines_tests.graph.mock_graph import TENANT, MockGraph, settings

OTHER_TENANT = "0c2e7b41-5d8a-4f3e-9b1c-6a7d8e9f0a1b"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def provider(graph: MockGraph, clock: Clock | None = None) -> TokenProvider:
    http = httpx.Client(transport=httpx.MockTransport(graph))
    return TokenProvider(settings(), http, clock=clock or Clock(), sleep=lambda s: None)


def token_posts(graph: MockGraph) -> list[httpx.Request]:
    return [r for r in graph.requests if r.method == "POST"]


def test_tokens_are_cached_per_tenant() -> None:
    graph = MockGraph()
    tokens = provider(graph)
    first = tokens.token(TENANT)
    assert tokens.token(TENANT) == first
    other = tokens.token(OTHER_TENANT)
    assert other != first
    assert [r.url.path.split("/")[1] for r in token_posts(graph)] == [TENANT, OTHER_TENANT]


def test_tokens_are_refreshed_shortly_before_expiry() -> None:
    clock = Clock()
    graph = MockGraph(expires_in=3599)
    tokens = provider(graph, clock)
    first = tokens.token(TENANT)
    clock.now += 3599 - 300 - 1
    assert tokens.token(TENANT) == first
    clock.now += 2
    assert tokens.token(TENANT) != first


def test_short_lived_tokens_are_refreshed_at_half_life() -> None:
    clock = Clock()
    graph = MockGraph(expires_in=10)
    tokens = provider(graph, clock)
    first = tokens.token(TENANT)
    clock.now += 4.9
    assert tokens.token(TENANT) == first
    clock.now += 0.2
    assert tokens.token(TENANT) != first


def test_concurrent_threads_of_one_tenant_share_one_token_request() -> None:
    graph = MockGraph()
    original = graph._token

    def slow_token(request: httpx.Request) -> httpx.Response:
        time.sleep(0.05)  # widen the race window; the assertion is on counts, not time
        return original(request)

    graph._token = slow_token  # type: ignore[method-assign]
    tokens = provider(graph)
    barrier = threading.Barrier(8)

    def worker(_: int) -> str:
        barrier.wait()
        return tokens.token(TENANT)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(worker, range(8)))
    assert len(set(results)) == 1
    assert len(token_posts(graph)) == 1


def test_invalidate_drops_only_the_rejected_token() -> None:
    graph = MockGraph()
    tokens = provider(graph)
    stale = tokens.token(TENANT)
    tokens.invalidate(TENANT, stale)
    fresh = tokens.token(TENANT)
    assert fresh != stale
    tokens.invalidate(TENANT, stale)  # a late 401 from another thread with the old token
    assert tokens.token(TENANT) == fresh
    tokens.invalidate(TENANT)
    assert tokens.token(TENANT) not in (stale, fresh)


def test_secrets_include_the_client_secret_and_issued_tokens() -> None:
    graph = MockGraph()
    tokens = provider(graph)
    issued = tokens.token(TENANT)
    assert set(tokens.secrets()) == {settings().client_secret, issued}
    assert issued not in repr(tokens)


@pytest.mark.parametrize(
    ("body", "aadsts"),
    [
        (
            {"error": "unauthorized_client", "error_description": "AADSTS700016: App not found"},
            "AADSTS700016",
        ),
        ({"error": "invalid_client", "error_codes": [7000222]}, "AADSTS7000222"),
        ({"error": "invalid_grant"}, "invalid_grant"),
        ({}, None),
    ],
)
def test_token_errors_keep_the_aadsts_code(body: dict[str, object], aadsts: str | None) -> None:
    graph = MockGraph()
    graph.token_responses.append(httpx.Response(400, json=body))
    with pytest.raises(GraphError) as info:
        provider(graph).token(TENANT)
    assert info.value.code is ErrorCode.AUTHENTICATION_FAILED
    assert info.value.graph_code == aadsts


def test_a_token_response_without_a_token_is_authentication_failed() -> None:
    graph = MockGraph()
    graph.token_responses.append(httpx.Response(200, json={"token_type": "Bearer"}))
    with pytest.raises(GraphError) as info:
        provider(graph).token(TENANT)
    assert info.value.code is ErrorCode.AUTHENTICATION_FAILED


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        (f"https://login.test/{TENANT}/oauth2/v2.0/token", True),
        (f"https://login.test/{OTHER_TENANT}/oauth2/v2.0/token", True),
        (f"https://login.test/{TENANT.upper()}/oauth2/v2.0/token", True),
        ("https://login.test/contoso.onmicrosoft.com/oauth2/v2.0/token", False),
        (f"https://graph.test/{TENANT}/oauth2/v2.0/token", False),
        (f"http://login.test/{TENANT}/oauth2/v2.0/token", False),
        (f"https://login.test/{TENANT}/oauth2/v2.0/devicecode", False),
        ("https://login.test/a/b/oauth2/v2.0/token", False),
        ("https://login.test//oauth2/v2.0/token", False),
    ],
)
def test_only_the_token_endpoint_of_the_authority_counts_as_token_url(
    url: str, allowed: bool
) -> None:
    assert is_token_url(settings(), httpx.URL(url)) is allowed
