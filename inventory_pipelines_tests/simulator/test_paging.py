"""Paging: page sizes, `$top` rules, absolute opaque next links, stability under mutation."""

from __future__ import annotations

import base64

import pytest

from inventory_pipelines.core.policy_types import POLICY_TYPES, PolicyType, get_policy_type
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines.simulator.paging import SETTINGS_CATALOG_TYPES, page_style, top_limit
from inventory_pipelines_tests.simulator.graph_http import (
    TENANT_A,
    TENANT_B,
    graph_client,
    ids_of,
    list_items,
    list_pages,
    url_of,
)

CAPPED_AT_200 = [t.key for t in POLICY_TYPES if t.max_top == 200]


def _sizes(pages: list[dict[str, object]]) -> list[int]:
    return [len(page["value"]) for page in pages]  # type: ignore[arg-type]


@pytest.mark.parametrize("policy_type", POLICY_TYPES, ids=lambda t: t.key)
def test_full_listing_equals_ground_truth(sim: SimulatorServer, policy_type: PolicyType) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={policy_type.key: 30})
    with graph_client(sim, TENANT_A) as client:
        items = list_items(client, policy_type.key, {"$top": "7"})
    assert items == sim.control.items(TENANT_A, policy_type.key)
    assert len(items) == 30
    assert all(item["id"] and policy_type.name_field in item for item in items)


@pytest.mark.parametrize("key", sorted(SETTINGS_CATALOG_TYPES))
def test_settings_catalog_pages_of_25_and_honours_top_up_to_its_limit(
    sim: SimulatorServer, key: str
) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={key: 160})
    with graph_client(sim, TENANT_A) as client:
        assert _sizes(list_pages(client, key)) == [25] * 6 + [10]
        assert _sizes(list_pages(client, key, {"$top": "60"})) == [60, 60, 40]
        assert _sizes(list_pages(client, key, {"$top": "100"})) == [100, 60]
        response = client.get(url_of(key), params={"$top": "999"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "BadRequest"
        assert error["message"] == (
            "The limit of '100' for Top query has been exceeded. "
            "The value from the incoming request is '999'."
        )
        sim.control.set_options(settings_catalog_max_top=50)
        refused = client.get(url_of(key), params={"$top": "60"}).json()["error"]["message"]
        assert refused.startswith("The limit of '50' for Top query has been exceeded.")


def test_top_is_honoured_and_sticks_to_every_page(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={"device_configurations": 120})
    with graph_client(sim, TENANT_A) as client:
        assert _sizes(list_pages(client, "device_configurations", {"$top": "50"})) == [50, 50, 20]
        assert _sizes(list_pages(client, "device_configurations")) == [120]


def test_oversized_top_is_clamped_to_999(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={"mobile_apps": 1500})
    with graph_client(sim, TENANT_A) as client:
        assert _sizes(list_pages(client, "mobile_apps", {"$top": "5000"})) == [999, 501]


def test_identity_types_page_at_100(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={"conditional_access_policies": 150})
    with graph_client(sim, TENANT_A) as client:
        assert _sizes(list_pages(client, "conditional_access_policies")) == [100, 50]


@pytest.mark.parametrize("key", CAPPED_AT_200)
def test_update_profiles_reject_top_above_200(sim: SimulatorServer, key: str) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={key: 250})
    with graph_client(sim, TENANT_A) as client:
        response = client.get(url_of(key), params={"$top": "999"})
        assert response.status_code == 400
        error = response.json()["error"]
        assert error["code"] == "BadRequest"
        assert error["message"] == (
            "The limit of '200' for Top query has been exceeded. "
            "The value from the incoming request is '999'."
        )
        assert _sizes(list_pages(client, key, {"$top": "200"})) == [200, 50]


@pytest.mark.parametrize("top", ["abc", "0", "-3"])
def test_invalid_top_is_bad_request(sim: SimulatorServer, top: str) -> None:
    with graph_client(sim, TENANT_A) as client:
        response = client.get(url_of("device_configurations"), params={"$top": top})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "BadRequest"


def test_next_link_is_absolute_opaque_and_keeps_query_options(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={"compliance_policies": 20})
    with graph_client(sim, TENANT_A) as client:
        body = client.get(
            url_of("compliance_policies"), params={"$top": "7", "$filter": "isAssigned eq true"}
        ).json()
    link = body["@odata.nextLink"]
    assert link.startswith(f"{sim.base_url}/beta/deviceManagement/deviceCompliancePolicies?")
    assert "$top=7" in link
    assert "$filter=isAssigned%20eq%20true" in link
    token = link.split("$skiptoken=", 1)[1]
    assert token and not token.isdigit() and "&" not in token
    assert not base64.urlsafe_b64decode(token + "==").isascii()  # not a readable offset
    context = body["@odata.context"]
    assert context == f"{sim.base_url}/beta/$metadata#deviceManagement/deviceCompliancePolicies"


def test_page_annotations_follow_the_collections_habits(sim: SimulatorServer) -> None:
    with graph_client(sim, TENANT_A) as client:
        for policy_type in POLICY_TYPES:
            body = client.get(policy_type.url_path(), params={"$top": "3"}).json()
            style = page_style(policy_type)
            has_tips = "@microsoft.graph.tips" in body
            assert has_tips == (policy_type.api_version == "beta")
            if style.with_count:
                assert body["@odata.count"] == len(body["value"])
            else:
                assert "@odata.count" not in body


def test_next_link_before_value_in_some_collections(sim: SimulatorServer) -> None:
    first_keys = {}
    with graph_client(sim, TENANT_A) as client:
        for policy_type in [t for t in POLICY_TYPES if top_limit(t)[0] is not None]:
            sim.control.configure_tenant(TENANT_A, sizes={policy_type.key: 5})
            text = client.get(policy_type.url_path(), params={"$top": "2"}).text
            first_keys[policy_type.key] = text.index("@odata.nextLink") < text.index('"value"')
    assert set(first_keys.values()) == {True, False}


def test_paging_is_stable_while_data_changes(sim: SimulatorServer) -> None:
    key = "device_configurations"
    sim.control.configure_tenant(TENANT_A, sizes={key: 30})
    before = sim.control.items(TENANT_A, key)
    with graph_client(sim, TENANT_A) as client:
        first = client.get(url_of(key), params={"$top": "10"}).json()
        sim.control.delete_items(TENANT_A, key, [before[12]["id"], before[25]["id"]])
        sim.control.modify_items(TENANT_A, key, [before[20]["id"]])
        added = sim.control.add_items(TENANT_A, key, 3)
        rest = []
        link = first["@odata.nextLink"]
        while link:
            page = client.get(link).json()
            rest.extend(page["value"])
            link = page.get("@odata.nextLink")
        assert first["value"] + rest == before
        after = list_items(client, key, {"$top": "10"})
    truth = sim.control.items(TENANT_A, key)
    assert after == truth
    assert len(truth) == 31
    assert ids_of(truth)[-3:] == added


def test_skiptoken_is_bound_to_tenant_and_collection(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={"device_configurations": 10})
    with graph_client(sim, TENANT_A) as a, graph_client(sim, TENANT_B) as b:
        link = a.get(url_of("device_configurations"), params={"$top": "2"}).json()[
            "@odata.nextLink"
        ]
        assert b.get(link).status_code == 400
        token = link.split("$skiptoken=", 1)[1]
        other_type = a.get(url_of("compliance_policies"), params={"$skiptoken": token})
        assert other_type.status_code == 400
        garbage = a.get(url_of("device_configurations"), params={"$skiptoken": "nonsense!"})
        assert garbage.status_code == 400
        assert garbage.json()["error"]["code"] == "BadRequest"


def test_wrong_api_version_and_unknown_paths_are_404(sim: SimulatorServer) -> None:
    beta_only = get_policy_type("settings_catalog_policies")
    with graph_client(sim, TENANT_A) as client:
        wrong_version = client.get(f"/v1.0/{beta_only.graph_path}")
        unknown = client.get("/beta/deviceManagement/notACollection")
    for response in (wrong_version, unknown):
        assert response.status_code == 404
        assert response.json()["error"]["code"] == "ResourceNotFound"
        assert response.headers["request-id"]


def test_identity_throttling_answers_429_without_retry_after(sim: SimulatorServer) -> None:
    sim.control.set_options(identity_requests_per_second=1)
    with graph_client(sim, TENANT_A) as client:
        statuses = [client.get(url_of("named_locations")).status_code for _ in range(3)]
        throttled = client.get(url_of("conditional_access_policies"))
        intune = [client.get(url_of("device_configurations")).status_code for _ in range(3)]
    assert statuses[0] == 200
    assert 429 in statuses[1:]
    assert throttled.status_code == 429
    assert "Retry-After" not in throttled.headers
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    assert intune == [200, 200, 200]
    assert sim.control.counters()["faults_applied"]["identity_throttle"] >= 2


def test_skiptoken_from_before_a_reconfigure_is_refused(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={"device_configurations": 10})
    with graph_client(sim, TENANT_A) as client:
        first = client.get(url_of("device_configurations"), params={"$top": "4"}).json()
        sim.control.configure_tenant(TENANT_A, seed=99, sizes={"device_configurations": 10})
        stale = client.get(first["@odata.nextLink"])
    assert stale.status_code == 400
    assert "skiptoken" in stale.json()["error"]["message"]
