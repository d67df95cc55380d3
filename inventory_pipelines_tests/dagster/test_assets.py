"""`materialize` of both assets for one partition, against the simulator, on both databases."""

from __future__ import annotations

import subprocess
import sys
import time
from typing import Any

import dagster as dg
import pytest
from dagster import DagsterEventType
from dagster._core.storage.partition_status_cache import get_and_update_asset_status_cache_value
from sqlalchemy import select

from inventory_pipelines.assets import (
    MISSING_SHARE_CHECK,
    SYNC_CHECK,
    inventory_items,
    inventory_missing,
)
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.core.selection import get_selection
from inventory_pipelines.partitions import partition_key, tenant_selection_partitions
from inventory_pipelines.resources import InventoryDatabase
from inventory_pipelines.run_tags import TENANT_ID_TAG, TENANT_KEY_TAG, TENANT_NAME_TAG
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.dagster.fixtures import (
    TENANT,
    TENANT_KEY,
    TENANT_NAME,
    graph_resource,
    instance,
    resources,
)

__all__ = ["instance", "resources"]  # fixtures

SELECTION = "compliance"
KEY = partition_key(TENANT_KEY, SELECTION)


def add_partitions(instance: dg.DagsterInstance) -> None:
    instance.add_dynamic_partitions("tenant", [TENANT_KEY])
    instance.add_dynamic_partitions("selection", [SELECTION])


def stored(instance: dg.DagsterInstance, run_id: str, kind: DagsterEventType) -> list[Any]:
    """What the run stored of one event kind (what the UI reads), whichever step logged it."""
    return [
        entry.dagster_event.event_specific_data
        for entry in instance.all_logs(run_id, of_type=kind)
        if entry.dagster_event is not None
    ]


def metadata_of(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult, asset: str
) -> dict[str, object]:
    """The run's one materialization of `asset`."""
    [event] = [
        data.materialization
        for data in stored(instance, result.run_id, DagsterEventType.ASSET_MATERIALIZATION)
        if data.materialization.asset_key == dg.AssetKey(asset)
    ]
    return {k: v.value for k, v in event.metadata.items()}


def observed_sync(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult
) -> dict[str, object]:
    """The sync's metadata, stored as an observation when the sync was not complete."""
    [data] = stored(instance, result.run_id, DagsterEventType.ASSET_OBSERVATION)
    return {k: v.value for k, v in data.asset_observation.metadata.items()}


def materialized(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> set[str]:
    """The assets the run materialized."""
    events = stored(instance, result.run_id, DagsterEventType.ASSET_MATERIALIZATION)
    return {data.materialization.asset_key.to_user_string() for data in events}


def checks_of(
    instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult
) -> dict[str, dg.AssetCheckEvaluation]:
    evaluations = stored(instance, result.run_id, DagsterEventType.ASSET_CHECK_EVALUATION)
    return {e.check_name: e for e in evaluations}


def failed_partitions(instance: dg.DagsterInstance, asset: str) -> set[str]:
    """Partitions the asset's *Partitions* tab shows as failed (the UI's own status cache)."""
    cache = get_and_update_asset_status_cache_value(
        instance, dg.AssetKey(asset), tenant_selection_partitions
    )
    assert cache is not None
    subset = cache.deserialize_failed_partition_subsets(tenant_selection_partitions)
    return {str(key) for key in subset.get_partition_keys()}


def truth_count(sim: SimulatorServer) -> int:
    return sum(sim.control.item_count(TENANT, t) for t in get_selection(SELECTION).policy_types)


def test_materialize_sync_then_missing(
    instance: dg.DagsterInstance, resources: dict[str, object], sim: SimulatorServer
) -> None:
    add_partitions(instance)
    result = dg.materialize(
        [inventory_items, inventory_missing],
        partition_key=KEY,
        instance=instance,
        resources=resources,
    )
    assert result.success
    sync = metadata_of(instance, result, "inventory_items")
    assert sync["status"] == "success"
    assert sync["items_observed"] == sync["items_inserted"] == truth_count(sim)
    assert sync["selection_hash"] == get_selection(SELECTION).hash
    assert sync["policy_types_failed"] == 0 and sync["pages"] >= 4
    database: InventoryDatabase = resources["inventory_db"]  # type: ignore[assignment]
    run = database.store().get_sync_run(TENANT, int(sync["sync_run_id"]))  # type: ignore[arg-type]
    assert run["correlation_id"] == result.run_id  # UI run and sync row link both ways

    missing = metadata_of(instance, result, "inventory_missing")
    assert missing["missing_count"] == 0 and missing["confidence"] == "high"
    assert missing["baseline_run_id"] == sync["sync_run_id"]
    assert missing["changes_went_missing"] == 0
    # The change feed's counts per kind, as numbers the UI plots per partition.
    assert (sync["changes_added"], sync["changes_changed"], sync["changes_returned"]) == (
        truth_count(sim),
        0,
        0,
    )
    assert {
        k: type(v)
        for k, v in result.asset_materializations_for_node("inventory_items")[0].metadata.items()
        if k.startswith("changes_")
    } == dict.fromkeys(
        ("changes_added", "changes_changed", "changes_returned"), dg.IntMetadataValue
    )
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {SYNC_CHECK: True, MISSING_SHARE_CHECK: True}

    # Delete most items of one type: the next sync shows them missing and the guard warns.
    gone = [i["id"] for i in sim.control.items(TENANT, "compliance_policies")]
    sim.control.delete_items(TENANT, "compliance_policies", gone)
    second = dg.materialize(
        [inventory_items, inventory_missing],
        partition_key=KEY,
        instance=instance,
        resources=resources,
    )
    missing = metadata_of(instance, second, "inventory_missing")
    assert missing["missing_count"] == len(gone) and missing["confidence"] == "high"
    assert missing["by_reason"] == {"not_observed": len(gone)}
    assert missing["changes_went_missing"] == len(gone)
    resync = metadata_of(instance, second, "inventory_items")
    assert (resync["changes_added"], resync["changes_changed"], resync["changes_returned"]) == (
        0,
        0,
        0,
    )
    guard = {e.check_name: e for e in second.get_asset_check_evaluations()}[MISSING_SHARE_CHECK]
    expected_suspicious = len(gone) >= 5 and len(gone) / truth_count_before(sync) >= 0.2
    assert guard.passed is (not expected_suspicious)
    assert guard.severity == dg.AssetCheckSeverity.WARN


def truth_count_before(sync: dict[str, object]) -> int:
    return int(sync["items_observed"])  # type: ignore[call-overload]


def test_partial_sync_fails_its_partition_and_brings_missing_to_low_confidence(
    instance: dg.DagsterInstance, resources: dict[str, object], sim: SimulatorServer
) -> None:
    add_partitions(instance)
    first = dg.materialize(
        [inventory_items], partition_key=KEY, instance=instance, resources=resources
    )
    assert first.success and failed_partitions(instance, "inventory_items") == set()
    sim.control.set_faults(
        TENANT, [{"kind": "status", "status": 403, "policy_type": "compliance_scripts"}]
    )
    result = dg.materialize(
        [inventory_items, inventory_missing],
        partition_key=KEY,
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    # Not a complete look: no materialization, a failed run and a failed partition, even
    # though the partition was materialized (green) before.
    assert not result.success
    assert materialized(instance, result) == {"inventory_missing"}
    assert failed_partitions(instance, "inventory_items") == {str(KEY)}
    sync = observed_sync(instance, result)
    assert sync["status"] == "partial" and sync["error_codes"] == ["forbidden"]
    failure = result.failure_data_for_node("inventory_items")
    assert failure is not None and "partial (forbidden)" in str(failure.error)
    checks = checks_of(instance, result)
    assert checks[SYNC_CHECK].passed is False
    assert checks[SYNC_CHECK].severity == dg.AssetCheckSeverity.WARN
    # Missing follows in the sync's own step, with its check, for this partition.
    missing = metadata_of(instance, result, "inventory_missing")
    assert missing["confidence"] == "low" and missing["baseline_run_id"] == sync["sync_run_id"]
    assert checks[MISSING_SHARE_CHECK].partition == str(KEY)
    assert failed_partitions(instance, "inventory_missing") == set()

    # The next complete sync turns the partition green again.
    sim.control.clear_faults(TENANT)
    again = dg.materialize(
        [inventory_items], partition_key=KEY, instance=instance, resources=resources
    )
    assert again.success and failed_partitions(instance, "inventory_items") == set()


def test_failed_sync_fails_its_partition_and_missing_shows_the_failed_baseline(
    instance: dg.DagsterInstance, resources: dict[str, object], sim: SimulatorServer
) -> None:
    add_partitions(instance)
    first = dg.materialize(
        [inventory_items, inventory_missing],
        partition_key=KEY,
        instance=instance,
        resources=resources,
    )
    assert metadata_of(instance, first, "inventory_missing")["confidence"] == "high"
    known = truth_count(sim)

    # Consent revoked / secret expired: the next sync cannot fetch anything.
    bad = {**resources, "graph": graph_resource(sim, client_secret="wrong")}
    result = dg.materialize(
        [inventory_items, inventory_missing],
        partition_key=KEY,
        instance=instance,
        resources=bad,
        raise_on_error=False,
    )
    assert not result.success  # loud: the run fails …
    failure = result.failure_data_for_node("inventory_items")
    assert failure is not None and "failed (authentication_failed)" in str(failure.error)
    # … and the partition shows failed, not the previous materialization.
    assert materialized(instance, result) == {"inventory_missing"}
    assert failed_partitions(instance, "inventory_items") == {str(KEY)}
    sync = observed_sync(instance, result)
    assert sync["status"] == "failed" and sync["error_codes"] == ["authentication_failed"]
    checks = checks_of(instance, result)
    check = checks[SYNC_CHECK]
    assert check.passed is False and check.severity == dg.AssetCheckSeverity.ERROR
    assert check.partition == str(KEY)
    assert "wrong" not in str(result.all_events)
    # inventory_missing was brought to the failed baseline by the sync's step itself; its
    # own step was skipped (upstream failed), so nothing runs it twice.
    missing = metadata_of(instance, result, "inventory_missing")
    assert missing["baseline_status"] == "failed" and missing["confidence"] == "low"
    assert missing["baseline_run_id"] == sync["sync_run_id"]
    assert missing["by_reason"] == {"type_not_fetched": known}
    assert checks[MISSING_SHARE_CHECK].passed is True


MATERIALIZE_IN_OWN_PROCESS = """
import sys, time
import dagster as dg
from inventory_pipelines.assets import inventory_items
from inventory_pipelines.partitions import partition_key, tenant_selection_partitions
from inventory_pipelines.resources import InventoryDatabase
from inventory_pipelines_tests.dagster.fixtures import TENANT_KEY, graph_resource
database_url, simulator_url, go = sys.argv[1], sys.argv[2], float(sys.argv[3])
with dg.instance_for_test() as instance:
    instance.add_dynamic_partitions("tenant", [TENANT_KEY])
    instance.add_dynamic_partitions("selection", ["compliance"])
    resources = {"inventory_db": InventoryDatabase(url=database_url),
                 "graph": graph_resource(simulator_url)}
    while time.time() < go:
        time.sleep(0.005)
    result = dg.materialize([inventory_items], instance=instance, resources=resources,
                            partition_key=partition_key(TENANT_KEY, "compliance"))
    # A skipped sync is not a look: its metadata is an observation, not a materialization.
    [event] = (result.asset_materializations_for_node("inventory_items")
               or result.asset_observations_for_node("inventory_items"))
    print(event.metadata["status"].value)
"""


def test_two_materializations_outside_the_queue_give_one_sync_and_one_skip(
    resources: dict[str, object], database_url: str, sim: SimulatorServer
) -> None:
    """Two processes materialize the same partition at once, bypassing the run queue."""
    sim.control.set_faults(TENANT, [{"kind": "latency", "ms": 1500}])
    go = str(time.time() + 8)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", MATERIALIZE_IN_OWN_PROCESS, database_url, sim.base_url, go],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert sorted(out.strip().splitlines()[-1] for out, _ in outputs) == ["skipped", "success"]
    database: InventoryDatabase = resources["inventory_db"]  # type: ignore[assignment]
    with database.engine().connect() as conn:
        rows = conn.execute(select(sync_runs.c.status, sync_runs.c.error_codes)).all()
    assert sorted(rows) == [("skipped", ["lock_held"]), ("success", [])]


@pytest.mark.parametrize("bad_setting", ["client_id", "client_secret"])
def test_missing_credentials_fail_at_run_start_naming_the_setting(
    instance: dg.DagsterInstance,
    resources: dict[str, object],
    sim: SimulatorServer,
    bad_setting: str,
) -> None:
    add_partitions(instance)
    bad = {**resources, "graph": graph_resource(sim, **{bad_setting: ""})}
    result = dg.materialize(
        [inventory_items],
        partition_key=KEY,
        instance=instance,
        resources=bad,
        raise_on_error=False,
    )
    assert not result.success
    failure = result.failure_data_for_node("inventory_items")
    env_name = "GRAPH_CLIENT_ID" if bad_setting == "client_id" else "GRAPH_CLIENT_SECRET"
    assert failure is not None and env_name in str(failure.error)


def test_runs_started_outside_our_code_are_tagged_with_the_tenant(
    instance: dg.DagsterInstance, resources: dict[str, object]
) -> None:
    """A UI backfill run carries only the partition; the asset adds key, name and GUID."""
    add_partitions(instance)
    result = dg.materialize(
        [inventory_items, inventory_missing],
        partition_key=KEY,
        instance=instance,
        resources=resources,
    )
    run = instance.get_run_by_id(result.run_id)
    assert run is not None
    assert run.tags[TENANT_KEY_TAG] == TENANT_KEY
    assert run.tags[TENANT_NAME_TAG] == TENANT_NAME
    assert run.tags[TENANT_ID_TAG] == TENANT
    assert run.tags["dagster/partition/tenant"] == TENANT_KEY


def test_partitions_named_by_guid_still_sync_the_tenant(
    instance: dg.DagsterInstance, resources: dict[str, object], sim: SimulatorServer
) -> None:
    """Instances from before tenant keys have GUID partitions; they resolve to the tenant."""
    instance.add_dynamic_partitions("tenant", [TENANT])
    instance.add_dynamic_partitions("selection", [SELECTION])
    result = dg.materialize(
        [inventory_items],
        partition_key=partition_key(TENANT, SELECTION),
        instance=instance,
        resources=resources,
    )
    assert metadata_of(instance, result, "inventory_items")["items_observed"] == truth_count(sim)


def test_an_unregistered_tenant_key_fails_the_run_clearly(
    instance: dg.DagsterInstance, resources: dict[str, object]
) -> None:
    instance.add_dynamic_partitions("tenant", ["fabrikam"])
    instance.add_dynamic_partitions("selection", [SELECTION])
    result = dg.materialize(
        [inventory_items],
        partition_key=partition_key("fabrikam", SELECTION),
        instance=instance,
        resources=resources,
        raise_on_error=False,
    )
    failure = result.failure_data_for_node("inventory_items")
    assert failure is not None and "'fabrikam' is not registered" in str(failure.error)
