"""End-to-end plain-Python sync: real simulator over loopback, real database (both dialects)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, func, select

from inventory_pipelines.core.missing import compute_missing, missing_items_for
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.core.selection import Selection, get_selection, validate_payload
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.settings import GraphSettings
from inventory_pipelines.graph.sync import SyncOptions, sync_partition
from inventory_pipelines.simulator import (
    SIMULATOR_CLIENT_ID,
    SimulatorServer,
)
from inventory_pipelines_tests.simulator_fixtures import simulator_client

TENANT = "3f1c2a9e-8d7b-4c6a-9e5f-1a2b3c4d5e6f"
OTHER_TENANT = "0a0b0c0d-1e1f-4a2b-8c3d-4e5f6a7b8c9d"
FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_total_wait=2.0)
SELECTION = Selection(
    "mixed",
    validate_payload(
        {
            "policy_types": [
                "settings_catalog_policies",
                "feature_update_profiles",
                "compliance_policies",
                "scope_tags",
                "conditional_access_policies",
                "mobile_apps",
            ]
        }
    ),
)


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[GraphClient]:
    # Identity throttling is off in the test simulator; pacing has its own test.
    with simulator_client(sim, FAST_RETRY) as graph:
        yield graph


@pytest.fixture
def store(engine: Engine, sim: SimulatorServer) -> InventoryStore:
    add_tenant(engine, TENANT, "Contoso")
    add_tenant(engine, OTHER_TENANT, "Fabrikam")
    sim.control.configure_tenant(
        TENANT,
        seed=7,
        sizes={"settings_catalog_policies": 260, "mobile_apps": 230, "scope_tags": 3},
    )
    return InventoryStore(engine)


def stored_ids(engine: Engine, tenant_id: str, policy_type: str) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.execute(
                select(items_table.c.external_id).where(
                    items_table.c.tenant_id == tenant_id, items_table.c.policy_type == policy_type
                )
            ).scalars()
        )


def truth(sim: SimulatorServer, policy_type: str) -> set[str]:
    return {item["id"] for item in sim.control.items(TENANT, policy_type)}


def test_sync_matches_ground_truth_and_resync_is_idempotent(
    store: InventoryStore, client: GraphClient, sim: SimulatorServer
) -> None:
    first = sync_partition(store, client, TENANT, SELECTION, correlation_id="dagster-run-1")
    assert first.status == "success" and first.error_codes == []
    total = 0
    for policy_type in SELECTION.policy_types:
        expected = truth(sim, policy_type)
        assert stored_ids(store.engine, TENANT, policy_type) == expected, policy_type
        assert first.types[policy_type].counts.inserted == len(expected)
        total += len(expected)
    assert first.items_observed == first.items_inserted == total > 290
    catalog = first.types["settings_catalog_policies"]
    # 260 items: $top=999 refused, 100 learned and kept for the process: 3 pages, 4 requests.
    assert (catalog.pages, catalog.requests) == (3, 4)

    second = sync_partition(store, client, TENANT, SELECTION)
    assert second.status == "success"
    assert second.types["settings_catalog_policies"].requests == 3
    assert (second.items_observed, second.items_inserted, second.items_updated) == (total, 0, 0)
    with store.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(items_table)).scalar_one() == total
    run = store.get_sync_run(TENANT, first.run_id)
    assert run["correlation_id"] == "dagster-run-1"
    assert run["policy_type_outcomes"] == {t: "complete" for t in SELECTION.policy_types}
    assert sum(run["policy_type_counts"].values()) == total


def test_deleted_items_become_missing_with_high_confidence(
    store: InventoryStore, client: GraphClient, sim: SimulatorServer
) -> None:
    sync_partition(store, client, TENANT, SELECTION)
    gone_apps = sorted(truth(sim, "mobile_apps"))[:5]
    gone_catalog = sorted(truth(sim, "settings_catalog_policies"))[:2]
    sim.control.delete_items(TENANT, "mobile_apps", gone_apps)
    sim.control.delete_items(TENANT, "settings_catalog_policies", gone_catalog)
    changed = sorted(truth(sim, "compliance_policies"))[:1]
    sim.control.modify_items(TENANT, "compliance_policies", changed)

    second = sync_partition(store, client, TENANT, SELECTION)
    assert second.status == "success" and second.items_updated == len(changed)
    result = compute_missing(store.engine, TENANT, SELECTION)
    assert result.confidence == "high" and result.baseline_run_id == second.run_id
    missing = {
        (r["policy_type"], r["external_id"]): r["reason"]
        for r in missing_items_for(store.engine, TENANT, SELECTION.hash)
    }
    expected = {("mobile_apps", i) for i in gone_apps} | {
        ("settings_catalog_policies", i) for i in gone_catalog
    }
    assert set(missing) == expected
    assert set(missing.values()) == {"not_observed"}


def test_forbidden_endpoint_gives_partial_run_and_low_confidence(
    store: InventoryStore, client: GraphClient, sim: SimulatorServer
) -> None:
    sync_partition(store, client, TENANT, SELECTION)
    sim.control.set_faults(
        TENANT, [{"kind": "status", "status": 403, "policy_type": "compliance_policies"}]
    )
    summary = sync_partition(store, client, TENANT, SELECTION)
    assert summary.status == "partial"
    assert summary.error_codes == ["forbidden"]
    assert summary.types["compliance_policies"].outcome == "forbidden"
    assert summary.types["mobile_apps"].outcome == "complete"
    run = store.get_sync_run(TENANT, summary.run_id)
    assert (
        run["had_errors"] is True
        and run["policy_type_outcomes"]["compliance_policies"] == "forbidden"
    )
    assert run["error_context"][0]["status"] == 403
    result = compute_missing(store.engine, TENANT, SELECTION)
    assert result.confidence == "low"
    reasons = {r["reason"] for r in missing_items_for(store.engine, TENANT, SELECTION.hash)}
    assert reasons == {"type_not_fetched"}  # a forbidden type never looks like deletions
    assert result.missing_count == len(truth(sim, "compliance_policies"))


def test_bad_secret_fails_the_run_without_touching_inventory(
    store: InventoryStore, sim: SimulatorServer
) -> None:
    settings = GraphSettings(
        client_id=SIMULATOR_CLIENT_ID,
        client_secret="wrong-secret-value",
        base_url=sim.base_url,
        authority_url=sim.base_url,
    )
    with GraphClient(settings, retry=FAST_RETRY) as bad_client:
        summary = sync_partition(store, bad_client, TENANT, SELECTION)
    assert summary.status == "failed" and summary.error_codes == ["authentication_failed"]
    assert store.item_count(TENANT) == 0
    assert sim.control.counters()["total"] == 0  # no Graph request without a token
    run = store.get_sync_run(TENANT, summary.run_id)
    assert "wrong-secret-value" not in repr(run)


def test_lock_is_released_when_the_sync_crashes(
    store: InventoryStore, client: GraphClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(store, "upsert_items", explode)
    monkeypatch.setattr(store, "finish_sync_run", explode)
    with pytest.raises(RuntimeError, match="disk on fire"):
        sync_partition(store, client, TENANT, SELECTION)
    with store.engine.connect() as conn:
        statuses = conn.execute(select(sync_runs.c.status, sync_runs.c.error_codes)).all()
    assert statuses == [("failed", ["internal"])]
    monkeypatch.undo()
    assert sync_partition(store, client, TENANT, SELECTION).status == "success"


def test_type_concurrency_bounds_requests_in_flight(
    store: InventoryStore, client: GraphClient, sim: SimulatorServer
) -> None:
    sim.control.set_faults(TENANT, [{"kind": "latency", "ms": 40}])
    everything = get_selection("all")
    summary = sync_partition(
        store, client, TENANT, everything, options=SyncOptions(type_concurrency=3)
    )
    assert summary.status == "success"
    counters = sim.control.counters()
    assert counters["max_in_flight"][TENANT] == 3
    assert set(counters["by_method"]) == {"GET"}


def test_two_tenants_with_the_same_data_stay_separate(
    store: InventoryStore, client: GraphClient, sim: SimulatorServer
) -> None:
    sim.control.configure_tenant(OTHER_TENANT, seed=7, sizes={"scope_tags": 3})
    narrow = Selection("tags", validate_payload({"policy_types": ["scope_tags"]}))
    sync_partition(store, client, TENANT, narrow)
    sync_partition(store, client, OTHER_TENANT, narrow)
    assert stored_ids(store.engine, TENANT, "scope_tags") == truth(sim, "scope_tags")
    other_truth = {i["id"] for i in sim.control.items(OTHER_TENANT, "scope_tags")}
    assert stored_ids(store.engine, OTHER_TENANT, "scope_tags") == other_truth


def test_a_full_sync_writes_only_inventory_tables(
    store: InventoryStore, client: GraphClient
) -> None:
    from sqlalchemy import inspect

    from inventory_pipelines_tests.core.test_side_effects import table_counts

    tables_before = set(inspect(store.engine).get_table_names())
    before = table_counts(store.engine)
    sync_partition(store, client, TENANT, SELECTION)
    compute_missing(store.engine, TENANT, SELECTION)
    after = table_counts(store.engine)
    assert set(inspect(store.engine).get_table_names()) == tables_before
    changed = {t for t in after if after[t] != before[t]}
    # nothing missing yet; every item `added` to the change feed
    assert changed == {"inventory_items", "inventory_sync_runs", "inventory_changes"}
    # Unlisted Graph fields (descriptions, settings) are hashed, never stored anywhere.
    with store.engine.connect() as conn:
        stored = repr([conn.exec_driver_sql(f'SELECT * FROM "{t}"').all() for t in sorted(after)])
    assert "Managed by IT, ticket #" not in stored
