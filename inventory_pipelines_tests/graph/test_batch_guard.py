"""The read-only guard covers `$batch`: only envelopes of GETs of registry collections leave."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from inventory_pipelines.graph.batch import MAX_BATCH_REQUESTS, batch_body_problem
from inventory_pipelines.graph.client import ReadOnlyViolationError
from inventory_pipelines_tests.graph.mock_graph import BASE, MockGraph, make_client

DC = "/deviceManagement/deviceConfigurations"


def envelope(*requests: dict[str, Any]) -> bytes:
    return json.dumps({"requests": list(requests)}).encode()


def get(url: str, i: int = 1) -> dict[str, Any]:
    return {"id": str(i), "method": "GET", "url": url}


def test_gets_of_registry_collections_pass() -> None:
    body = envelope(get(f"{DC}?$top=999"), get(f"{DC}?$top=999&$skiptoken=abc", 2))
    assert batch_body_problem(body, "beta") is None
    assert batch_body_problem(envelope(get("/identity/conditionalAccess/policies")), "v1.0") is None


@pytest.mark.parametrize(
    ("body", "version", "problem"),
    [
        (envelope({"id": "1", "method": "PATCH", "url": DC}), "beta", "only GET"),
        (envelope({"id": "1", "method": "DELETE", "url": DC}), "beta", "only GET"),
        (envelope(get("/users")), "beta", "not a beta registry collection"),
        (envelope(get("https://evil.test/beta" + DC)), "beta", "registry collection"),
        (envelope(get("/identity/conditionalAccess/policies")), "beta", "registry collection"),
        (envelope(*[get(DC, i) for i in range(MAX_BATCH_REQUESTS + 1)]), "beta", "at most 20"),
        (b"not json", "beta", "not JSON"),
        (envelope(), "beta", "no list"),
    ],
)
def test_anything_else_is_a_problem(body: bytes, version: str, problem: str) -> None:
    found = batch_body_problem(body, version)
    assert found is not None and problem in found


@pytest.mark.parametrize(
    "body",
    [
        envelope({"id": "1", "method": "POST", "url": DC}),
        envelope(get(DC), {"id": "2", "method": "PATCH", "url": DC}),
        envelope(get("/deviceManagement/managedDevices/abc/wipe")),
    ],
)
def test_a_forbidden_envelope_is_refused_before_it_leaves(body: bytes) -> None:
    graph = MockGraph()
    with make_client(graph) as client:
        with pytest.raises(ReadOnlyViolationError, match="read-only"):
            client._http.post(f"{BASE}/beta/$batch", content=body)
        with pytest.raises(ReadOnlyViolationError):
            client._http.post(f"{BASE}/beta/users", content=envelope(get(DC)))
    assert graph.requests == []


def test_a_permitted_envelope_is_sent() -> None:
    graph = MockGraph().on("/beta/$batch", httpx.Response(200, json={"responses": []}))
    with make_client(graph) as client:
        response = client._http.post(f"{BASE}/beta/$batch", content=envelope(get(DC)))
    assert response.status_code == 200
    assert [r.method for r in graph.requests] == ["POST"]
