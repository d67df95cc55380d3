"""The change feed, `inventory_changes`: one row per item event, written in the transaction
that wrote the data it describes.

- `added`: the item was first seen (by this sync run).
- `changed`: its content hash differs from the stored one (`core/content_hash.py`). A row
  stored before hashes existed gets its first hash without a `changed`, unless its name or
  metadata differ.
- `went_missing`: the missing computation of one selection found it missing and it was not
  already missing *in the same way* for that selection: the partition's previous
  `inventory_missing` row for the item, if any, recorded an older sighting (`last_seen_at`).
  Recomputing, or later syncs that still do not see it, change nothing: one event per
  disappearance and selection. A change of reason or confidence while it stays missing is
  not a new event. The event carries the selection hash, reason and confidence; its run is
  the baseline run that did not see the item.
- `returned`: a sync saw an item that a missing computation reported and that no sync has
  seen since: some `inventory_missing` row (any selection) still holds the item's current
  `last_seen_at`. The first sighting moves `last_seen_at`, so the item returns once, however
  many selections reported it; it went missing again only after a newer sighting.

`sync_run_id` is the run that saw the event and `occurred_at` that run's start (the time
`last_seen_at` carries too). A unique index on (tenant, run, item, event) makes a retried
batch or recompute add nothing. Events older than the retention are pruned per tenant in
bounded batches. Every statement is tenant-scoped.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, Engine, delete, func, select
from sqlalchemy.dialects import postgresql, sqlite

from inventory_pipelines.core.schema import changes, items
from inventory_pipelines.core.tenancy import tenant_transaction
from inventory_pipelines.core.tenant_ids import normalize_tenant_id
from inventory_pipelines.core.tenants import list_tenants

ADDED = "added"
CHANGED = "changed"
RETURNED = "returned"
WENT_MISSING = "went_missing"
EVENTS = (ADDED, CHANGED, RETURNED, WENT_MISSING)

DEFAULT_RETENTION_DAYS = 400
DEFAULT_PRUNE_BATCH = 5000
"""Rows one retention DELETE removes at most: short transactions, bounded WAL bursts."""

CHANGE_COLUMNS = (
    "id",
    "tenant_id",
    "policy_type",
    "external_id",
    "item_id",
    "event",
    "sync_run_id",
    "selection_hash",
    "reason",
    "confidence",
    "occurred_at",
)

# Used by the upsert (core/bulk_upsert.py) on both dialects, before it moves last_seen_at.
SQL_REPORTED_MISSING = """SELECT DISTINCT m.item_id
    FROM inventory_missing m
    JOIN inventory_items o ON o.id = m.item_id
    WHERE m.tenant_id = {tenant} AND m.policy_type = {policy_type}
      AND o.tenant_id = m.tenant_id AND o.last_seen_at = m.last_seen_at"""
"""Items of one type that a missing computation reported and no sync has seen since."""

SQL_INSERT_SYNC_EVENT = (
    "INSERT INTO inventory_changes"
    " (tenant_id, policy_type, external_id, item_id, event, sync_run_id, occurred_at)"
)


def _insert_ignoring_repeats(conn: Connection, rows: list[dict[str, Any]]) -> int:
    """Insert events; one already recorded for the same (item, kind, run) is skipped.
    Returns how many were inserted."""
    if not rows:
        return 0
    dialect = postgresql if conn.dialect.name == "postgresql" else sqlite
    statement = (
        dialect.insert(changes)
        .on_conflict_do_nothing(index_elements=["tenant_id", "sync_run_id", "item_id", "event"])
        .returning(changes.c.id)
    )
    return len(conn.execute(statement, rows).all())


def record_went_missing(
    conn: Connection,
    tenant_id: str,
    selection_hash: str,
    baseline: Any,
    confidence: str,
    previous: Collection[tuple[int, datetime]],
    missing_rows: Iterable[Any],
) -> int:
    """`went_missing` for each new missing row not already missing with the same sighting.

    `previous` holds (item id, last_seen_at) of the partition's rows before the recompute;
    `missing_rows` the new rows (item_id, policy_type, external_id, last_seen_at, reason).
    Runs inside the missing computation's transaction. Returns the events written.
    """
    rows = [
        {
            "tenant_id": tenant_id,
            "policy_type": row.policy_type,
            "external_id": row.external_id,
            "item_id": row.item_id,
            "event": WENT_MISSING,
            "sync_run_id": baseline.id,
            "selection_hash": selection_hash,
            "reason": row.reason,
            "confidence": confidence,
            "occurred_at": baseline.started_at,
        }
        for row in missing_rows
        if (row.item_id, row.last_seen_at) not in previous
    ]
    return _insert_ignoring_repeats(conn, rows)


def event_counts(engine: Engine, tenant_id: str, run_id: int) -> dict[str, int]:
    """Events recorded for one sync run, per kind (every kind present, zeros included)."""
    tenant_id = normalize_tenant_id(tenant_id)
    with tenant_transaction(engine, tenant_id) as conn:
        found: dict[str, int] = dict(
            conn.execute(
                select(changes.c.event, func.count())
                .where(changes.c.tenant_id == tenant_id, changes.c.sync_run_id == run_id)
                .group_by(changes.c.event)
            ).all()
        )
    return {event: int(found.get(event, 0)) for event in EVENTS}


def read_changes(
    engine: Engine,
    tenant_id: str,
    *,
    since: datetime | None = None,
    run_id: int | None = None,
    limit: int | None = None,
) -> list[dict[str, Any]]:
    """One tenant's events, oldest first: all, those since a time, or those of one run; with
    the item's current display name (not part of the event)."""
    tenant_id = normalize_tenant_id(tenant_id)
    query = (
        select(changes, items.c.display_name)
        .join_from(
            changes,
            items,
            (items.c.tenant_id == changes.c.tenant_id) & (items.c.id == changes.c.item_id),
            isouter=True,
        )
        .where(changes.c.tenant_id == tenant_id)
    )
    if since is not None:
        query = query.where(changes.c.occurred_at >= since)
    if run_id is not None:
        query = query.where(changes.c.sync_run_id == run_id)
    query = query.order_by(changes.c.occurred_at, changes.c.id)
    if limit is not None:
        query = query.limit(limit)
    with tenant_transaction(engine, tenant_id) as conn:
        return [dict(row._mapping) for row in conn.execute(query)]


def prune_changes(
    engine: Engine, tenant_id: str, *, before: datetime, batch_size: int = DEFAULT_PRUNE_BATCH
) -> int:
    """Delete one tenant's events that occurred before `before`, oldest first, at most
    `batch_size` rows per statement and transaction. Returns how many were deleted."""
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1")
    tenant_id = normalize_tenant_id(tenant_id)
    oldest = (
        select(changes.c.id)
        .where(changes.c.tenant_id == tenant_id, changes.c.occurred_at < before)
        .order_by(changes.c.occurred_at, changes.c.id)
        .limit(batch_size)
    )
    statement = delete(changes).where(changes.c.tenant_id == tenant_id, changes.c.id.in_(oldest))
    total = 0
    while True:
        with tenant_transaction(engine, tenant_id) as conn:
            deleted = int(conn.execute(statement).rowcount)
        total += deleted
        if deleted < batch_size:
            return total


def prune_all_tenants(
    engine: Engine,
    *,
    retention: timedelta,
    now: datetime,
    batch_size: int = DEFAULT_PRUNE_BATCH,
) -> Mapping[str, int]:
    """Prune every registered tenant (active or not), one tenant after the other; returns
    the rows deleted per tenant key."""
    before = now - retention
    return {
        tenant.tenant_key: prune_changes(
            engine, tenant.tenant_id, before=before, batch_size=batch_size
        )
        for tenant in list_tenants(engine)
    }
