"""The change feed on both dialects: each event kind, idempotency, failed types, selection
and tenant isolation, items stored before content hashes existed, and retention."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine, event, select, update

from inventory_pipelines.core.changes import (
    event_counts,
    prune_all_tenants,
    prune_changes,
    read_changes,
)
from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.schema import changes
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenancy import tenant_transaction
from inventory_pipelines_tests.core.helpers import (
    TENANT_A,
    TENANT_B,
    items,
    register,
    selection,
    sync,
)

SEL = selection("compliance", "compliance_policies", "scope_tags")
START = datetime(2026, 3, 1, tzinfo=UTC)


@pytest.fixture
def store(engine: Engine) -> InventoryStore:
    register(engine, TENANT_A, TENANT_B)
    ticks = iter(range(100_000))
    return InventoryStore(engine, clock=lambda: START + timedelta(seconds=next(ticks)))


def feed(store: InventoryStore, tenant_id: str = TENANT_A) -> list[tuple[Any, ...]]:
    """(event, external id, selection hash, reason, confidence) in time order (the events of
    one run by external id: their insertion order is the database's business)."""
    rows = sorted(
        read_changes(store.engine, tenant_id),
        key=lambda r: (r["occurred_at"], r["external_id"], r["event"]),
    )
    return [
        (r["event"], r["external_id"], r["selection_hash"], r["reason"], r["confidence"])
        for r in rows
    ]


def kinds(store: InventoryStore, tenant_id: str = TENANT_A) -> list[tuple[str, str]]:
    return [(e, x) for e, x, *_ in feed(store, tenant_id)]


def graph_item(external_id: str, **fields: Any) -> ObservedItem:
    return ObservedItem.from_graph({"id": external_id, "displayName": "P", **fields})


def test_first_sighting_is_added_with_run_and_time(store: InventoryStore) -> None:
    run, _ = sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    rows = read_changes(store.engine, TENANT_A)
    assert kinds(store) == [("added", "a"), ("added", "b")]
    started = store.get_sync_run(TENANT_A, run)["started_at"]
    assert {(r["sync_run_id"], r["occurred_at"]) for r in rows} == {(run, started)}
    assert all(r["reason"] is r["confidence"] is r["selection_hash"] is None for r in rows)
    assert event_counts(store.engine, TENANT_A, run) == {
        "added": 2,
        "changed": 0,
        "returned": 0,
        "went_missing": 0,
    }


def test_unchanged_resync_and_missing_recompute_write_no_events(store: InventoryStore) -> None:
    batch = {"compliance_policies": items("a", "b"), "scope_tags": items("t")}
    sync(store, TENANT_A, SEL, batch)
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a"), "scope_tags": items("t")})
    compute_missing(store.engine, TENANT_A, SEL)
    before = feed(store)
    assert before.count(("went_missing", "b", SEL.hash, "not_observed", "high")) == 1
    compute_missing(store.engine, TENANT_A, SEL)  # recompute: same baseline
    run, _ = sync(
        store, TENANT_A, SEL, {"compliance_policies": items("a"), "scope_tags": items("t")}
    )
    result = compute_missing(store.engine, TENANT_A, SEL)  # b still missing: newer baseline
    assert result.missing_count == 1 and result.went_missing == 0
    assert feed(store) == before
    assert set(event_counts(store.engine, TENANT_A, run).values()) == {0}


def test_content_change_is_changed_and_counted(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": [graph_item("a", x={"deep": [1, 2]})]})
    run, _ = sync(
        store, TENANT_A, SEL, {"compliance_policies": [graph_item("a", x={"deep": [1, 3]})]}
    )
    assert kinds(store) == [("added", "a"), ("changed", "a")]
    assert store.get_sync_run(TENANT_A, run)["items_updated"] == 1
    assert event_counts(store.engine, TENANT_A, run)["changed"] == 1


def test_change_only_in_an_annotation_is_not_changed(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": [graph_item("a", **{"@odata.etag": "1"})]})
    run, _ = sync(
        store,
        TENANT_A,
        SEL,
        {"compliance_policies": [graph_item("a", **{"@odata.etag": "2", "x@odata.context": "u"})]},
    )
    assert kinds(store) == [("added", "a")]
    assert store.get_sync_run(TENANT_A, run)["items_updated"] == 0


def test_returned_once_after_went_missing_then_missing_again(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a")})
    assert compute_missing(store.engine, TENANT_A, SEL).went_missing == 1
    back, _ = sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    # Seen again before missing was recomputed: a second sighting does not return it twice.
    other = selection("narrow", "compliance_policies")
    sync(store, TENANT_A, other, {"compliance_policies": items("b")})
    assert kinds(store)[-2:] == [("went_missing", "b"), ("returned", "b")]
    assert event_counts(store.engine, TENANT_A, back)["returned"] == 1
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a")})  # gone again
    assert compute_missing(store.engine, TENANT_A, SEL).went_missing == 1
    assert kinds(store)[-3:] == [("went_missing", "b"), ("returned", "b"), ("went_missing", "b")]


def test_returned_is_counted_on_the_sync(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a")})
    compute_missing(store.engine, TENANT_A, SEL)
    started = store.start_sync_run(TENANT_A, SEL)
    counts = store.upsert_items(
        TENANT_A,
        started.run_id,  # type: ignore[union-attr]
        "compliance_policies",
        items("a", "b"),
        seen_at=started.started_at,  # type: ignore[union-attr]
    )
    assert (counts.returned, counts.unchanged, counts.inserted) == (1, 2, 0)


def test_failed_type_goes_missing_with_low_confidence_never_high(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b"), "scope_tags": items("t")})
    sync(
        store,
        TENANT_A,
        SEL,
        {"scope_tags": items("t")},
        failed={"compliance_policies": "throttled"},
    )
    result = compute_missing(store.engine, TENANT_A, SEL)
    assert result.went_missing == 2
    went = [f for f in feed(store) if f[0] == "went_missing"]
    assert went == [
        ("went_missing", "a", SEL.hash, "type_not_fetched", "low"),
        ("went_missing", "b", SEL.hash, "type_not_fetched", "low"),
    ]
    # Fetched again: both return; nothing new went missing, nothing high was ever reported.
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b"), "scope_tags": items("t")})
    assert compute_missing(store.engine, TENANT_A, SEL).went_missing == 0
    assert [k for k in kinds(store) if k[0] == "returned"] == [("returned", "a"), ("returned", "b")]
    assert not [f for f in feed(store) if f[4] == "high"]


def test_went_missing_is_per_selection(store: InventoryStore) -> None:
    narrow = selection("narrow", "compliance_policies")
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    sync(store, TENANT_A, narrow, {"compliance_policies": items("a")})
    # The narrow selection's run did not see b: missing for it, and only for it.
    assert compute_missing(store.engine, TENANT_A, SEL).went_missing == 0
    assert compute_missing(store.engine, TENANT_A, narrow).went_missing == 1
    went = [f for f in feed(store) if f[0] == "went_missing"]
    assert went == [("went_missing", "b", narrow.hash, "not_observed", "high")]
    # Once SEL's own run also misses it, SEL reports it under its own selection hash.
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a")})
    assert compute_missing(store.engine, TENANT_A, SEL).went_missing == 1
    assert {f[2] for f in feed(store) if f[0] == "went_missing"} == {SEL.hash, narrow.hash}


def test_went_missing_run_is_the_baseline(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    baseline, _ = sync(store, TENANT_A, SEL, {"compliance_policies": items("a")})
    compute_missing(store.engine, TENANT_A, SEL)
    [row] = read_changes(store.engine, TENANT_A, run_id=baseline)
    assert (row["event"], row["external_id"]) == ("went_missing", "b")
    assert row["occurred_at"] == store.get_sync_run(TENANT_A, baseline)["started_at"]


def test_events_stay_with_their_tenant(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("shared", "a")})
    sync(store, TENANT_B, SEL, {"compliance_policies": items("shared")})
    sync(store, TENANT_B, SEL, {"compliance_policies": []})
    compute_missing(store.engine, TENANT_B, SEL)
    assert kinds(store, TENANT_A) == [("added", "a"), ("added", "shared")]
    assert kinds(store, TENANT_B) == [("added", "shared"), ("went_missing", "shared")]


def test_item_stored_before_hashes_gets_one_without_a_change(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    with tenant_transaction(store.engine, TENANT_A) as conn:  # as migration 0005 left them
        conn.execute(update(items_table).values(content_hash=None))
    # a: same name and metadata, first hash, no event; b: renamed meanwhile, a real change.
    run, _ = sync(
        store, TENANT_A, SEL, {"compliance_policies": items("a") + items("b", name="Renamed")}
    )
    assert kinds(store)[2:] == [("changed", "b")]
    with tenant_transaction(store.engine, TENANT_A) as conn:
        hashes = conn.execute(select(items_table.c.content_hash)).scalars().all()
    assert [len(h) for h in hashes] == [32, 32]
    assert store.get_sync_run(TENANT_A, run)["items_updated"] == 1


def test_read_changes_since_and_by_run(store: InventoryStore) -> None:
    first, _ = sync(store, TENANT_A, SEL, {"compliance_policies": items("a")})
    second, _ = sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    since = store.get_sync_run(TENANT_A, second)["started_at"]
    assert [r["external_id"] for r in read_changes(store.engine, TENANT_A, since=since)] == ["b"]
    assert [r["external_id"] for r in read_changes(store.engine, TENANT_A, run_id=first)] == ["a"]
    assert read_changes(store.engine, TENANT_B, run_id=first) == []


def _age_events(engine: Engine, tenant_id: str, days: int) -> None:
    with tenant_transaction(engine, tenant_id) as conn:
        conn.execute(
            update(changes)
            .where(changes.c.tenant_id == tenant_id)
            .values(occurred_at=START - timedelta(days=days))
        )


def test_retention_prunes_old_events_per_tenant_in_bounded_batches(
    store: InventoryStore, engine: Engine
) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items(*[f"p{i}" for i in range(7)])})
    sync(store, TENANT_B, SEL, {"compliance_policies": items("b1", "b2")})
    _age_events(engine, TENANT_A, 500)
    _age_events(engine, TENANT_B, 500)
    recent, _ = sync(store, TENANT_A, SEL, {"compliance_policies": items("new")})
    deletes: list[tuple[str, int]] = []

    def watch(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith("DELETE"):
            deletes.append((statement, cursor.rowcount))

    event.listen(engine, "after_cursor_execute", watch)
    try:
        deleted = prune_changes(engine, TENANT_A, before=START - timedelta(days=400), batch_size=3)
    finally:
        event.remove(engine, "after_cursor_execute", watch)
    assert deleted == 7
    assert [count for _, count in deletes] == [3, 3, 1]  # at most 3 rows per statement
    assert all("tenant_id" in statement for statement, _ in deletes)
    assert [r["external_id"] for r in read_changes(engine, TENANT_A)] == ["new"]
    assert len(read_changes(engine, TENANT_B)) == 2  # the other tenant is untouched
    assert read_changes(engine, TENANT_A, run_id=recent)


def test_prune_all_tenants_uses_the_retention_age(store: InventoryStore, engine: Engine) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a")})
    sync(store, TENANT_B, SEL, {"compliance_policies": items("b")})
    _age_events(engine, TENANT_A, 401)
    _age_events(engine, TENANT_B, 399)
    pruned = prune_all_tenants(engine, retention=timedelta(days=400), now=START, batch_size=2)
    assert dict(pruned) == {"tenant-1111": 1, "tenant-2222": 0}
    assert read_changes(engine, TENANT_A) == [] and len(read_changes(engine, TENANT_B)) == 1
