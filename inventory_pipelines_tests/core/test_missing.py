from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from inventory_pipelines.core.missing import compute_missing, confidence_for, missing_items_for
from inventory_pipelines.core.store import InventoryStore, RunResult, RunStarted
from inventory_pipelines_tests.core.helpers import (
    TENANT_A,
    TENANT_B,
    items,
    register,
    selection,
    sync,
)

SEL = selection("compliance", "compliance_policies", "scope_tags")


@pytest.fixture
def store(engine: Engine) -> InventoryStore:
    register(engine, TENANT_A, TENANT_B)
    ticks = iter(range(10_000))
    start = datetime(2026, 3, 1, tzinfo=UTC)
    return InventoryStore(engine, clock=lambda: start + timedelta(seconds=next(ticks)))


def missing_ids(store: InventoryStore, tenant_id: str, sel=SEL) -> dict[str, str]:
    return {
        r["external_id"]: r["reason"] for r in missing_items_for(store.engine, tenant_id, sel.hash)
    }


def test_item_absent_from_latest_completed_run_is_missing(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b", "c")})
    run2, _ = sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "c")})
    result = compute_missing(store.engine, TENANT_A, SEL)
    assert result.confidence == "high"
    assert result.baseline_run_id == run2 and result.baseline_status == "success"
    assert result.missing_count == 1 and result.by_reason == {"not_observed": 1}
    assert missing_ids(store, TENANT_A) == {"b": "not_observed"}
    row = missing_items_for(store.engine, TENANT_A, SEL.hash)[0]
    assert row["baseline_run_id"] == run2 and row["confidence"] == "high"
    assert row["display_name"] == "Policy b"


def test_reappearing_item_is_no_longer_missing(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a")})
    assert compute_missing(store.engine, TENANT_A, SEL).missing_count == 1
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    assert compute_missing(store.engine, TENANT_A, SEL).missing_count == 0
    assert missing_ids(store, TENANT_A) == {}  # the partition's rows were replaced


def test_no_baseline_means_nothing_missing_and_unknown_confidence(store: InventoryStore) -> None:
    result = compute_missing(store.engine, TENANT_A, SEL)
    assert (result.confidence, result.baseline_run_id, result.missing_count) == ("unknown", None, 0)


def test_running_and_skipped_runs_are_never_the_baseline(store: InventoryStore) -> None:
    first, _ = sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b")})
    running = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(running, RunStarted)
    store.upsert_items(
        TENANT_A, running.run_id, "compliance_policies", items("a"), seen_at=running.started_at
    )
    store.start_sync_run(TENANT_A, SEL)  # skipped: lock held
    result = compute_missing(store.engine, TENANT_A, SEL)
    assert result.baseline_run_id == first
    assert result.missing_count == 0  # b was seen by the baseline; the running run is no judge


def test_selection_isolation(store: InventoryStore) -> None:
    narrow = selection("narrow", "compliance_policies")
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b"), "scope_tags": items("t")})
    # Another selection sees only 'a': it must not make 'b' (or 't') missing for SEL.
    sync(store, TENANT_A, narrow, {"compliance_policies": items("a")})
    assert compute_missing(store.engine, TENANT_A, SEL).missing_count == 0
    # The narrow selection's own baseline did not see b: missing there, and only there.
    compute_missing(store.engine, TENANT_A, narrow)
    assert missing_ids(store, TENANT_A, narrow) == {"b": "not_observed"}
    assert missing_ids(store, TENANT_A) == {}


def test_other_tenants_runs_do_not_matter(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("x", "y")})
    sync(store, TENANT_B, SEL, {"compliance_policies": items("x")})
    sync(store, TENANT_B, SEL, {"compliance_policies": items()})
    assert compute_missing(store.engine, TENANT_A, SEL).missing_count == 0
    assert compute_missing(store.engine, TENANT_B, SEL).missing_count == 1
    assert missing_ids(store, TENANT_B) == {"x": "not_observed"}
    assert missing_ids(store, TENANT_A) == {}


@pytest.mark.parametrize(
    "status, had_errors, expected",
    [
        ("success", False, "high"),
        ("success", True, "low"),
        ("partial", False, "low"),
        ("partial", True, "low"),
        ("failed", True, "low"),
    ],
)
def test_confidence_rule(status: str, had_errors: bool, expected: str) -> None:
    assert confidence_for(status, had_errors) == expected


def test_partial_baseline_gives_low_confidence_and_type_not_fetched(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b"), "scope_tags": items("t")})
    run2, status = sync(
        store,
        TENANT_A,
        SEL,
        {"compliance_policies": items("a")},
        failed={"scope_tags": "forbidden"},
    )
    assert status == "partial"
    result = compute_missing(store.engine, TENANT_A, SEL)
    assert result.confidence == "low" and result.baseline_status == "partial"
    assert missing_ids(store, TENANT_A) == {"b": "not_observed", "t": "type_not_fetched"}
    assert result.by_reason == {"not_observed": 1, "type_not_fetched": 1}
    assert store.get_sync_run(TENANT_A, run2)["error_codes"] == ["forbidden"]


def test_failed_baseline_marks_everything_type_not_fetched(store: InventoryStore) -> None:
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a"), "scope_tags": items("t")})
    _, status = sync(
        store,
        TENANT_A,
        SEL,
        {},
        failed={
            "compliance_policies": "authentication_failed",
            "scope_tags": "authentication_failed",
        },
    )
    assert status == "failed"
    result = compute_missing(store.engine, TENANT_A, SEL)
    assert result.confidence == "low"
    assert set(missing_ids(store, TENANT_A).values()) == {"type_not_fetched"}


def test_item_errors_make_a_success_partial_with_low_confidence(store: InventoryStore) -> None:
    _, status = sync(store, TENANT_A, SEL, {"compliance_policies": items("a")}, item_errors=2)
    assert status == "partial"
    assert compute_missing(store.engine, TENANT_A, SEL).confidence == "low"


def test_run_without_type_outcomes_counts_as_failed(store: InventoryStore) -> None:
    started = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(started, RunStarted)
    assert store.finish_sync_run(TENANT_A, started.run_id, RunResult()) == "failed"
