"""Every fault kind, observed over real HTTP: what the client will have to survive."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from email.utils import parsedate_to_datetime

import httpx
import pytest

from inventory_pipelines.simulator import SimulatorControlError, SimulatorServer
from inventory_pipelines_tests.simulator.graph_http import (
    TENANT_A,
    TENANT_B,
    graph_client,
    ids_of,
    list_items,
    url_of,
)

KEY = "device_configurations"
URL = url_of(KEY)


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[httpx.Client]:
    sim.control.configure_tenant(TENANT_A, sizes={KEY: 30, "named_locations": 5})
    with graph_client(sim, TENANT_A) as authorised:
        yield authorised


def _intune_document(response: httpx.Response) -> dict[str, object]:
    document: dict[str, object] = json.loads(response.json()["error"]["message"])
    return document


def test_throttle_with_retry_after_seconds_for_count_requests(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "throttle", "retry_after": 7, "count": 2})
    first, second, third = (client.get(URL) for _ in range(3))
    for response in (first, second):
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json()["error"]["code"] == "TooManyRequests"
    assert _intune_document(first)["_version"] == 3
    assert third.status_code == 200
    assert sim.control.faults(TENANT_A) == []


def test_throttle_with_http_date_or_without_header(
    sim: SimulatorServer, client: httpx.Client
) -> None:
    sim.control.set_faults(TENANT_A, [{"kind": "throttle", "retry_after": "http-date", "count": 1}])
    dated = client.get(URL)
    ahead = parsedate_to_datetime(dated.headers["Retry-After"]).timestamp() - time.time()
    assert 0 < ahead <= 3
    sim.control.set_faults(TENANT_A, [{"kind": "throttle", "retry_after": None, "count": 1}])
    bare = client.get(URL)
    assert bare.status_code == 429
    assert "Retry-After" not in bare.headers


def test_rate_limit_token_bucket(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "rate_limit", "requests_per_second": 0.5, "burst": 2})
    statuses = [client.get(URL) for _ in range(3)]
    assert [r.status_code for r in statuses] == [200, 200, 429]
    assert int(statuses[2].headers["Retry-After"]) >= 1
    sim.control.set_faults(
        TENANT_A, [{"kind": "rate_limit", "requests_per_second": 0.5, "retry_after": False}]
    )
    assert client.get(URL).status_code == 200
    refused = client.get(URL)
    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers


def test_global_rate_limit_is_shared_by_all_tenants(sim: SimulatorServer) -> None:
    sim.control.add_fault("*", {"kind": "rate_limit", "requests_per_second": 0.2, "burst": 1})
    with graph_client(sim, TENANT_A) as a, graph_client(sim, TENANT_B) as b:
        assert a.get(URL).status_code == 200
        assert b.get(URL).status_code == 429
    sim.control.clear_faults()
    assert sim.control.faults("*") == []


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (500, "InternalServerError"),
        (502, "BadGateway"),
        (503, "ServiceUnavailable"),
        (504, "GatewayTimeout"),
        (404, "ResourceNotFound"),
        (400, "BadRequest"),
    ],
)
def test_status_fault_has_graph_shape_and_intune_json_message(
    sim: SimulatorServer, client: httpx.Client, status: int, code: str
) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "status", "status": status, "policy_type": KEY})
    response = client.get(URL)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["code"] == code
    assert set(error["innerError"]) == {"date", "request-id", "client-request-id"}
    assert error["innerError"]["request-id"] == response.headers["request-id"]
    document = _intune_document(response)
    assert document["RetryAfter"] is None
    assert "Activity ID:" in str(document["Message"])
    assert "manage.microsoft.com" in str(document["Message"])
    assert client.get(url_of("compliance_policies")).status_code == 200


def test_status_fault_options(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.set_faults(
        TENANT_A,
        [
            {
                "kind": "status",
                "status": 503,
                "retry_after": 3,
                "intune_json_message": False,
                "message": "Try later.",
                "count": 1,
            },
            {"kind": "status", "status": 500, "policy_type": "named_locations", "count": 1},
        ],
    )
    response = client.get(URL)
    assert response.headers["Retry-After"] == "3"
    assert response.json()["error"]["message"] == "Try later."
    identity = client.get(url_of("named_locations"))
    assert identity.status_code == 500
    assert not identity.json()["error"]["message"].startswith("{")  # Entra ID: plain text


def test_forbidden_names_the_scopes_needed(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(
        TENANT_A, {"kind": "status", "status": 403, "policy_type": "remote_assistance_partners"}
    )
    response = client.get(url_of("remote_assistance_partners"))
    assert response.status_code == 403
    error = response.json()["error"]
    assert error["code"] == "Forbidden"
    assert "DeviceManagementConfiguration.Read.All" in error["message"]
    assert client.get(URL).status_code == 200


def test_skip_fails_a_later_page_mid_listing(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "status", "status": 504, "skip": 1, "count": 1})
    first = client.get(URL, params={"$top": "10"})
    link = first.json()["@odata.nextLink"]
    assert client.get(link).status_code == 504
    assert client.get(link).status_code == 200


def test_malformed_json(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "malformed_json", "count": 1})
    response = client.get(URL)
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)
    assert client.get(URL).json()["value"]


def test_truncated_body(sim: SimulatorServer, client: httpx.Client) -> None:
    full = client.get(URL).content
    sim.control.add_fault(TENANT_A, {"kind": "truncated_body", "count": 1})
    response = client.get(URL)
    assert response.status_code == 200
    assert int(response.headers["content-length"]) == len(response.content) < len(full)
    assert full.startswith(response.content[:40])
    with pytest.raises(json.JSONDecodeError):
        json.loads(response.content)


def test_reset_connection_mid_body(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "reset_connection", "count": 1})
    with pytest.raises((httpx.RemoteProtocolError, httpx.ReadError)):
        client.get(URL)
    assert client.get(URL).status_code == 200
    assert sim.control.counters()["faults_applied"] == {"reset_connection": 1}


def test_latency_delays_without_blocking_other_tenants(sim: SimulatorServer) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "latency", "ms": 600})
    slow_elapsed: list[float] = []

    def slow_request() -> None:
        with graph_client(sim, TENANT_A) as slow:
            started = time.monotonic()
            assert slow.get(URL).status_code == 200
            slow_elapsed.append(time.monotonic() - started)

    with graph_client(sim, TENANT_B) as fast:
        thread = threading.Thread(target=slow_request)
        thread.start()
        time.sleep(0.15)
        started = time.monotonic()
        assert fast.get(URL).status_code == 200
        fast_elapsed = time.monotonic() - started
        thread.join()
    assert slow_elapsed[0] >= 0.6
    assert fast_elapsed < 0.4


def test_rendezvous_holds_requests_until_another_tenant_arrives(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={KEY: 3})
    sim.control.configure_tenant(TENANT_B, sizes={KEY: 3})
    sim.control.add_fault("*", {"kind": "rendezvous", "tenants": 2, "timeout_ms": 20_000})
    answered: list[int] = []

    def first_tenant() -> None:
        with graph_client(sim, TENANT_A) as client:
            answered.append(client.get(URL).status_code)

    thread = threading.Thread(target=first_tenant)
    thread.start()
    time.sleep(0.5)
    assert thread.is_alive() and not answered, "tenant A was answered before B arrived"
    with graph_client(sim, TENANT_B) as client:
        assert client.get(URL).status_code == 200
        thread.join(timeout=5)
        assert answered == [200]
        # Met once; later requests pass straight through.
        started = time.monotonic()
        assert client.get(URL).status_code == 200
        assert time.monotonic() - started < 2
    (rule,) = sim.control.faults("*")
    assert (rule["met"], rule["timed_out"], rule["arrived"], rule["applied"]) == (True, False, 2, 2)


def test_rendezvous_gives_up_after_its_timeout(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault("*", {"kind": "rendezvous", "tenants": 2, "timeout_ms": 300})
    started = time.monotonic()
    assert client.get(URL).status_code == 200
    assert time.monotonic() - started >= 0.3
    (rule,) = sim.control.faults("*")
    assert (rule["met"], rule["timed_out"]) == (False, True)


def test_empty_pages_before_the_real_ones(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "empty_pages", "pages": 2, "count": 1})
    pages = []
    response = client.get(URL, params={"$top": "10"})
    while True:
        body = response.json()
        pages.append(body)
        if "@odata.nextLink" not in body:
            break
        response = client.get(body["@odata.nextLink"])
    assert [len(p["value"]) for p in pages] == [0, 0, 10, 10, 10]
    items = [item for page in pages for item in page["value"]]
    assert items == sim.control.items(TENANT_A, KEY)


def test_duplicate_across_pages(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "duplicate_across_pages"})
    first = client.get(URL, params={"$top": "10"}).json()
    second = client.get(first["@odata.nextLink"]).json()
    third = client.get(second["@odata.nextLink"]).json()
    assert [len(p["value"]) for p in (first, second, third)] == [10, 11, 11]
    assert second["value"][0] == first["value"][-1]
    assert third["value"][0] == second["value"][-1]
    unique = {item["id"] for page in (first, second, third) for item in page["value"]}
    assert unique == set(ids_of(sim.control.items(TENANT_A, KEY)))


def test_repeat_next_link_points_to_itself(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "repeat_next_link"})
    response = client.get(URL, params={"$top": "10"})
    link = response.json()["@odata.nextLink"]
    assert link == str(response.request.url)
    again = client.get(link)
    assert again.json()["@odata.nextLink"] == link  # endless unless the client guards
    assert again.json()["value"] == response.json()["value"]


def test_repeat_next_link_once(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "repeat_next_link", "count": 1})
    link = client.get(URL, params={"$top": "10"}).json()["@odata.nextLink"]
    assert "$skiptoken" not in link
    assert "$skiptoken" in client.get(link).json()["@odata.nextLink"]


def test_missing_ids(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "missing_ids", "items": 2, "count": 1})
    items = list_items(client, KEY, {"$top": "10"})
    without = [item for item in items if "id" not in item]
    assert len(without) == 2
    assert all(item["displayName"] for item in without)
    with_ids = [item for item in items if "id" in item]
    assert with_ids == sim.control.items(TENANT_A, KEY)


def test_fault_restricted_to_one_tenant(sim: SimulatorServer) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "status", "status": 500})
    with graph_client(sim, TENANT_A) as a, graph_client(sim, TENANT_B) as b:
        assert a.get(URL).status_code == 500
        assert b.get(URL).status_code == 200


def test_faults_report_their_remaining_budget(sim: SimulatorServer, client: httpx.Client) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "status", "status": 502, "count": 3, "skip": 1})
    client.get(URL)
    client.get(URL)
    (rule,) = sim.control.faults(TENANT_A)
    assert (rule["kind"], rule["count"], rule["skip"], rule["applied"]) == ("status", 2, 0, 1)
    sim.control.clear_faults(TENANT_A)
    assert client.get(URL).status_code == 200


@pytest.mark.parametrize(
    "fault",
    [
        {"kind": "explode"},
        {"kind": "status"},
        {"kind": "status", "status": 200},
        {"kind": "throttle", "policy_type": "no_such_type"},
        {"kind": "throttle", "retry_after": "soon"},
        {"kind": "latency"},
        {"kind": "latency", "ms": 10, "colour": "red"},
        {"kind": "rate_limit"},
        {"kind": "empty_pages", "pages": 0},
        {"kind": "token_error", "policy_type": "mobile_apps"},
        {"kind": "throttle", "count": 0},
        {"kind": "rendezvous", "tenants": 1},
        {"kind": "rendezvous", "timeout_ms": -5},
    ],
)
def test_invalid_faults_are_refused(sim: SimulatorServer, fault: dict[str, object]) -> None:
    with pytest.raises(SimulatorControlError):
        sim.control.add_fault(TENANT_A, fault)
    assert sim.control.faults(TENANT_A) == []


def test_set_faults_is_all_or_nothing(sim: SimulatorServer) -> None:
    sim.control.set_faults(TENANT_A, [{"kind": "latency", "ms": 1}])
    with pytest.raises(SimulatorControlError):
        sim.control.set_faults(TENANT_A, [{"kind": "malformed_json"}, {"kind": "nope"}])
    assert [rule["kind"] for rule in sim.control.faults(TENANT_A)] == ["latency"]
