"""Control API: mutations show up in ground truth and in pages; bad input fails loudly."""

from __future__ import annotations

import pytest

from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.simulator import SimulatorControlError, SimulatorServer
from inventory_pipelines.simulator.generation import default_size, seed_for_tenant
from inventory_pipelines_tests.simulator.graph_http import (
    TENANT_A,
    graph_client,
    ids_of,
    list_items,
    token_for,
)

KEY = "settings_catalog_policies"


def test_add_items_appear_in_truth_and_pages(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={KEY: 24})
    new_ids = sim.control.add_items(TENANT_A, KEY, 3)
    assert len(set(new_ids)) == 3
    assert sim.control.item_count(TENANT_A, KEY) == 27
    with graph_client(sim, TENANT_A) as client:
        listed = list_items(client, KEY)
    assert ids_of(listed)[-3:] == new_ids
    assert listed == sim.control.items(TENANT_A, KEY)
    assert all(item["name"] for item in listed[-3:])


def test_delete_items(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={KEY: 10})
    doomed = ids_of(sim.control.items(TENANT_A, KEY))[2:5]
    sim.control.delete_items(TENANT_A, KEY, doomed)
    with graph_client(sim, TENANT_A) as client:
        remaining = ids_of(list_items(client, KEY))
    assert len(remaining) == 7
    assert not set(doomed) & set(remaining)
    with pytest.raises(SimulatorControlError, match="unknown item id"):
        sim.control.delete_items(TENANT_A, KEY, doomed[:1])


def test_modify_items_changes_name_timestamp_and_version(sim: SimulatorServer) -> None:
    sim.control.configure_tenant(TENANT_A, sizes={"device_configurations": 5, KEY: 5})
    before = sim.control.items(TENANT_A, "device_configurations")[1]
    for _ in range(2):
        sim.control.modify_items(TENANT_A, "device_configurations", [before["id"]])
    after = sim.control.items(TENANT_A, "device_configurations")[1]
    assert after["id"] == before["id"]
    assert after["displayName"] != before["displayName"]
    assert after["version"] == before["version"] + 2
    assert after["lastModifiedDateTime"] > before["lastModifiedDateTime"]
    catalog_id = sim.control.items(TENANT_A, KEY)[0]["id"]
    sim.control.modify_items(TENANT_A, KEY, [catalog_id])
    with graph_client(sim, TENANT_A) as client:
        listed = {item["id"]: item for item in list_items(client, KEY)}
    assert listed[catalog_id]["name"].endswith("(rev 1)")


def test_modify_twice_in_one_second_still_moves_time_forward(sim: SimulatorServer) -> None:
    key = "conditional_access_policies"  # second-resolution timestamps
    sim.control.configure_tenant(TENANT_A, sizes={key: 3})
    item_id = sim.control.items(TENANT_A, key)[0]["id"]
    stamps = []
    for _ in range(3):
        sim.control.modify_items(TENANT_A, key, [item_id])
        stamps.append(sim.control.items(TENANT_A, key)[0]["modifiedDateTime"])
    assert stamps == sorted(set(stamps))


def test_reset_forgets_everything(sim: SimulatorServer) -> None:
    token = token_for(sim, TENANT_A)
    sim.control.configure_tenant(TENANT_A, seed=5, sizes={KEY: 2})
    sim.control.add_fault(TENANT_A, {"kind": "status", "status": 500})
    sim.control.set_options(expires_in=60)
    sim.control.reset()
    assert sim.control.faults(TENANT_A) == []
    assert sim.control.counters()["total"] == 0
    assert sim.control.options()["expires_in"] == 3599
    default_count = default_size(seed_for_tenant(TENANT_A), get_policy_type(KEY))
    assert sim.control.item_count(TENANT_A, KEY) == default_count
    with graph_client(sim, TENANT_A, token) as stale:
        assert stale.get(get_policy_type(KEY).url_path()).status_code == 401


def test_options_round_trip_and_validation(sim: SimulatorServer) -> None:
    assert sim.control.set_options(expires_in=120, identity_requests_per_second=2.5) == {
        "expires_in": 120,
        "identity_requests_per_second": 2.5,
        "settings_catalog_max_top": 100,
        "batch_enabled": True,
    }
    assert sim.control.set_options(settings_catalog_max_top=50)["settings_catalog_max_top"] == 50
    assert sim.control.set_options(batch_enabled=False)["batch_enabled"] is False
    with pytest.raises(SimulatorControlError):
        sim.control._call("POST", "/options", {"batch_enabled": "no"})
    with pytest.raises(SimulatorControlError):
        sim.control.set_options(expires_in=-1)
    with pytest.raises(SimulatorControlError):
        sim.control.set_options(settings_catalog_max_top=0)


@pytest.mark.parametrize(
    "call",
    [
        lambda c: c.items("not-a-guid", KEY),
        lambda c: c.items(TENANT_A, "no_such_type"),
        lambda c: c.add_items(TENANT_A, KEY, -1),
        lambda c: c.configure_tenant(TENANT_A, sizes={"no_such_type": 1}),
        lambda c: c.configure_tenant(TENANT_A, default_size=-5),
        lambda c: c.item_count(TENANT_A, "no_such_type"),
    ],
)
def test_bad_control_requests_raise(sim: SimulatorServer, call: object) -> None:
    with pytest.raises(SimulatorControlError):
        call(sim.control)  # type: ignore[operator]
