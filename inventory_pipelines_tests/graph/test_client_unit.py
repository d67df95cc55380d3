"""The client's paging and retry rules against a scripted `httpx.MockTransport` Graph.

Each test scripts exact responses; sleeps are recorded, never taken.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from inventory_pipelines.core.errors import ErrorCode, GraphError, ValidationError
from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.graph.client import USER_AGENT, ReadOnlyViolationError
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines_tests.graph.mock_graph import (
    BASE,
    TENANT,
    MockGraph,
    SleepRecorder,
    graph_error,
    items,
    make_client,
    page,
)

DC = "/beta/deviceManagement/deviceConfigurations"
DEFAULT_TOP = get_policy_type("device_configurations").max_top
DC_FIRST = f"{DC}?$top={DEFAULT_TOP}"


def fetch_all(graph: MockGraph, key: str = "device_configurations", **kwargs: object) -> list:
    with make_client(graph, **kwargs) as client:  # type: ignore[arg-type]
        return list(client.fetch(TENANT, key))


# -- paging ---------------------------------------------------------------------------------


def test_follows_next_links_to_the_end_and_sends_top() -> None:
    graph = (
        MockGraph()
        .on(DC_FIRST, page(items("a", 3), f"{BASE}{DC}?$top={DEFAULT_TOP}&$skiptoken=p2"))
        .on(f"{DC}?$top={DEFAULT_TOP}&$skiptoken=p2", page(items("b", 2)))
    )
    with make_client(graph) as client:
        fetch = client.fetch(TENANT, "device_configurations")
        pages = list(fetch)
    assert [p.number for p in pages] == [1, 2]
    assert [len(p.items) for p in pages] == [3, 2]
    assert fetch.completed and fetch.error is None
    assert (fetch.stats.pages, fetch.stats.requests, fetch.stats.items) == (2, 2, 5)
    sent = [str(r.url) for r in graph.graph_requests()]
    assert sent == [
        f"{BASE}{DC}?$top={DEFAULT_TOP}",
        f"{BASE}{DC}?$top={DEFAULT_TOP}&$skiptoken=p2",
    ]


@pytest.mark.parametrize(
    ("key", "expected_query"),
    [
        ("settings_catalog_policies", "$top=999"),
        ("feature_update_profiles", "$top=200"),
        ("conditional_access_policies", "$top=999"),
        ("mobile_apps", "$top=999"),
    ],
)
def test_top_starts_at_the_largest_size_the_registry_believes_in(
    key: str, expected_query: str
) -> None:
    ptype = get_policy_type(key)
    graph = MockGraph().on(ptype.url_path(), page(items("x", 1)))
    fetch_all(graph, key)
    (request,) = graph.graph_requests()
    assert request.url.path == ptype.url_path()
    assert request.url.query.decode() == expected_query


def test_requests_carry_bearer_user_agent_and_accept() -> None:
    graph = MockGraph().on(DC, page(items("a", 1)))
    fetch_all(graph)
    (request,) = graph.graph_requests()
    assert request.headers["Authorization"] == f"Bearer {graph.tokens_issued[0]}"
    assert request.headers["User-Agent"] == USER_AGENT
    assert USER_AGENT.startswith("inventory-pipelines/")
    assert request.headers["Accept"] == "application/json"


def test_empty_pages_with_next_links_are_followed() -> None:
    graph = MockGraph().on(DC_FIRST, page([], f"{BASE}{DC}?s=1"))
    graph.on(f"{DC}?s=1", page([], f"{BASE}{DC}?s=2")).on(f"{DC}?s=2", page(items("a", 2)))
    pages = fetch_all(graph)
    assert [len(p.items) for p in pages] == [0, 0, 2]


def test_duplicates_across_and_within_pages_are_counted_once() -> None:
    graph = MockGraph().on(DC_FIRST, page(items("a", 3) + items("a", 1), f"{BASE}{DC}?s=1"))
    graph.on(f"{DC}?s=1", page(items("a", 4)))
    with make_client(graph) as client:
        fetch = client.fetch(TENANT, "device_configurations")
        pages = list(fetch)
    assert [[i["id"] for i in p.items] for p in pages] == [["a-0", "a-1", "a-2"], ["a-3"]]
    assert [p.duplicates_dropped for p in pages] == [1, 3]
    assert (fetch.stats.items, fetch.stats.duplicates_dropped) == (4, 4)


def test_items_without_a_usable_id_are_counted_and_the_rest_kept() -> None:
    value = [
        {"id": "ok-1"},
        {"displayName": "no id"},
        {"id": ""},
        {"id": 7},
        "x",
        None,
        {"id": " "},
    ]
    graph = MockGraph().on(DC_FIRST, page([*value, {"id": "ok-2"}]))
    with make_client(graph) as client:
        fetch = client.fetch(TENANT, "device_configurations")
        (only,) = list(fetch)
    assert [i["id"] for i in only.items] == ["ok-1", "ok-2"]
    assert only.invalid_items == 6
    assert fetch.stats.invalid_items == 6


def test_unknown_fields_nulls_and_name_instead_of_display_name_pass_through() -> None:
    item = {"id": "a", "name": "Catalog", "displayName": None, "futureField": {"x": [1]}}
    graph = MockGraph().on("/beta/deviceManagement/configurationPolicies", page([item]))
    (only,) = fetch_all(graph, "settings_catalog_policies")
    assert only.items == [item]


def test_a_repeating_next_link_stops_the_fetch() -> None:
    graph = MockGraph().on(DC_FIRST, page(items("a", 1), f"{BASE}{DC}?s=1"))
    graph.on(f"{DC}?s=1", page(items("b", 1), f"{BASE}{DC}?s=1"))
    with make_client(graph) as client:
        fetch = client.fetch(TENANT, "device_configurations")
        with pytest.raises(GraphError) as info:
            list(fetch)
    assert info.value.code is ErrorCode.INVALID_RESPONSE
    assert "repeats" in info.value.message
    assert fetch.error is info.value and not fetch.completed
    assert len(graph.graph_requests()) == 2


def test_a_next_link_back_to_the_first_page_is_a_loop() -> None:
    graph = MockGraph().on(DC_FIRST, page(items("a", 1), f"{BASE}{DC_FIRST}"))
    with pytest.raises(GraphError, match="repeats"):
        fetch_all(graph)
    assert len(graph.graph_requests()) == 1


def test_a_page_cap_bounds_an_endless_chain_of_new_links() -> None:
    counter = iter(range(10_000))

    def endless(request: httpx.Request) -> httpx.Response:
        return page([], f"{BASE}{DC}?s={next(counter)}")

    graph = MockGraph().on(DC, endless)
    with pytest.raises(GraphError, match="page cap") as info:
        fetch_all(graph, max_pages=5)
    assert info.value.code is ErrorCode.INVALID_RESPONSE
    assert len(graph.graph_requests()) == 5


def test_a_next_link_to_another_host_is_refused_and_gets_no_token() -> None:
    graph = MockGraph().on(DC_FIRST, page(items("a", 1), "https://evil.test/steal?x=1"))
    with pytest.raises(GraphError, match=r"evil\.test") as info:
        fetch_all(graph)
    assert info.value.code is ErrorCode.INVALID_RESPONSE
    assert all(r.url.host != "evil.test" for r in graph.requests)


def test_a_fetch_is_lazy_and_can_be_iterated_once() -> None:
    graph = MockGraph().on(DC, page(items("a", 1)))
    with make_client(graph) as client:
        fetch = client.fetch(TENANT, "device_configurations")
        assert graph.requests == []
        assert len(list(fetch.iter_items())) == 1
        with pytest.raises(RuntimeError):
            iter(fetch)


@pytest.mark.parametrize(
    "tenant",
    ["", "../other", "a/b", "t?x=1", "tenant id", "contoso.onmicrosoft.com", "{" + TENANT + "}"],
)
def test_tenant_ids_other_than_a_guid_are_rejected_before_any_request(tenant: str) -> None:
    graph = MockGraph()
    with make_client(graph) as client, pytest.raises(ValidationError, match="not a GUID"):
        client.fetch(tenant, "device_configurations")
    assert graph.requests == []


def test_a_tenant_guid_is_used_lower_case() -> None:
    graph = MockGraph().on(DC, page(items("a", 1)))
    with make_client(graph) as client:
        fetch = client.fetch(f" {TENANT.upper()} ", "device_configurations")
        assert fetch.tenant_id == TENANT
        assert len(list(fetch.iter_items())) == 1
    assert {r.url.path.split("/")[1] for r in graph.requests if r.method == "POST"} == {TENANT}


# -- status handling ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (400, ErrorCode.BAD_REQUEST),
        (403, ErrorCode.FORBIDDEN),
        (404, ErrorCode.NOT_FOUND),
        (405, ErrorCode.BAD_REQUEST),
        (501, ErrorCode.SERVER_ERROR),
    ],
)
def test_final_statuses_are_not_retried(status: int, code: ErrorCode) -> None:
    sleep = SleepRecorder()
    graph = MockGraph().on(DC, graph_error(status, "SomeCode", "nope", request_id="rid-9"))
    with pytest.raises(GraphError) as info:
        fetch_all(graph, sleep=sleep)
    error = info.value
    assert (error.code, error.status, error.graph_code, error.request_id) == (
        code,
        status,
        "SomeCode",
        "rid-9",
    )
    assert "nope" in error.message
    assert len(graph.graph_requests()) == 1
    assert sleep.calls == []


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (429, ErrorCode.THROTTLED),
        (500, ErrorCode.SERVER_ERROR),
        (502, ErrorCode.SERVER_ERROR),
        (503, ErrorCode.UNAVAILABLE),
        (504, ErrorCode.UNAVAILABLE),
    ],
)
def test_exhausted_retries_map_to_the_taxonomy(status: int, code: ErrorCode) -> None:
    sleep = SleepRecorder()
    graph = MockGraph().on(DC, graph_error(status, "Busy", "try later"))
    with pytest.raises(GraphError) as info:
        fetch_all(graph, sleep=sleep, retry=RetryPolicy(max_attempts=4))
    assert info.value.code is code
    assert info.value.status == status
    assert len(graph.graph_requests()) == 4
    assert len(sleep.calls) == 3


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_transient_statuses_recover(status: int) -> None:
    graph = MockGraph().on(DC, graph_error(status, "Busy", "later"), page(items("a", 2)))
    pages = fetch_all(graph)
    assert len(pages[0].items) == 2


def test_retry_after_seconds_is_honoured_and_recorded() -> None:
    sleep = SleepRecorder()
    graph = MockGraph().on(
        DC,
        graph_error(429, "TooManyRequests", "slow", headers={"Retry-After": "7"}),
        graph_error(503, "ServiceUnavailable", "busy", headers={"Retry-After": "2"}),
        page(items("a", 1)),
    )
    with make_client(graph, sleep=sleep) as client:
        fetch = client.fetch(TENANT, "device_configurations")
        list(fetch)
    assert sleep.calls == [7.0, 2.0]
    assert fetch.stats.throttle_wait_seconds == 7.0
    assert fetch.stats.total_wait_seconds == 9.0
    assert fetch.stats.retries == 2 and fetch.stats.requests == 3
    assert [(w.status, w.retry_after, w.attempt) for w in fetch.stats.waits] == [
        (429, 7.0, 1),
        (503, 2.0, 2),
    ]


def test_retry_after_http_date_is_honoured() -> None:
    sleep = SleepRecorder()
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=30), usegmt=True)
    graph = MockGraph().on(
        DC, graph_error(429, "TooManyRequests", "slow", headers={"Retry-After": when}), page([])
    )
    fetch_all(graph, sleep=sleep)
    (waited,) = sleep.calls
    assert 25 <= waited <= 30


def test_without_retry_after_backoff_is_exponential_full_jitter() -> None:
    sleep = SleepRecorder()
    graph = MockGraph().on(DC, graph_error(429, "TooManyRequests", "slow"))
    policy = RetryPolicy(max_attempts=5, base_delay=1, max_delay=5, max_total_wait=100)
    with pytest.raises(GraphError):
        fetch_all(graph, sleep=sleep, retry=policy, random=lambda: 0.5)
    assert sleep.calls == [0.5, 1.0, 2.0, 2.5]


def test_retry_after_beyond_the_wait_budget_gives_up_at_once() -> None:
    sleep = SleepRecorder()
    graph = MockGraph().on(
        DC, graph_error(429, "TooManyRequests", "slow", headers={"Retry-After": "600"})
    )
    with pytest.raises(GraphError) as info:
        fetch_all(graph, sleep=sleep, retry=RetryPolicy(max_total_wait=120))
    assert info.value.code is ErrorCode.THROTTLED
    assert "Retry-After" in info.value.message
    assert sleep.calls == []
    assert len(graph.graph_requests()) == 1


def test_total_wait_is_bounded_across_retries() -> None:
    sleep = SleepRecorder()
    graph = MockGraph().on(
        DC, graph_error(503, "ServiceUnavailable", "busy", headers={"Retry-After": "40"})
    )
    with pytest.raises(GraphError) as info:
        fetch_all(graph, sleep=sleep, retry=RetryPolicy(max_attempts=10, max_total_wait=100))
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert sleep.calls == [40.0, 40.0]


def test_intune_retry_after_in_the_message_is_used_without_a_header() -> None:
    sleep = SleepRecorder()
    inner = json.dumps({"Message": "throttled - Activity ID: x", "RetryAfter": 3})
    graph = MockGraph().on(DC, graph_error(429, "TooManyRequests", inner), page([]))
    fetch_all(graph, sleep=sleep)
    assert sleep.calls == [3.0]


def test_intune_json_message_is_unwrapped_in_the_error() -> None:
    inner = json.dumps(
        {"_version": 3, "Message": "No permission - Operation ID: op-1", "RetryAfter": None}
    )
    graph = MockGraph().on(DC, graph_error(403, "Forbidden", inner))
    with pytest.raises(GraphError) as info:
        fetch_all(graph)
    assert "No permission - Operation ID: op-1" in info.value.message
    assert '"_version"' not in info.value.message


def test_request_id_header_is_kept() -> None:
    response = httpx.Response(404, text="gone", headers={"request-id": "hdr-rid"})
    graph = MockGraph().on(DC, response)
    with pytest.raises(GraphError) as info:
        fetch_all(graph)
    assert info.value.request_id == "hdr-rid"
    assert info.value.context()["request_id"] == "hdr-rid"


def test_every_wait_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    graph = MockGraph().on(
        DC, graph_error(429, "TooManyRequests", "slow", headers={"Retry-After": "1"}), page([])
    )
    with caplog.at_level(logging.INFO, logger="inventory_pipelines.graph"):
        fetch_all(graph)
    (record,) = [r for r in caplog.records if r.name == "inventory_pipelines.graph"]
    assert record.levelno == logging.INFO
    text = record.getMessage()
    for expected in ("HTTP 429", "device_configurations", TENANT, "attempt 1", "1.000s"):
        assert expected in text
    assert record.graph_seconds == 1.0  # type: ignore[attr-defined]


# -- bodies and transport errors --------------------------------------------------------------


def test_malformed_bodies_are_retried_then_invalid_response() -> None:
    sleep = SleepRecorder()
    bad = httpx.Response(200, content=b'{"value": [{"id": "a"')
    graph = MockGraph().on(DC, bad)
    with pytest.raises(GraphError) as info:
        fetch_all(graph, sleep=sleep, retry=RetryPolicy(max_invalid_body_retries=2))
    assert info.value.code is ErrorCode.INVALID_RESPONSE
    assert len(graph.graph_requests()) == 3
    assert len(sleep.calls) == 2


def test_a_body_without_value_is_invalid() -> None:
    graph = MockGraph().on(DC, httpx.Response(200, json={"items": []}))
    with pytest.raises(GraphError, match="value") as info:
        fetch_all(graph)
    assert info.value.code is ErrorCode.INVALID_RESPONSE


def test_one_malformed_body_is_recovered() -> None:
    graph = MockGraph().on(DC, httpx.Response(200, content=b"<html>"), page(items("a", 1)))
    assert len(fetch_all(graph)[0].items) == 1


def test_truncated_bodies_are_retried_then_invalid_response() -> None:
    full = page(items("a", 5)).content
    graph = MockGraph().on(DC, httpx.Response(200, content=full[: len(full) * 2 // 3]))
    with pytest.raises(GraphError) as info:
        fetch_all(graph, retry=RetryPolicy(max_invalid_body_retries=1))
    assert info.value.code is ErrorCode.INVALID_RESPONSE
    assert "not valid JSON" in info.value.message
    assert len(graph.graph_requests()) == 2


class _BrokenStream(httpx.SyncByteStream):
    def __iter__(self) -> Iterator[bytes]:
        yield b'{"value": [{"id": "a"}, '
        raise httpx.RemoteProtocolError("peer closed connection without sending complete body")


def test_a_connection_lost_mid_body_is_a_network_error() -> None:
    graph = MockGraph().on(DC, lambda r: httpx.Response(200, stream=_BrokenStream()))
    with pytest.raises(GraphError) as info:
        fetch_all(graph, retry=RetryPolicy(max_attempts=3, max_invalid_body_retries=0))
    assert info.value.code is ErrorCode.NETWORK_ERROR
    assert len(graph.graph_requests()) == 3


def _raise(exc: Exception) -> httpx.Response:
    raise exc


def test_the_token_endpoint_and_graph_are_retried_by_the_same_rules() -> None:
    """One loop and one budget decide for both: the same answers, the same waits."""

    def answers() -> list[httpx.Response]:
        return [
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(503),  # no Retry-After: backoff, full jitter of 1s with random 0.5
            httpx.Response(504, headers={"Retry-After": "0"}),
        ]

    token_side = MockGraph().on(DC, page([]))
    token_side.token_responses.extend(answers())
    token_sleep = SleepRecorder()
    fetch_all(token_side, sleep=token_sleep, random=lambda: 0.5)

    graph_side = MockGraph().on(DC_FIRST, *answers(), page([]))
    graph_sleep = SleepRecorder()
    fetch_all(graph_side, sleep=graph_sleep, random=lambda: 0.5)

    assert token_sleep.calls == graph_sleep.calls == [2.0, 0.5, 0.0]


def test_a_token_retry_after_beyond_the_budget_gives_up_and_says_so() -> None:
    graph = MockGraph().on(DC, page([]))
    graph.token_responses.append(httpx.Response(429, headers={"Retry-After": "600"}))
    sleep = SleepRecorder()
    with pytest.raises(GraphError) as info:
        fetch_all(graph, sleep=sleep, retry=RetryPolicy(max_total_wait=30))
    assert info.value.code is ErrorCode.THROTTLED
    assert "token request for tenant" in info.value.message
    assert "Retry-After 600s exceeds the remaining wait budget of 30.0s" in info.value.message
    assert sleep.calls == [] and graph.graph_requests() == []


def test_token_retries_are_bounded_in_attempts() -> None:
    graph = MockGraph().on(DC, page([]))
    graph.token_responses.extend([httpx.Response(503)] * 5)
    with pytest.raises(GraphError) as info:
        fetch_all(graph, sleep=SleepRecorder(), retry=RetryPolicy(max_attempts=3))
    assert info.value.code is ErrorCode.UNAVAILABLE
    assert "failed after 3 attempt(s): HTTP 503" in info.value.message
    assert len([r for r in graph.requests if r.method == "POST"]) == 3


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ConnectError("refused"), ErrorCode.NETWORK_ERROR),
        (httpx.ReadError("reset by peer"), ErrorCode.NETWORK_ERROR),
        (httpx.RemoteProtocolError("disconnected"), ErrorCode.NETWORK_ERROR),
        (httpx.ReadTimeout("slow"), ErrorCode.TIMEOUT),
        (httpx.ConnectTimeout("slow"), ErrorCode.TIMEOUT),
    ],
)
def test_transport_errors_are_retried_then_mapped(exc: Exception, code: ErrorCode) -> None:
    graph = MockGraph().on(DC, lambda r: _raise(exc))
    with pytest.raises(GraphError) as info:
        fetch_all(graph, retry=RetryPolicy(max_attempts=3))
    assert info.value.code is code
    assert len(graph.graph_requests()) == 3


def test_a_connection_reset_mid_fetch_is_recovered() -> None:
    graph = MockGraph().on(DC_FIRST, page(items("a", 1), f"{BASE}{DC}?s=1"))
    graph.on(f"{DC}?s=1", lambda r: _raise(httpx.ReadError("reset")), page(items("b", 1)))
    pages = fetch_all(graph)
    assert [i["id"] for p in pages for i in p.items] == ["a-0", "b-0"]


# -- tokens -----------------------------------------------------------------------------------


def test_one_token_is_reused_across_fetches_and_pages() -> None:
    graph = MockGraph().on(DC_FIRST, page(items("a", 1), f"{BASE}{DC}?s=1"))
    graph.on(f"{DC}?s=1", page(items("b", 1)))
    graph.on("/beta/deviceManagement/intents", page([]))
    with make_client(graph) as client:
        list(client.fetch(TENANT, "device_configurations"))
        list(client.fetch(TENANT, "endpoint_security_intents"))
    assert len(graph.tokens_issued) == 1


def test_token_request_is_the_documented_client_credentials_form() -> None:
    graph = MockGraph().on(DC, page([]))
    fetch_all(graph)
    (token_request,) = [r for r in graph.requests if r.method == "POST"]
    assert str(token_request.url) == f"https://login.test/{TENANT}/oauth2/v2.0/token"
    form = dict(httpx.QueryParams(token_request.content.decode()))
    assert form.pop("client_info") == "1"  # msal always asks for it; Entra ignores it here
    assert form == {
        "client_id": "client-id-0001",
        "client_secret": "s3cr3t-Value~With.Specials_0123",
        "scope": "https://graph.microsoft.com/.default",
        "grant_type": "client_credentials",
    }


def test_401_refreshes_the_token_once_and_continues() -> None:
    graph = MockGraph().on(
        DC, graph_error(401, "InvalidAuthenticationToken", "expired"), page(items("a", 1))
    )
    with make_client(graph) as client:
        fetch = client.fetch(TENANT, "device_configurations")
        list(fetch)
    first, second = graph.graph_requests()
    assert first.headers["Authorization"] != second.headers["Authorization"]
    assert len(graph.tokens_issued) == 2
    assert fetch.stats.token_refreshes == 1


def test_a_second_401_is_unauthorized() -> None:
    graph = MockGraph().on(DC, graph_error(401, "InvalidAuthenticationToken", "no"))
    with pytest.raises(GraphError) as info:
        fetch_all(graph)
    assert info.value.code is ErrorCode.UNAUTHORIZED
    assert info.value.graph_code == "InvalidAuthenticationToken"
    assert len(graph.graph_requests()) == 2
    assert len(graph.tokens_issued) == 2


def test_token_rejection_is_authentication_failed_with_the_aadsts_code() -> None:
    graph = MockGraph().on(DC, page([]))
    graph.token_responses.append(
        httpx.Response(
            401,
            json={
                "error": "invalid_client",
                "error_description": "AADSTS7000215: Invalid client secret provided.\r\n"
                "Trace ID: t\r\nCorrelation ID: c",
                "error_codes": [7000215],
                "trace_id": "trace-1",
                "correlation_id": "corr-1",
            },
        )
    )
    with pytest.raises(GraphError) as info:
        fetch_all(graph)
    error = info.value
    assert error.code is ErrorCode.AUTHENTICATION_FAILED
    assert error.graph_code == "AADSTS7000215"
    assert error.status == 401
    assert error.request_id == "trace-1"
    assert "AADSTS7000215: Invalid client secret provided." in error.message
    assert graph.graph_requests() == []


def test_transient_token_endpoint_failures_are_retried() -> None:
    graph = MockGraph().on(DC, page([]))
    graph.token_responses.append(httpx.Response(503, headers={"Retry-After": "1"}))
    sleep = SleepRecorder()
    fetch_all(graph, sleep=sleep)
    assert sleep.calls == [1.0]
    assert len(graph.tokens_issued) == 1


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (httpx.ConnectError("refused"), ErrorCode.NETWORK_ERROR),
        (httpx.ReadTimeout("slow"), ErrorCode.TIMEOUT),
    ],
)
def test_unreachable_authority_is_a_network_error_or_timeout(
    exc: Exception, code: ErrorCode
) -> None:
    graph = MockGraph().on(DC, page([]))
    graph.token_responses.extend([lambda r: _raise(exc)] * 2)
    with pytest.raises(GraphError) as info:
        fetch_all(graph, retry=RetryPolicy(max_attempts=2))
    assert info.value.code is code
    assert graph.graph_requests() == []


# -- read-only guard --------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE", "get", "HEAD"])
def test_request_refuses_everything_but_get(method: str) -> None:
    graph = MockGraph()
    with make_client(graph) as client, pytest.raises(ReadOnlyViolationError):
        client._request(method, f"{BASE}{DC}", headers={})
    assert graph.requests == []


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
def test_the_http_layer_refuses_writes_to_graph(method: str) -> None:
    graph = MockGraph()
    with make_client(graph) as client, pytest.raises(ReadOnlyViolationError):
        client._http.request(method, f"{BASE}{DC}")
    assert graph.requests == []


def test_the_http_layer_refuses_a_post_to_the_authority_that_is_not_the_token_endpoint() -> None:
    graph = MockGraph()
    with make_client(graph) as client, pytest.raises(ReadOnlyViolationError):
        client._http.post(f"https://login.test/{TENANT}/oauth2/v2.0/devicecode")
    assert graph.requests == []


def test_final_error_after_throttled_attempts_says_what_happened() -> None:
    """A 403 after two 429s is one 403 answer, not a retried 403."""
    sleep = SleepRecorder()
    graph = MockGraph().on(
        DC,
        graph_error(429, "TooManyRequests", "slow", headers={"Retry-After": "1"}),
        graph_error(429, "TooManyRequests", "slow", headers={"Retry-After": "2"}),
        graph_error(403, "Forbidden", "Insufficient privileges"),
    )
    with pytest.raises(GraphError) as info:
        fetch_all(graph, sleep=sleep)
    message = str(info.value)
    assert info.value.code == ErrorCode.FORBIDDEN
    assert "HTTP 403" in message
    assert "attempt 3, after 2 retried (HTTP 429 ×2), waited 3.00s" in message
    assert "gave up" not in message


def test_exhausted_retries_say_they_gave_up() -> None:
    graph = MockGraph().on(DC, *[graph_error(503, "Busy", "later")] * 3)
    with pytest.raises(GraphError) as info:
        fetch_all(graph, sleep=SleepRecorder(), retry=RetryPolicy(max_attempts=3))
    assert "gave up after 3 attempts" in str(info.value)


def test_guid_ids_are_de_duplicated_exactly_by_spelling() -> None:
    """GUIDs are kept as numbers to save memory; only the canonical spelling is converted, so
    ids that differ in case (two rows in the database) are never taken for one another."""
    guid = "6c1d2e3f-4a5b-4c6d-8e7f-9a0b1c2d3e4f"
    first = [{"id": guid}, {"id": guid.upper()}, {"id": "not-a-guid"}, {"id": f"{guid}_x"}]
    graph = MockGraph().on(DC_FIRST, page(first, f"{BASE}{DC}?s=1"))
    graph.on(f"{DC}?s=1", page([{"id": guid}, {"id": guid.upper()}, {"id": "NOT-A-GUID"}]))
    with make_client(graph) as client:
        fetch = client.fetch(TENANT, "device_configurations")
        pages = list(fetch)
    assert [len(p.items) for p in pages] == [4, 1]
    assert pages[1].items == [{"id": "NOT-A-GUID"}]
    assert fetch.stats.duplicates_dropped == 2
