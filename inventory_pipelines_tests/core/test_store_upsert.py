from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, func, select

from inventory_pipelines.core.errors import InventoryError
from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.store import InventoryStore, RunStarted
from inventory_pipelines_tests.core.helpers import (
    TENANT_A,
    TENANT_B,
    items,
    register,
    selection,
    sync,
)

SEL = selection("compliance", "compliance_policies", "scope_tags")
SEL_START = datetime(2026, 1, 1, tzinfo=UTC)


def rows(engine: Engine, tenant_id: str) -> dict[str, dict]:
    with engine.connect() as conn:
        result = conn.execute(
            select(items_table).where(items_table.c.tenant_id == tenant_id)
        ).mappings()
        return {r["external_id"]: dict(r) for r in result}


def test_same_batch_twice_creates_no_duplicates(engine: Engine) -> None:
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    started = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(started, RunStarted)
    batch = items("a", "b", "c")
    first = store.upsert_items(
        TENANT_A, started.run_id, "compliance_policies", batch, seen_at=started.started_at
    )
    second = store.upsert_items(
        TENANT_A, started.run_id, "compliance_policies", batch, seen_at=started.started_at
    )
    assert (first.inserted, first.updated, first.unchanged) == (3, 0, 0)
    assert (second.inserted, second.updated) == (3, 0)  # same run: still its first sighting
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(items_table)).scalar_one() == 3


def test_resync_moves_only_last_seen(engine: Engine) -> None:
    register(engine, TENANT_A)
    ticks = iter(range(100))
    store = InventoryStore(engine)
    store.clock = lambda: SEL_START + timedelta(minutes=next(ticks))  # type: ignore[method-assign]
    batch = {"compliance_policies": items("a", "b"), "scope_tags": items("t")}
    run1, status1 = sync(store, TENANT_A, SEL, batch)
    before = rows(engine, TENANT_A)
    run2, status2 = sync(store, TENANT_A, SEL, batch)
    after = rows(engine, TENANT_A)
    assert status1 == status2 == "success"
    assert set(before) == set(after) == {"a", "b", "t"}
    for key in before:
        old, new = before[key], after[key]
        assert new["id"] == old["id"]
        assert new["first_seen_at"] == old["first_seen_at"]
        assert new["first_seen_run_id"] == old["first_seen_run_id"] == run1
        assert new["last_seen_run_id"] == run2 and old["last_seen_run_id"] == run1
        assert new["last_seen_at"] > old["last_seen_at"]
        moved = {"last_seen_at", "last_seen_run_id"}
        assert {k: v for k, v in new.items() if k not in moved} == {
            k: v for k, v in old.items() if k not in moved
        }
    run = store.get_sync_run(TENANT_A, run2)
    assert (run["items_observed"], run["items_inserted"], run["items_updated"]) == (3, 0, 0)


def test_changed_items_are_counted_and_updated(engine: Engine) -> None:
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    changed = [ObservedItem.build("a", "Renamed", {"version": 2}), *items("b"), *items("c")]
    run2, _ = sync(store, TENANT_A, SEL, {"compliance_policies": changed})
    run = store.get_sync_run(TENANT_A, run2)
    assert (run["items_observed"], run["items_inserted"], run["items_updated"]) == (3, 1, 1)
    stored = rows(engine, TENANT_A)
    assert stored["a"]["display_name"] == "Renamed"
    assert stored["a"]["meta_jsonb"] == {"version": 2}
    assert stored["a"]["last_changed_run_id"] == run2
    assert stored["b"]["last_changed_run_id"] != run2


def test_tenants_with_identical_external_ids_stay_apart(engine: Engine) -> None:
    register(engine, TENANT_A, TENANT_B)
    store = InventoryStore(engine)
    sync(store, TENANT_A, SEL, {"compliance_policies": items("shared", "only-a", name="A")})
    sync(store, TENANT_B, SEL, {"compliance_policies": items("shared", name="B")})
    a, b = rows(engine, TENANT_A), rows(engine, TENANT_B)
    assert set(a) == {"shared", "only-a"} and set(b) == {"shared"}
    assert a["shared"]["display_name"] == "A shared"
    assert b["shared"]["display_name"] == "B shared"
    assert a["shared"]["id"] != b["shared"]["id"]
    assert store.item_count(TENANT_A) == 2 and store.item_count(TENANT_B) == 1
    # B's run never touched A's row for the same external id.
    assert a["shared"]["last_seen_run_id"] != b["shared"]["last_seen_run_id"]


def test_reading_a_run_of_another_tenant_fails(engine: Engine) -> None:
    register(engine, TENANT_A, TENANT_B)
    store = InventoryStore(engine)
    run_a, _ = sync(store, TENANT_A, SEL, {})
    with pytest.raises(InventoryError, match="not found"):
        store.get_sync_run(TENANT_B, run_a)
