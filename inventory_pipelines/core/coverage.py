"""Coverage: per active tenant and policy type, the last complete fetch and the latest attempt.

It answers "which tenants could we not see?" from `inventory_sync_runs` alone. An attempt is a
completed run (`success`, `partial` or `failed`) whose selection held the type; running and
skipped runs are not attempts. A `failed` run records every selected type with its error code;
a run closed before it recorded a type (crash, takeover) counts as an attempt that failed with
the run's own error code. Runs are ordered by start, as the missing baseline is, and their
start is the time reported: the data of a fetch is at least that fresh.

The table is refreshed one tenant per transaction, every statement tenant-scoped (row-level
security on PostgreSQL), so a refresh of 500 tenants never holds one long transaction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, select, text

from inventory_pipelines.core.errors import ErrorCode
from inventory_pipelines.core.schema import coverage, sync_runs
from inventory_pipelines.core.selection import load_selections
from inventory_pipelines.core.store import COMPLETE, COMPLETED_STATUSES, utcnow
from inventory_pipelines.core.tenancy import tenant_transaction
from inventory_pipelines.core.tenants import Tenant, list_tenants

_PG_COVERAGE_LOCK = 0x0C0F_E2A6  # advisory lock class: one refresh of a tenant at a time
_READ_BATCH = 200

COVERAGE_COLUMNS = (
    "tenant_id",
    "tenant_key",
    "policy_type",
    "last_complete_at",
    "last_complete_run_id",
    "item_count",
    "latest_outcome",
    "latest_attempt_at",
    "latest_run_id",
    "age_seconds",
    "computed_at",
)


def expected_policy_types() -> list[str]:
    """Every type some configured selection fetches: what the schedule tries every night.

    A type no selection holds can never be fetched, so reporting it as "never" would be noise;
    with the shipped `all` selection this is the whole registry.
    """
    return sorted({t for s in load_selections().values() for t in s.policy_types})


@dataclass
class _TypeCoverage:
    last_complete_at: datetime | None = None
    last_complete_run_id: int | None = None
    item_count: int | None = None
    latest_outcome: str | None = None
    latest_attempt_at: datetime | None = None
    latest_run_id: int | None = None

    @property
    def settled(self) -> bool:
        return self.latest_run_id is not None and self.last_complete_run_id is not None


def _run_outcomes(run: Any) -> dict[str, str]:
    """Outcome per type the run selected; types it never recorded get the run's error."""
    recorded: Mapping[str, str] = run.policy_type_outcomes or {}
    selected = (run.selection_payload or {}).get("policy_types") or []
    codes = run.error_codes or []
    fallback = str(codes[0]) if codes else ErrorCode.INTERNAL.value
    return {str(t): str(recorded.get(t) or fallback) for t in {*selected, *recorded}}


def _scan_runs(conn: Connection, tenant_id: str, types: Sequence[str]) -> dict[str, _TypeCoverage]:
    """Walk the tenant's completed runs newest first, stopping once every type is settled."""
    found = {t: _TypeCoverage() for t in types}
    unsettled = set(types)
    query = (
        select(
            sync_runs.c.id,
            sync_runs.c.started_at,
            sync_runs.c.selection_payload,
            sync_runs.c.policy_type_outcomes,
            sync_runs.c.policy_type_counts,
            sync_runs.c.error_codes,
        )
        .where(
            sync_runs.c.tenant_id == tenant_id,
            sync_runs.c.status.in_(COMPLETED_STATUSES),
        )
        .order_by(sync_runs.c.started_at.desc(), sync_runs.c.id.desc())
        .execution_options(yield_per=_READ_BATCH)
    )
    with closing(conn.execute(query)) as runs:
        for run in runs:
            counts: Mapping[str, int] = run.policy_type_counts or {}
            for policy_type, outcome in _run_outcomes(run).items():
                entry = found.get(policy_type)
                if entry is None or policy_type not in unsettled:
                    continue
                if entry.latest_run_id is None:
                    entry.latest_run_id = int(run.id)
                    entry.latest_attempt_at = run.started_at
                    entry.latest_outcome = outcome
                if outcome == COMPLETE and entry.last_complete_run_id is None:
                    entry.last_complete_run_id = int(run.id)
                    entry.last_complete_at = run.started_at
                    count = counts.get(policy_type)
                    entry.item_count = int(count) if count is not None else None
                if entry.settled:
                    unsettled.discard(policy_type)
            if not unsettled:
                break
    return found


def age_seconds(since: datetime | None, now: datetime) -> int | None:
    """Whole seconds from `since` to `now` (never negative), None when there is no `since`."""
    if since is None:
        return None
    return max(0, int((now - since).total_seconds()))


def _lock_tenant(conn: Connection, tenant_id: str) -> None:
    """PostgreSQL: serialize refreshes of one tenant (the asset and the CLI may overlap);
    SQLite's BEGIN IMMEDIATE already does."""
    if conn.dialect.name == "postgresql":
        conn.execute(
            text("SELECT pg_advisory_xact_lock(:k, hashtext(:t))"),
            {"k": _PG_COVERAGE_LOCK, "t": tenant_id},
        )


def refresh_tenant_coverage(
    engine: Engine, tenant: Tenant, types: Sequence[str], now: datetime
) -> list[dict[str, Any]]:
    """Replace one tenant's coverage rows in one tenant-scoped transaction; return them."""
    with tenant_transaction(engine, tenant.tenant_id) as conn:
        _lock_tenant(conn, tenant.tenant_id)
        found = _scan_runs(conn, tenant.tenant_id, types)
        rows = [
            {
                "tenant_id": tenant.tenant_id,
                "tenant_key": tenant.tenant_key,
                "policy_type": policy_type,
                "last_complete_at": entry.last_complete_at,
                "last_complete_run_id": entry.last_complete_run_id,
                "item_count": entry.item_count,
                "latest_outcome": entry.latest_outcome,
                "latest_attempt_at": entry.latest_attempt_at,
                "latest_run_id": entry.latest_run_id,
                "age_seconds": age_seconds(entry.last_complete_at, now),
                "computed_at": now,
            }
            for policy_type, entry in sorted(found.items())
        ]
        conn.execute(delete(coverage).where(coverage.c.tenant_id == tenant.tenant_id))
        if rows:
            conn.execute(coverage.insert(), rows)
    return rows


def _clear_tenant(engine: Engine, tenant_id: str) -> None:
    with tenant_transaction(engine, tenant_id) as conn:
        _lock_tenant(conn, tenant_id)
        conn.execute(delete(coverage).where(coverage.c.tenant_id == tenant_id))


def refresh_coverage(
    engine: Engine,
    *,
    types: Iterable[str] | None = None,
    now: datetime | None = None,
    tenant_ids: Iterable[str] | None = None,
) -> list[dict[str, Any]]:
    """Refresh `inventory_coverage` for every active tenant (or only `tenant_ids`), one
    transaction each; deactivated tenants lose their rows. Returns the new rows."""
    now = now or utcnow()
    wanted = sorted(set(types if types is not None else expected_policy_types()))
    only = set(tenant_ids) if tenant_ids is not None else None
    rows: list[dict[str, Any]] = []
    for tenant in list_tenants(engine):
        if only is not None and tenant.tenant_id not in only:
            continue
        if tenant.active:
            rows.extend(refresh_tenant_coverage(engine, tenant, wanted, now))
        else:
            _clear_tenant(engine, tenant.tenant_id)
    return rows


def read_coverage(
    engine: Engine, *, tenant_ids: Iterable[str] | None = None
) -> list[dict[str, Any]]:
    """The stored rows of active tenants (or of `tenant_ids`), read tenant by tenant."""
    only = set(tenant_ids) if tenant_ids is not None else None
    rows: list[dict[str, Any]] = []
    for tenant in list_tenants(engine, active_only=True):
        if only is not None and tenant.tenant_id not in only:
            continue
        with tenant_transaction(engine, tenant.tenant_id) as conn:
            rows.extend(
                dict(row._mapping)
                for row in conn.execute(
                    select(coverage)
                    .where(coverage.c.tenant_id == tenant.tenant_id)
                    .order_by(coverage.c.policy_type)
                )
            )
    return rows


@dataclass(frozen=True)
class StalePair:
    tenant_key: str
    policy_type: str
    last_complete_at: datetime | None
    latest_outcome: str | None


@dataclass(frozen=True)
class Freshness:
    """What `coverage_is_fresh` reports: tenants with no complete fetch of any type, and the
    (tenant, type) pairs of the other tenants whose last complete fetch is too old or absent."""

    max_age: timedelta
    never_complete_tenants: list[str] = field(default_factory=list)
    stale_pairs: list[StalePair] = field(default_factory=list)

    @property
    def fresh(self) -> bool:
        return not self.never_complete_tenants and not self.stale_pairs


def freshness(rows: Iterable[Mapping[str, Any]], max_age: timedelta, now: datetime) -> Freshness:
    """Judge coverage rows against `max_age` at `now`."""
    by_tenant: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_tenant.setdefault(str(row["tenant_key"]), []).append(row)
    never: list[str] = []
    stale: list[StalePair] = []
    for tenant_key, tenant_rows in sorted(by_tenant.items()):
        if all(r["last_complete_at"] is None for r in tenant_rows):
            never.append(tenant_key)
            continue
        for r in sorted(tenant_rows, key=lambda r: str(r["policy_type"])):
            last = r["last_complete_at"]
            if last is None or now - last > max_age:
                stale.append(StalePair(tenant_key, r["policy_type"], last, r["latest_outcome"]))
    return Freshness(max_age, never, stale)
