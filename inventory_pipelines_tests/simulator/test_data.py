"""Generated data: deterministic per tenant, realistic in the ways that break naive clients."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inventory_pipelines.core.policy_types import POLICY_TYPES, get_policy_type
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines.simulator.generation import ItemFactory, default_size
from inventory_pipelines.simulator.identifiers import parse_utc_iso, utc_iso
from inventory_pipelines.simulator.paging import (
    Cursor,
    PagingError,
    decode_skiptoken,
    encode_skiptoken,
)
from inventory_pipelines_tests.simulator.graph_http import (
    TENANT_A,
    TENANT_B,
    graph_client,
    list_items,
)

SAMPLE_TYPES = ["device_configurations", "settings_catalog_policies", "conditional_access_policies"]


def test_same_tenant_same_items_on_another_server(sim: SimulatorServer) -> None:
    with SimulatorServer(identity_requests_per_second=0) as other:
        for key in SAMPLE_TYPES:
            assert sim.control.items(TENANT_A, key) == other.control.items(TENANT_A, key)
        with graph_client(sim, TENANT_A) as here, graph_client(other, TENANT_A) as there:
            mine = list_items(here, "mobile_apps", {"$top": "10"})
            theirs = list_items(there, "mobile_apps", {"$top": "10"})
    assert mine == theirs
    assert sim.control.item_count(TENANT_A) == sum(
        sim.control.item_count(TENANT_A, t.key) for t in POLICY_TYPES
    )


def test_tenants_and_seeds_give_different_data(sim: SimulatorServer) -> None:
    key = "device_configurations"
    a = sim.control.items(TENANT_A, key)
    assert a != sim.control.items(TENANT_B, key)
    sim.control.configure_tenant(TENANT_A, seed=7)
    sim.control.configure_tenant(TENANT_B, seed=7)
    assert sim.control.items(TENANT_A, key) == sim.control.items(TENANT_B, key) != a


def test_sizes_and_default_size(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, default_size=3, sizes={"mobile_apps": 40})
    assert sim.control.item_count(TENANT_A, "mobile_apps") == 40
    assert sim.control.item_count(TENANT_A, "scope_tags") == 3
    assert sim.control.item_count(TENANT_A) == 40 + 3 * (len(POLICY_TYPES) - 1)
    sim.control.configure_tenant(TENANT_A, sizes={"device_categories": 0})
    assert sim.control.items(TENANT_A, "device_categories") == []


def test_default_spread_is_small_with_more_apps() -> None:
    for seed in range(20):
        apps = default_size(seed, get_policy_type("mobile_apps"))
        tail = default_size(seed, get_policy_type("vpp_tokens"))
        assert 30 <= apps <= 90
        assert 0 <= tail <= 20


def test_larger_sizes_keep_the_smaller_prefix() -> None:
    factory = ItemFactory(11, get_policy_type("intune_roles"))
    small = factory.items(12)
    assert ItemFactory(11, get_policy_type("intune_roles")).items(40)[:12] == small


def test_unicode_names_arrive_as_utf8(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={"compliance_policies": 10})
    with graph_client(sim, TENANT_A) as client:
        response = client.get(get_policy_type("compliance_policies").url_path())
    names = [item["displayName"] for item in response.json()["value"]]
    unicode_names = [name for name in names if not name.isascii()]
    assert unicode_names
    assert unicode_names[0].encode() in response.content  # raw UTF-8, not \u escapes


def test_name_field_differs_between_collections(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, default_size=5)
    catalog = sim.control.items(TENANT_A, "settings_catalog_policies")
    configs = sim.control.items(TENANT_A, "device_configurations")
    assert all("name" in i and "displayName" not in i for i in catalog)
    assert all("displayName" in i and "name" not in i for i in configs)
    assert all({"platforms", "technologies", "templateReference"} <= set(i) for i in catalog)


def test_polymorphic_collections_carry_odata_type(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, default_size=40)
    for key in ("device_configurations", "app_protection_policies", "mobile_apps"):
        kinds = {item["@odata.type"] for item in sim.control.items(TENANT_A, key)}
        assert len(kinds) >= 3
        assert all(kind.startswith("#microsoft.graph.") for kind in kinds)
    assert all("@odata.type" not in i for i in sim.control.items(TENANT_A, "scope_tags"))


def test_identity_items_use_modified_date_time(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, default_size=20)
    policies = sim.control.items(TENANT_A, "conditional_access_policies")
    assert all("modifiedDateTime" in p and "lastModifiedDateTime" not in p for p in policies)
    assert any(p["modifiedDateTime"] is None for p in policies)  # never edited since creation
    assert all("lastModifiedDateTime" in i for i in sim.control.items(TENANT_A, "vpp_tokens"))


def test_builtins_where_graph_has_them(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, default_size=12)
    tags = sim.control.items(TENANT_A, "scope_tags")
    assert tags[0]["id"] == "0"
    assert tags[0]["displayName"] == "Default"
    roles = sim.control.items(TENANT_A, "intune_roles")
    assert sum(role["isBuiltIn"] for role in roles) == 8
    enrollment = sim.control.items(TENANT_A, "enrollment_configurations")
    assert sum("_Default" in item["id"] for item in enrollment) == 4


def test_nulls_long_strings_and_unknown_fields(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={"device_configurations": 300})
    items = sim.control.items(TENANT_A, "device_configurations")
    assert any(item["description"] is None for item in items)
    assert any(len(item["description"] or "") > 10_000 for item in items)
    known = set(ItemFactory(1, get_policy_type("device_configurations")).items(1)[0])
    assert any(set(item) - known - {"description"} for item in items)


def test_ids_unique_within_each_collection(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, default_size=50)
    for policy_type in POLICY_TYPES:
        ids = [item["id"] for item in sim.control.items(TENANT_A, policy_type.key)]
        assert len(ids) == len(set(ids)) == 50, policy_type.key


@given(
    version=st.integers(1, 2**32 - 1),
    offset=st.integers(0, 2**32 - 1),
    size=st.integers(1, 999),
    empties=st.integers(0, 50),
    duplicate=st.booleans(),
    missing=st.integers(0, 50),
    scope=st.integers(0, 2**32 - 1),
)
def test_skiptoken_round_trip(
    version: int,
    offset: int,
    size: int,
    empties: int,
    duplicate: bool,
    missing: int,
    scope: int,
) -> None:
    cursor = Cursor(version, offset, size, empties, duplicate, missing)
    token = encode_skiptoken(cursor, scope)
    assert decode_skiptoken(token, scope) == cursor
    with pytest.raises(PagingError):
        decode_skiptoken(token, scope ^ 1)


@given(st.floats(1_500_000_000, 1_900_000_000))
def test_timestamps_round_trip(epoch: float) -> None:
    text = utc_iso(epoch)
    assert text.endswith("Z") and len(text) == 28
    assert abs(parse_utc_iso(text) - epoch) < 1e-6
    assert utc_iso(epoch, fraction_digits=0) == text[:19] + "Z"
