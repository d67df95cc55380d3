"""Counters: the server-side proof of what a client did (no writes, retries, concurrency)."""

from __future__ import annotations

import threading

import pytest

from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.simulator.graph_http import (
    TENANT_A,
    TENANT_B,
    graph_client,
    raw_get,
    token_for,
    url_of,
)

URL = url_of("device_configurations")


@pytest.mark.parametrize("method", ["POST", "PATCH", "PUT", "DELETE"])
def test_writes_get_graph_405_and_are_counted(sim: SimulatorServer, method: str) -> None:
    with graph_client(sim, TENANT_A) as client:
        response = client.request(method, URL, json={"displayName": "x"})
        unknown_path = client.request(method, "/beta/deviceManagement/anything")
    for answer in (response, unknown_path):
        assert answer.status_code == 405
        assert answer.json()["error"]["code"] == "Request_BadRequest"
        assert answer.headers["request-id"]
    counters = sim.control.counters()
    assert counters["by_method"] == {method: 2}
    assert counters["by_status"] == {"405": 2}
    assert counters["by_tenant"] == {TENANT_A: 2}
    assert counters["by_policy_type"] == {"device_configurations": 1}


def test_counts_by_tenant_method_status_and_type(sim: SimulatorServer) -> None:
    with graph_client(sim, TENANT_A) as a, graph_client(sim, TENANT_B) as b:
        a.get(URL)
        a.get(url_of("mobile_apps"))
        b.get(URL)
    raw_get(sim.base_url + URL)  # no token: counted under "unknown"
    counters = sim.control.counters()
    assert counters["total"] == 4
    assert counters["by_tenant"] == {TENANT_A: 2, TENANT_B: 1, "unknown": 1}
    assert counters["by_method"] == {"GET": 4}
    assert counters["by_status"] == {"200": 3, "401": 1}
    assert counters["by_policy_type"] == {"device_configurations": 3, "mobile_apps": 1}
    assert counters["by_tenant_policy_type"][TENANT_A] == {
        "device_configurations": 1,
        "mobile_apps": 1,
    }
    assert counters["token_requests"] == {TENANT_A: 1, TENANT_B: 1}
    assert counters["token_by_status"] == {"200": 2}


def test_max_in_flight_per_tenant(sim: SimulatorServer) -> None:
    sim.control.add_fault(TENANT_A, {"kind": "latency", "ms": 400})
    token = token_for(sim, TENANT_A)
    barrier = threading.Barrier(5)

    def call() -> None:
        with graph_client(sim, TENANT_A, token) as client:
            barrier.wait()
            assert client.get(URL).status_code == 200

    threads = [threading.Thread(target=call) for _ in range(5)]
    for thread in threads:
        thread.start()
    with graph_client(sim, TENANT_B) as other:
        other.get(URL)
    for thread in threads:
        thread.join()
    counters = sim.control.counters()
    assert counters["max_in_flight"][TENANT_A] == 5
    assert counters["max_in_flight"][TENANT_B] == 1
    assert counters["max_in_flight_total"] >= 5
    assert counters["in_flight"] == {}
    assert counters["in_flight_total"] == 0


def test_reset_counters(sim: SimulatorServer) -> None:
    with graph_client(sim, TENANT_A) as client:
        client.get(URL)
    sim.control.reset_counters()
    counters = sim.control.counters()
    assert counters["total"] == 0
    assert counters["by_tenant"] == {}
    assert counters["token_requests"] == {}
    assert counters["max_in_flight"] == {}


def test_control_requests_are_not_counted(sim: SimulatorServer) -> None:
    sim.control.items(TENANT_A, "mobile_apps")
    sim.control.faults(TENANT_A)
    assert sim.control.counters()["total"] == 0
