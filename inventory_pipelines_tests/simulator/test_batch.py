"""`$batch` like Graph's: up to 20 GETs per envelope, each answered, throttled and counted on
its own, in any order."""

from __future__ import annotations

from typing import Any

from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.simulator.graph_http import TENANT_A, graph_client

DC = get_policy_type("device_configurations")
CATALOG = get_policy_type("settings_catalog_policies")


def sub(i: int, path: str, method: str = "GET") -> dict[str, Any]:
    return {"id": str(i), "method": method, "url": path}


def test_a_batch_answers_every_sub_request_by_id(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={DC.key: 30, CATALOG.key: 160})
    requests = [
        sub(1, f"/{DC.graph_path}?$top=999"),
        sub(2, f"/{CATALOG.graph_path}?$top=999"),
        sub(3, f"/{CATALOG.graph_path}?$top=100"),
        sub(4, f"/{DC.graph_path}", method="PATCH"),
        sub(5, "/deviceManagement/nothingHere"),
    ]
    with graph_client(sim, TENANT_A) as client:
        response = client.post("/beta/$batch", json={"requests": requests})
        assert response.status_code == 200
        answers = {a["id"]: a for a in response.json()["responses"]}
        assert {k: a["status"] for k, a in answers.items()} == {
            "1": 200,
            "2": 400,
            "3": 200,
            "4": 405,
            "5": 404,
        }
        assert len(answers["1"]["body"]["value"]) == 30
        assert answers["2"]["body"]["error"]["message"].startswith("The limit of '100'")
        third = answers["3"]["body"]
        assert len(third["value"]) == 100
        link = third["@odata.nextLink"]
        relative = link.removeprefix(f"{sim.base_url}/beta")
        follow = client.post("/beta/$batch", json={"requests": [sub(9, relative)]}).json()
        assert len(follow["responses"][0]["body"]["value"]) == 60
    counters = sim.control.counters()
    assert counters["batches"] == {TENANT_A: 2}
    assert counters["batched_requests"] == {TENANT_A: 6}
    assert counters["by_method"] == {"GET": 5, "PATCH": 1}


def test_sub_requests_are_throttled_one_by_one_with_retry_after(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={DC.key: 3, CATALOG.key: 3})
    sim.control.add_fault(
        TENANT_A, {"kind": "throttle", "policy_type": CATALOG.key, "retry_after": 7, "count": 1}
    )
    requests = [sub(1, f"/{DC.graph_path}"), sub(2, f"/{CATALOG.graph_path}")]
    with graph_client(sim, TENANT_A) as client:
        answers = {
            a["id"]: a
            for a in client.post("/beta/$batch", json={"requests": requests}).json()["responses"]
        }
    assert answers["1"]["status"] == 200
    assert answers["2"]["status"] == 429
    assert {k.lower(): v for k, v in answers["2"]["headers"].items()}["retry-after"] == "7"


def test_more_than_20_requests_or_no_token_refuse_the_envelope(sim: SimulatorServer) -> None:
    requests = [sub(i, f"/{DC.graph_path}") for i in range(21)]
    with graph_client(sim, TENANT_A) as client:
        too_many = client.post("/beta/$batch", json={"requests": requests})
        assert too_many.status_code == 400
        assert "maximum of 20" in too_many.json()["error"]["message"]
        client.headers.pop("authorization", None)
        assert client.post("/beta/$batch", json={"requests": requests[:2]}).status_code == 401
    assert sim.control.counters()["batch_by_status"] == {"400": 1, "401": 1}


def test_a_simulator_without_batching_answers_404(sim: SimulatorServer) -> None:
    sim.control.set_options(batch_enabled=False)
    with graph_client(sim, TENANT_A) as client:
        response = client.post("/beta/$batch", json={"requests": [sub(1, f"/{DC.graph_path}")]})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "ResourceNotFound"
    counters = sim.control.counters()
    assert counters["batch_by_status"] == {"404": 1} and counters["total"] == 0
