"""The client against the real Graph simulator over loopback: paging, faults, tokens, safety.

Retries use real but tiny delays (`FAST`); the only real waits of a second or two are where
the simulator sends `Retry-After` and the test checks it was honoured. Assertions are on
counts, codes and recorded waits, never on elapsed time.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from inventory_pipelines.core.errors import ErrorCode, GraphError, ValidationError
from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.graph.client import GraphClient, ReadOnlyViolationError
from inventory_pipelines.graph.fetch import PolicyTypeFetch
from inventory_pipelines.graph.page_size import PageSizeMemory
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines.simulator.paging import SETTINGS_CATALOG_TYPES, top_exceeded_message
from inventory_pipelines_tests.simulator_fixtures import simulator_settings

FAST = RetryPolicy(
    max_attempts=4, base_delay=0.01, max_delay=0.05, max_total_wait=10, max_invalid_body_retries=2
)
SIZES = {
    "device_configurations": 2500,  # $top=999: 3 pages
    "settings_catalog_policies": 250,  # $top=999 refused, 100 learned: 3 pages
    "feature_update_profiles": 450,  # $top=200: 3 pages
    "conditional_access_policies": 250,  # identity class, 100 per page: 3 pages
    "mobile_apps": 0,
    "endpoint_security_intents": 30,
}
CATALOG = "settings_catalog_policies"


class RecordingTransport(httpx.BaseTransport):
    """The real HTTP transport, noting every bearer token sent and every token issued."""

    def __init__(self) -> None:
        self._inner = httpx.HTTPTransport()
        self._lock = threading.Lock()
        self.tokens: set[str] = set()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._inner.handle_request(request)
        authorization = request.headers.get("authorization", "")
        found = {authorization.removeprefix("Bearer ")} if authorization else set()
        if request.url.path.endswith("/oauth2/v2.0/token"):
            response.read()
            with contextlib.suppress(ValueError):
                found.add(json.loads(response.content).get("access_token") or "")
        with self._lock:
            self.tokens.update(t for t in found if t)
        return response

    def close(self) -> None:
        self._inner.close()


@pytest.fixture
def tenant(sim: SimulatorServer) -> str:
    tenant_id = str(uuid.uuid4())
    sim.control.configure_tenant(tenant_id, seed=11, default_size=5, sizes=SIZES)
    return tenant_id


@pytest.fixture
def recorder() -> RecordingTransport:
    return RecordingTransport()


def learned_memory() -> PageSizeMemory:
    """Page sizes as a process has them after its first settings catalog page: the request
    counts below are then those of the fault under test, not of learning `$top`."""
    memory = PageSizeMemory()
    for key in SETTINGS_CATALOG_TYPES:
        memory.narrow(get_policy_type(key), 999, top_exceeded_message(100, 999))
    return memory


@pytest.fixture
def client(sim: SimulatorServer, recorder: RecordingTransport) -> Iterator[GraphClient]:
    with GraphClient(
        simulator_settings(sim), retry=FAST, transport=recorder, page_sizes=learned_memory()
    ) as graph_client:
        yield graph_client


def drain(fetch: PolicyTypeFetch) -> list[dict[str, Any]]:
    return [item for page in fetch for item in page.items]


def truth(sim: SimulatorServer, tenant: str, key: str) -> list[str]:
    return sorted(item["id"] for item in sim.control.items(tenant, key))


def requests_for(sim: SimulatorServer, tenant: str, key: str) -> int:
    counts: dict[str, int] = sim.control.counters()["by_tenant_policy_type"].get(tenant, {})
    return counts.get(key, 0)


def fails(client: GraphClient, tenant: str, key: str) -> tuple[GraphError, PolicyTypeFetch]:
    fetch = client.fetch(tenant, key)
    with pytest.raises(GraphError) as info:
        drain(fetch)
    assert fetch.error is info.value and not fetch.completed
    return info.value, fetch


# -- paging -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "pages"),
    [
        ("device_configurations", 3),
        (CATALOG, 3),
        ("feature_update_profiles", 3),
        ("conditional_access_policies", 3),
        ("mobile_apps", 1),
    ],
)
def test_pages_to_the_end_and_matches_ground_truth(
    sim: SimulatorServer, client: GraphClient, tenant: str, key: str, pages: int
) -> None:
    fetch = client.fetch(tenant, key)
    items = drain(fetch)
    assert sorted(i["id"] for i in items) == truth(sim, tenant, key)
    assert len(items) == SIZES[key]
    assert fetch.completed
    assert (fetch.stats.pages, fetch.stats.requests, fetch.stats.retries) == (pages, pages, 0)
    assert fetch.stats.items == len(items)
    assert requests_for(sim, tenant, key) == pages


def test_concurrent_types_share_one_client_and_one_token(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    keys = [k for k in SIZES if k != "mobile_apps"]
    with ThreadPoolExecutor(max_workers=4) as pool:
        fetched = pool.map(lambda k: drain(client.fetch(tenant, k)), keys)
        results = dict(zip(keys, fetched, strict=True))
    for key in keys:
        assert sorted(i["id"] for i in results[key]) == truth(sim, tenant, key)
    counters = sim.control.counters()
    assert counters["token_requests"] == {tenant: 1}
    assert 1 <= counters["max_in_flight"][tenant] <= 4


def test_two_tenants_are_kept_apart(sim: SimulatorServer, client: GraphClient, tenant: str) -> None:
    other = str(uuid.uuid4())
    sim.control.configure_tenant(other, seed=99, sizes={CATALOG: 7})
    mine = drain(client.fetch(tenant, CATALOG))
    theirs = drain(client.fetch(other, CATALOG))
    assert sorted(i["id"] for i in theirs) == truth(sim, other, CATALOG)
    assert not {i["id"] for i in mine} & {i["id"] for i in theirs}
    assert sim.control.counters()["token_requests"] == {tenant: 1, other: 1}


# -- throttling and server errors -----------------------------------------------------------


def test_throttle_retry_after_seconds_is_honoured(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(
        tenant, {"kind": "throttle", "policy_type": CATALOG, "count": 1, "retry_after": 1}
    )
    fetch = client.fetch(tenant, CATALOG)
    assert sorted(i["id"] for i in drain(fetch)) == truth(sim, tenant, CATALOG)
    assert [(w.status, w.retry_after, w.seconds) for w in fetch.stats.waits] == [(429, 1, 1)]
    assert fetch.stats.throttle_wait_seconds == 1.0
    assert requests_for(sim, tenant, CATALOG) == 4


def test_throttle_retry_after_http_date_is_honoured(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(
        tenant,
        {"kind": "throttle", "policy_type": CATALOG, "count": 1, "retry_after": "http-date"},
    )
    fetch = client.fetch(tenant, CATALOG)
    drain(fetch)
    (wait,) = fetch.stats.waits
    assert wait.status == 429 and wait.retry_after is not None
    assert 0 < wait.seconds <= 3 and wait.seconds == wait.retry_after


def test_throttle_without_retry_after_backs_off_with_jitter(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(
        tenant, {"kind": "throttle", "policy_type": CATALOG, "count": 3, "retry_after": None}
    )
    fetch = client.fetch(tenant, CATALOG)
    assert sorted(i["id"] for i in drain(fetch)) == truth(sim, tenant, CATALOG)
    assert [(w.status, w.retry_after) for w in fetch.stats.waits] == [(429, None)] * 3
    assert all(0 <= w.seconds <= FAST.max_delay for w in fetch.stats.waits)
    assert fetch.stats.retries == 3


def test_identity_rate_limit_without_retry_after_is_survived(
    sim: SimulatorServer, tenant: str
) -> None:
    sim.control.set_options(identity_requests_per_second=2)
    patient = RetryPolicy(max_attempts=12, base_delay=0.1, max_delay=0.5, max_total_wait=30)
    # Pacing off: this proves backoff alone survives the limit (pacing has its own test).
    unpaced = {"identity_requests_per_second": 0}
    with GraphClient(simulator_settings(sim), retry=patient, **unpaced) as graph_client:
        fetches = [graph_client.fetch(tenant, "conditional_access_policies") for _ in range(2)]
        for fetch in fetches:
            assert sorted(i["id"] for i in drain(fetch)) == truth(
                sim, tenant, "conditional_access_policies"
            )
    waits = [w for f in fetches for w in f.stats.waits]
    assert waits, "6 quick requests against a 2/s bucket must have been throttled"
    assert {(w.status, w.retry_after) for w in waits} == {(429, None)}


def test_server_errors_are_recovered(sim: SimulatorServer, tenant: str) -> None:
    # One response fault wins per request, in rule order: the first page sees all four.
    sim.control.set_faults(
        tenant,
        [
            {"kind": "status", "policy_type": CATALOG, "status": status, "count": 1}
            for status in (500, 502, 503, 504)
        ],
    )
    policy = RetryPolicy(max_attempts=6, base_delay=0.01, max_delay=0.05)
    with GraphClient(simulator_settings(sim), retry=policy) as graph_client:
        fetch = graph_client.fetch(tenant, CATALOG)
        assert sorted(i["id"] for i in drain(fetch)) == truth(sim, tenant, CATALOG)
    assert [(w.page, w.attempt, w.status) for w in fetch.stats.waits] == [
        (1, 1, 500),
        (1, 2, 502),
        (1, 3, 503),
        (1, 4, 504),
    ]
    assert fetch.stats.throttle_wait_seconds == 0.0


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        ({"kind": "throttle", "retry_after": 0}, ErrorCode.THROTTLED),
        ({"kind": "throttle", "retry_after": None}, ErrorCode.THROTTLED),
        ({"kind": "status", "status": 503}, ErrorCode.UNAVAILABLE),
        ({"kind": "status", "status": 504}, ErrorCode.UNAVAILABLE),
        ({"kind": "status", "status": 500}, ErrorCode.SERVER_ERROR),
        ({"kind": "status", "status": 502}, ErrorCode.SERVER_ERROR),
    ],
)
def test_exhausted_retries_give_the_taxonomy_code(
    sim: SimulatorServer, client: GraphClient, tenant: str, fault: dict[str, Any], code: ErrorCode
) -> None:
    sim.control.add_fault(tenant, {**fault, "policy_type": CATALOG})
    error, fetch = fails(client, tenant, CATALOG)
    assert error.code is code
    assert error.request_id  # Graph's request-id travels with the error
    assert error.graph_code
    assert requests_for(sim, tenant, CATALOG) == FAST.max_attempts
    assert fetch.stats.retries == FAST.max_attempts - 1
    assert fetch.stats.total_wait_seconds <= FAST.max_total_wait
    assert drain(client.fetch(tenant, "endpoint_security_intents"))  # other types unaffected


def test_retry_after_beyond_the_budget_gives_up_without_waiting(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(tenant, {"kind": "throttle", "policy_type": CATALOG, "retry_after": 300})
    error, fetch = fails(client, tenant, CATALOG)
    assert error.code is ErrorCode.THROTTLED
    assert "Retry-After 300s exceeds" in error.message
    assert fetch.stats.waits == []
    assert requests_for(sim, tenant, CATALOG) == 1


def test_intune_json_messages_are_unwrapped(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(
        tenant,
        {"kind": "status", "policy_type": CATALOG, "status": 500, "intune_json_message": True},
    )
    error, _ = fails(client, tenant, CATALOG)
    assert error.code is ErrorCode.SERVER_ERROR
    assert "Activity ID" in error.message
    assert '"_version"' not in error.message and "RetryAfter" not in error.message


# -- final statuses ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [(403, ErrorCode.FORBIDDEN), (404, ErrorCode.NOT_FOUND), (400, ErrorCode.BAD_REQUEST)],
)
def test_final_statuses_fail_one_type_only(
    sim: SimulatorServer,
    client: GraphClient,
    tenant: str,
    status: int,
    code: ErrorCode,
) -> None:
    sim.control.add_fault(tenant, {"kind": "status", "policy_type": CATALOG, "status": status})
    error, fetch = fails(client, tenant, CATALOG)
    assert (error.code, error.status) == (code, status)
    assert fetch.stats.waits == []
    assert requests_for(sim, tenant, CATALOG) == 1
    other = client.fetch(tenant, "device_configurations")
    assert sorted(i["id"] for i in drain(other)) == truth(sim, tenant, "device_configurations")


def test_forbidden_names_the_missing_permission(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(tenant, {"kind": "status", "policy_type": CATALOG, "status": 403})
    error, _ = fails(client, tenant, CATALOG)
    assert error.graph_code == "Forbidden"
    assert "DeviceManagementConfiguration.Read.All" in error.message


# -- tokens -----------------------------------------------------------------------------------


def test_revoked_token_mid_run_is_refreshed_once_and_the_fetch_continues(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(
        tenant, {"kind": "revoke_tokens", "policy_type": CATALOG, "skip": 1, "count": 1}
    )
    fetch = client.fetch(tenant, CATALOG)
    assert sorted(i["id"] for i in drain(fetch)) == truth(sim, tenant, CATALOG)
    assert fetch.stats.token_refreshes == 1
    counters = sim.control.counters()
    assert counters["token_requests"] == {tenant: 2}
    assert counters["by_status"].get("401") == 1


def test_a_401_that_persists_is_unauthorized(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(tenant, {"kind": "status", "policy_type": CATALOG, "status": 401})
    error, _ = fails(client, tenant, CATALOG)
    assert error.code is ErrorCode.UNAUTHORIZED
    assert error.graph_code == "InvalidAuthenticationToken"
    assert requests_for(sim, tenant, CATALOG) == 2
    assert sim.control.counters()["token_requests"] == {tenant: 2}


@pytest.mark.parametrize(
    ("fault", "graph_code"),
    [
        ({"kind": "token_error"}, "AADSTS7000215"),
        ({"kind": "token_error", "aadsts": 7000222}, "AADSTS7000222"),
        ({"kind": "token_error", "aadsts": 65001}, "AADSTS65001"),
        ({"kind": "token_error", "aadsts": 700016}, "AADSTS700016"),
    ],
)
def test_token_errors_are_authentication_failed(
    sim: SimulatorServer,
    client: GraphClient,
    tenant: str,
    fault: dict[str, Any],
    graph_code: str,
) -> None:
    sim.control.add_fault(tenant, fault)
    error, _ = fails(client, tenant, CATALOG)
    assert error.code is ErrorCode.AUTHENTICATION_FAILED
    assert error.graph_code == graph_code
    assert f"{graph_code}:" in error.message
    assert error.request_id
    assert sim.client_secret not in str(error) + repr(error) + json.dumps(error.context())
    assert sim.control.counters()["total"] == 0  # nothing was sent to Graph


@pytest.mark.parametrize(
    ("overrides", "graph_code"),
    [
        ({"client_secret": "wrong-secret-value-123"}, "AADSTS7000215"),
        ({"client_id": "00000000-0000-0000-0000-000000000001"}, "AADSTS700016"),
    ],
)
def test_bad_credentials_are_authentication_failed(
    sim: SimulatorServer, tenant: str, overrides: dict[str, str], graph_code: str
) -> None:
    with GraphClient(simulator_settings(sim, **overrides), retry=FAST) as graph_client:
        error, _ = fails(graph_client, tenant, CATALOG)
    assert (error.code, error.graph_code) == (ErrorCode.AUTHENTICATION_FAILED, graph_code)
    assert "wrong-secret-value-123" not in str(error)


def test_a_domain_name_is_refused_before_anything_is_sent(
    sim: SimulatorServer, client: GraphClient
) -> None:
    """Tenants are named by GUID (`core/tenant_ids.py`), at the authority as in the store."""
    with pytest.raises(ValidationError, match="not a GUID"):
        client.fetch("contoso.onmicrosoft.com", CATALOG)
    with pytest.raises(ValidationError, match="not a GUID"):
        client.tokens.token("contoso.onmicrosoft.com")
    counters = sim.control.counters()
    assert counters["total"] == 0 and "contoso.onmicrosoft.com" not in counters["token_requests"]


# -- bodies and connections -------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["malformed_json", "truncated_body"])
def test_a_broken_body_is_retried_and_recovered(
    sim: SimulatorServer, client: GraphClient, tenant: str, kind: str
) -> None:
    sim.control.add_fault(tenant, {"kind": kind, "policy_type": CATALOG, "count": 1, "skip": 1})
    fetch = client.fetch(tenant, CATALOG)
    assert sorted(i["id"] for i in drain(fetch)) == truth(sim, tenant, CATALOG)
    assert fetch.stats.retries == 1


@pytest.mark.parametrize("kind", ["malformed_json", "truncated_body"])
def test_broken_bodies_that_persist_are_invalid_response(
    sim: SimulatorServer, client: GraphClient, tenant: str, kind: str
) -> None:
    sim.control.add_fault(tenant, {"kind": kind, "policy_type": CATALOG})
    error, _ = fails(client, tenant, CATALOG)
    assert error.code is ErrorCode.INVALID_RESPONSE
    assert requests_for(sim, tenant, CATALOG) == 1 + FAST.max_invalid_body_retries


def test_a_reset_connection_is_retried_and_recovered(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(
        tenant, {"kind": "reset_connection", "policy_type": CATALOG, "count": 2, "skip": 1}
    )
    fetch = client.fetch(tenant, CATALOG)
    assert sorted(i["id"] for i in drain(fetch)) == truth(sim, tenant, CATALOG)
    assert fetch.stats.retries == 2
    assert all(w.status is None for w in fetch.stats.waits)


def test_connections_that_keep_resetting_are_a_network_error(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(tenant, {"kind": "reset_connection", "policy_type": CATALOG})
    error, _ = fails(client, tenant, CATALOG)
    assert error.code is ErrorCode.NETWORK_ERROR
    assert requests_for(sim, tenant, CATALOG) == FAST.max_attempts


def test_a_slow_response_is_a_timeout(sim: SimulatorServer, tenant: str) -> None:
    sim.control.add_fault(tenant, {"kind": "latency", "policy_type": CATALOG, "ms": 2000})
    quick = RetryPolicy(max_attempts=2, base_delay=0.01, max_delay=0.01)
    with GraphClient(simulator_settings(sim, read_timeout=0.2), retry=quick) as graph_client:
        error, _ = fails(graph_client, tenant, CATALOG)
    assert error.code is ErrorCode.TIMEOUT


# -- listing quirks ---------------------------------------------------------------------------


def test_duplicates_across_pages_are_counted_once(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(tenant, {"kind": "duplicate_across_pages", "policy_type": CATALOG})
    fetch = client.fetch(tenant, CATALOG)
    items = drain(fetch)
    assert sorted(i["id"] for i in items) == truth(sim, tenant, CATALOG)
    assert fetch.stats.duplicates_dropped == fetch.stats.pages - 1 == 2


def test_empty_pages_with_next_links_are_followed(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(tenant, {"kind": "empty_pages", "policy_type": CATALOG, "pages": 3})
    fetch = client.fetch(tenant, CATALOG)
    pages = list(fetch)
    assert sorted(i["id"] for p in pages for i in p.items) == truth(sim, tenant, CATALOG)
    assert [len(p.items) for p in pages][:3] == [0, 0, 0]
    assert fetch.stats.pages == 3 + 3


def test_a_repeating_next_link_fails_fast(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(tenant, {"kind": "repeat_next_link", "policy_type": CATALOG})
    error, fetch = fails(client, tenant, CATALOG)
    assert error.code is ErrorCode.INVALID_RESPONSE
    assert fetch.stats.pages == 1
    assert requests_for(sim, tenant, CATALOG) == 1


def test_items_without_id_are_counted_and_the_rest_kept(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(tenant, {"kind": "missing_ids", "policy_type": CATALOG, "items": 3})
    fetch = client.fetch(tenant, CATALOG)
    items = drain(fetch)
    assert sorted(i["id"] for i in items) == truth(sim, tenant, CATALOG)
    assert fetch.stats.invalid_items == 3
    assert fetch.completed


def test_items_added_between_runs_are_seen_by_the_next_fetch(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    before = {i["id"] for i in drain(client.fetch(tenant, CATALOG))}
    added = sim.control.add_items(tenant, CATALOG, 4)
    after = {i["id"] for i in drain(client.fetch(tenant, CATALOG))}
    assert after == before | set(added)


# -- read-only and redaction ------------------------------------------------------------------


def test_only_gets_reach_graph_and_only_token_posts_reach_the_authority(
    sim: SimulatorServer, client: GraphClient, tenant: str
) -> None:
    sim.control.add_fault(tenant, {"kind": "throttle", "count": 2, "retry_after": 0})
    for key in SIZES:
        drain(client.fetch(tenant, key))
    url = f"{sim.base_url}{get_policy_type(CATALOG).url_path()}"
    for method in ("POST", "PATCH", "PUT", "DELETE"):
        with pytest.raises(ReadOnlyViolationError):
            client._request(method, url, headers={})
        with pytest.raises(ReadOnlyViolationError):
            client._http.request(method, url)
    counters = sim.control.counters()
    assert set(counters["by_method"]) == {"GET"}
    assert counters["by_method"]["GET"] == counters["total"] > 0
    assert counters["token_requests"] == {tenant: 1}


def test_no_secret_or_token_on_any_error_path(
    sim: SimulatorServer,
    client: GraphClient,
    recorder: RecordingTransport,
    tenant: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    scenarios: list[dict[str, Any]] = [
        {"kind": "throttle", "retry_after": 0},
        {"kind": "throttle", "retry_after": 600},
        {"kind": "status", "status": 403},
        {"kind": "status", "status": 401},
        {"kind": "status", "status": 500, "intune_json_message": True},
        {"kind": "malformed_json"},
        {"kind": "truncated_body"},
        {"kind": "reset_connection"},
        {"kind": "repeat_next_link"},
        {"kind": "revoke_tokens", "skip": 1, "count": 1},
        {"kind": "token_error"},
    ]
    texts: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for fault in scenarios:
            sim.control.clear_faults(tenant)
            sim.control.add_fault(tenant, {**fault, "policy_type": None})
            client.tokens.invalidate(tenant)  # new tokens for every scenario
            fetch = client.fetch(tenant, CATALOG)
            try:
                drain(fetch)
            except GraphError as exc:
                texts += [str(exc), repr(exc), json.dumps(exc.context())]
            texts += [repr(fetch), repr(fetch.stats), repr(client), repr(client.tokens)]
    texts.append(caplog.text)
    texts += [json.dumps({k: str(v) for k, v in vars(r).items()}) for r in caplog.records]
    exposed = "\n".join(texts)
    assert len(recorder.tokens) >= 5
    assert sim.client_secret not in exposed
    for token in recorder.tokens:
        assert token not in exposed


# -- page size --------------------------------------------------------------------------------


def test_the_settings_catalog_limit_is_learned_on_the_first_page(
    sim: SimulatorServer, recorder: RecordingTransport, tenant: str
) -> None:
    memory = PageSizeMemory()
    with GraphClient(
        simulator_settings(sim), retry=FAST, transport=recorder, page_sizes=memory
    ) as graph_client:
        first = graph_client.fetch(tenant, CATALOG)
        assert first.top == 999
        assert sorted(i["id"] for i in drain(first)) == truth(sim, tenant, CATALOG)
        assert (first.top, first.stats.pages, first.stats.requests) == (100, 3, 4)
        assert first.stats.waits == []
        second = graph_client.fetch(tenant, CATALOG)
        assert second.top == 100
        drain(second)
        assert second.stats.requests == 3
    assert requests_for(sim, tenant, CATALOG) == 7
    assert sim.control.counters()["by_status"]["400"] == 1
    assert memory.learned() == {CATALOG: 100}
