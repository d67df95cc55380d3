"""Coverage per tenant × policy type from the sync runs, on both dialects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from inventory_pipelines.core.coverage import (
    expected_policy_types,
    freshness,
    read_coverage,
    refresh_coverage,
)
from inventory_pipelines.core.coverage_report import coverage_csv, coverage_matrix
from inventory_pipelines.core.errors import ErrorCode
from inventory_pipelines.core.selection import load_selections
from inventory_pipelines.core.store import InventoryStore, RunSkipped, RunStarted
from inventory_pipelines.core.tenants import add_tenant, deactivate_tenant
from inventory_pipelines_tests.core.helpers import (
    TENANT_A,
    TENANT_B,
    items,
    register,
    selection,
    sync,
)

COMPLIANCE = selection("compliance", "compliance_policies", "compliance_scripts")
CA = selection("conditional_access", "conditional_access_policies")
TYPES = ["compliance_policies", "compliance_scripts", "conditional_access_policies"]
T0 = datetime(2026, 3, 1, 2, 0, tzinfo=UTC)


class Clock:
    """A settable clock for run start and finish times."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock(T0)


@pytest.fixture
def store(engine: Engine, clock: Clock) -> InventoryStore:
    register(engine, TENANT_A, TENANT_B)
    return InventoryStore(engine, clock=clock)


def by_type(rows: list[dict[str, object]], tenant_id: str = TENANT_A) -> dict[str, dict]:  # type: ignore[type-arg]
    return {str(r["policy_type"]): r for r in rows if r["tenant_id"] == tenant_id}


def test_complete_partial_failed_and_skipped_runs(
    engine: Engine, store: InventoryStore, clock: Clock
) -> None:
    complete, _ = sync(
        store,
        TENANT_A,
        COMPLIANCE,
        {"compliance_policies": items("p1", "p2"), "compliance_scripts": items("s1")},
    )
    clock.now = T0 + timedelta(hours=1)
    partial, status = sync(
        store,
        TENANT_A,
        COMPLIANCE,
        {"compliance_policies": items("p1", "p2", "p3")},
        failed={"compliance_scripts": "forbidden"},
    )
    assert status == "partial"
    clock.now = T0 + timedelta(hours=2)
    failed, status = sync(
        store,
        TENANT_A,
        CA,
        {},
        failed={"conditional_access_policies": "authentication_failed"},
    )
    assert status == "failed"
    # A skipped run (lock held) is no attempt: it must not hide the partial run's outcome.
    clock.now = T0 + timedelta(hours=3)
    holder = store.start_sync_run(TENANT_A, COMPLIANCE)
    assert isinstance(holder, RunStarted)
    assert isinstance(store.start_sync_run(TENANT_A, COMPLIANCE), RunSkipped)

    now = T0 + timedelta(hours=4)
    rows = refresh_coverage(engine, types=TYPES, now=now)
    assert rows == read_coverage(engine)
    a = by_type(rows)
    assert a["compliance_policies"] | {"computed_at": None} == {
        "tenant_id": TENANT_A,
        "tenant_key": "tenant-1111",
        "policy_type": "compliance_policies",
        "last_complete_at": T0 + timedelta(hours=1),
        "last_complete_run_id": partial,
        "item_count": 3,
        "latest_outcome": "complete",
        "latest_attempt_at": T0 + timedelta(hours=1),
        "latest_run_id": partial,
        "age_seconds": 3 * 3600,
        "computed_at": None,
    }
    scripts = a["compliance_scripts"]
    assert scripts["latest_outcome"] == "forbidden" and scripts["latest_run_id"] == partial
    assert scripts["last_complete_run_id"] == complete and scripts["item_count"] == 1
    assert scripts["age_seconds"] == 4 * 3600
    ca = a["conditional_access_policies"]
    assert ca["latest_outcome"] == "authentication_failed" and ca["latest_run_id"] == failed
    assert ca["last_complete_at"] is None and ca["age_seconds"] is None
    assert ca["item_count"] is None and ca["last_complete_run_id"] is None
    # Tenant B is active but never synced: a row per type, all empty.
    b = by_type(rows, TENANT_B)
    assert set(b) == set(TYPES)
    assert all(r["latest_outcome"] is None and r["last_complete_at"] is None for r in b.values())


def test_a_run_closed_before_recording_its_types_counts_with_its_error(
    engine: Engine, store: InventoryStore
) -> None:
    started = store.start_sync_run(TENANT_A, COMPLIANCE)
    assert isinstance(started, RunStarted)
    store.fail_sync_run(TENANT_A, started.run_id, ErrorCode.INTERNAL, "worker died")
    rows = by_type(refresh_coverage(engine, types=TYPES, now=T0))
    assert rows["compliance_policies"]["latest_outcome"] == "internal"
    assert rows["compliance_policies"]["latest_run_id"] == started.run_id
    assert rows["conditional_access_policies"]["latest_outcome"] is None


def test_refresh_replaces_rows_and_drops_deactivated_tenants(
    engine: Engine, store: InventoryStore, clock: Clock
) -> None:
    sync(store, TENANT_A, CA, {"conditional_access_policies": items("c1")})
    sync(store, TENANT_B, CA, {"conditional_access_policies": items("c1", "c2")})
    refresh_coverage(engine, types=TYPES, now=T0)
    deactivate_tenant(engine, TENANT_B)
    clock.now = T0 + timedelta(hours=1)
    sync(store, TENANT_A, CA, {"conditional_access_policies": items("c1", "c9")})
    rows = refresh_coverage(engine, types=["conditional_access_policies"], now=clock.now)
    assert [(r["tenant_id"], r["item_count"]) for r in rows] == [(TENANT_A, 2)]
    assert read_coverage(engine) == rows
    assert read_coverage(engine, tenant_ids=[TENANT_B]) == []


def test_only_the_named_tenants_are_refreshed(engine: Engine, store: InventoryStore) -> None:
    refresh_coverage(engine, types=TYPES, now=T0, tenant_ids=[TENANT_B])
    assert {r["tenant_id"] for r in read_coverage(engine)} == {TENANT_B}


def test_expected_types_are_those_of_the_configured_selections() -> None:
    configured = {t for s in load_selections().values() for t in s.policy_types}
    assert expected_policy_types() == sorted(configured)


def test_freshness_names_stale_pairs_and_never_complete_tenants(
    engine: Engine, store: InventoryStore, clock: Clock
) -> None:
    add_tenant(engine, "33333333-3333-4333-8333-333333333333", "Tenant 3333")
    sync(store, TENANT_A, COMPLIANCE, {"compliance_policies": items("p1")})  # scripts: 0 items
    clock.now = T0 + timedelta(hours=20)
    sync(store, TENANT_A, CA, {"conditional_access_policies": items("c1")})
    sync(store, TENANT_B, CA, {}, failed={"conditional_access_policies": "forbidden"})
    rows = refresh_coverage(engine, types=TYPES, now=T0 + timedelta(hours=20))

    def judge(hours_later: float) -> tuple[list[str], list[tuple[str, str]]]:
        result = freshness(rows, timedelta(hours=26), T0 + timedelta(hours=hours_later))
        return result.never_complete_tenants, [
            (p.tenant_key, p.policy_type) for p in result.stale_pairs
        ]

    # Tenant B tried and failed, tenant 3333 never ran: both never complete.
    assert judge(26) == (["tenant-2222", "tenant-3333"], [])
    assert judge(26.5) == (
        ["tenant-2222", "tenant-3333"],
        [("tenant-1111", "compliance_policies"), ("tenant-1111", "compliance_scripts")],
    )
    assert not freshness(rows[:3], timedelta(hours=26), T0 + timedelta(hours=21)).stale_pairs


def test_matrix_and_csv(engine: Engine, store: InventoryStore) -> None:
    sync(
        store,
        TENANT_A,
        COMPLIANCE,
        {"compliance_policies": items("p1")},
        failed={"compliance_scripts": "throttled"},
    )
    rows = refresh_coverage(engine, types=TYPES, now=T0 + timedelta(hours=5))
    matrix = coverage_matrix(rows).splitlines()
    assert matrix[0] == (
        "| tenant | compliance_policies | compliance_scripts | conditional_access_policies |"
    )
    assert matrix[2:4] == ["| tenant-1111 | ok 5h | throttled | · |", "| tenant-2222 | · | · | · |"]
    deactivate_tenant(engine, TENANT_B)
    rows = refresh_coverage(engine, types=TYPES, now=T0 + timedelta(hours=5))
    matrix = coverage_matrix(rows).splitlines()
    # compliance_policies is fine for every tenant left: the matrix leaves it out.
    assert matrix[0] == "| tenant | compliance_scripts | conditional_access_policies |"
    assert matrix[2] == "| tenant-1111 | throttled | · |"
    csv = coverage_csv(rows).splitlines()
    assert csv[0] == (
        "tenant_id,tenant_key,policy_type,last_complete_at,last_complete_run_id,item_count,"
        "latest_outcome,latest_attempt_at,latest_run_id,age_seconds,computed_at"
    )
    assert csv[1].startswith(
        f"{TENANT_A},tenant-1111,compliance_policies,2026-03-01T02:00:00+00:00,1,1,complete,"
    )
    assert csv[1].endswith(",18000,2026-03-01T07:00:00+00:00")
    assert (
        csv[3]
        == f"{TENANT_A},tenant-1111,conditional_access_policies,,,,,,,,2026-03-01T07:00:00+00:00"
    )
    assert coverage_matrix([]) == "No active tenants."
