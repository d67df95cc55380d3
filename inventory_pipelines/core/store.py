"""The inventory store: sync runs with their database-enforced lock, and the item upsert.

Every method takes the tenant id and every statement filters on it, so no code path here can
read or change another tenant's rows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, Engine, func, select, update
from sqlalchemy.exc import IntegrityError

from inventory_pipelines.core.bulk_upsert import upsert_postgresql, upsert_sqlite
from inventory_pipelines.core.errors import ErrorCode, InventoryError
from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.redaction import redact_value
from inventory_pipelines.core.schema import from_sqlite_timestamp, items, sync_runs
from inventory_pipelines.core.selection import Selection
from inventory_pipelines.core.tenancy import tenant_transaction
from inventory_pipelines.core.tenant_ids import normalize_tenant_id
from inventory_pipelines.core.tenants import require_active_tenant

DEFAULT_LEASE = timedelta(minutes=10)
COMPLETE = "complete"
COMPLETED_STATUSES = ("success", "partial", "failed")

Clock = Callable[[], datetime]


def utcnow() -> datetime:
    return datetime.now(UTC)


def database_now(conn: Connection) -> datetime:
    """The database server's time: the one clock every worker and host agrees on, so run
    start times order runs correctly whichever machine started them."""
    if conn.dialect.name == "postgresql":
        # clock_timestamp(), not now(): the time of this call, not of the transaction's start.
        server_time: datetime = conn.execute(select(func.clock_timestamp())).scalar_one()
        return server_time.astimezone(UTC)
    # SQLite has no server: the one host that opens the file is the clock (millisecond
    # precision), parsed so it is stored in the same text format as every other timestamp.
    stamp = conn.execute(select(func.strftime("%Y-%m-%d %H:%M:%f", "now"))).scalar_one()
    return from_sqlite_timestamp(stamp)


class RunAbandonedError(InventoryError):
    """This run's lock was taken over (its heartbeat went stale); it must stop writing."""

    code = ErrorCode.RUN_ABANDONED


@dataclass(frozen=True)
class RunStarted:
    run_id: int
    started_at: datetime
    took_over_run_id: int | None = None


@dataclass(frozen=True)
class RunSkipped:
    run_id: int
    holder_run_id: int


@dataclass
class UpsertCounts:
    """Observed items: first seen, content changed, unchanged; `returned` counts those among
    them that came back after being reported missing."""

    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    returned: int = 0

    @property
    def observed(self) -> int:
        return self.inserted + self.updated + self.unchanged

    def add(self, other: UpsertCounts) -> None:
        self.inserted += other.inserted
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.returned += other.returned


@dataclass
class RunResult:
    """What a sync run found, per policy type: `complete` or the error code that stopped it."""

    policy_type_outcomes: dict[str, str] = field(default_factory=dict)
    policy_type_counts: dict[str, int] = field(default_factory=dict)
    counts: UpsertCounts = field(default_factory=UpsertCounts)
    item_errors: int = 0
    error_context: list[dict[str, Any]] = field(default_factory=list)

    @property
    def error_codes(self) -> list[str]:
        codes = {o for o in self.policy_type_outcomes.values() if o != COMPLETE}
        codes.update(str(e["code"]) for e in self.error_context if e.get("code"))
        if self.item_errors:
            codes.add(ErrorCode.INVALID_ITEM.value)
        return sorted(codes)

    @property
    def error_count(self) -> int:
        failed_types = sum(1 for o in self.policy_type_outcomes.values() if o != COMPLETE)
        return failed_types + self.item_errors

    @property
    def status(self) -> str:
        return final_status(self.policy_type_outcomes, self.item_errors)


def final_status(outcomes: Mapping[str, str], item_errors: int = 0) -> str:
    """`failed` when nothing could be fetched, `partial` on any error, else `success`."""
    if not outcomes or all(o != COMPLETE for o in outcomes.values()):
        return "failed"
    if item_errors or any(o != COMPLETE for o in outcomes.values()):
        return "partial"
    return "success"


def _still_running(tenant_id: str, run_id: int) -> tuple[ColumnElement[bool], ...]:
    """This tenant's run `run_id`, only while it still holds the lock."""
    return (
        sync_runs.c.tenant_id == tenant_id,
        sync_runs.c.id == run_id,
        sync_runs.c.status == "running",
    )


class InventoryStore:
    """Sync runs and inventory items of one database; safe to share between threads.

    Run times (start, heartbeat, finish, lease staleness) come from the database's clock
    unless a `clock` is injected (tests).
    """

    def __init__(
        self, engine: Engine, *, lease: timedelta = DEFAULT_LEASE, clock: Clock | None = None
    ):
        self.engine = engine
        self.lease = lease
        self.clock = clock

    def _now(self, conn: Connection) -> datetime:
        """The injected clock's time, else the database's, read inside `conn`'s transaction."""
        return self.clock() if self.clock is not None else database_now(conn)

    # -- runs and the lock -------------------------------------------------------------

    def start_sync_run(
        self, tenant_id: str, selection: Selection, *, correlation_id: str | None = None
    ) -> RunStarted | RunSkipped:
        """Take the (tenant, selection) lock by inserting a `running` run.

        The partial unique index admits one running run per (tenant, selection hash); a
        holder whose heartbeat is older than the lease is closed as `run_abandoned` first.
        """
        tenant_id = normalize_tenant_id(tenant_id)
        require_active_tenant(self.engine, tenant_id)
        took_over: int | None = None
        for _ in range(5):
            try:
                with tenant_transaction(self.engine, tenant_id) as conn:
                    now = self._now(conn)
                    run = conn.execute(
                        sync_runs.insert()
                        .values(
                            **self._run_row(tenant_id, selection, correlation_id, now, "running")
                        )
                        .returning(sync_runs.c.id, sync_runs.c.started_at)
                    ).one()
                # The stored start, exactly: the sync stamps its items with it.
                return RunStarted(int(run.id), run.started_at, took_over)
            except IntegrityError:
                pass
            with tenant_transaction(self.engine, tenant_id) as conn:
                now = self._now(conn)
                holder = conn.execute(
                    select(sync_runs.c.id, sync_runs.c.heartbeat_at).where(
                        sync_runs.c.tenant_id == tenant_id,
                        sync_runs.c.selection_hash == selection.hash,
                        sync_runs.c.status == "running",
                    )
                ).first()
                if holder is None:
                    continue
                if holder.heartbeat_at < now - self.lease:
                    if self._abandon(conn, tenant_id, holder.id, now):
                        took_over = int(holder.id)
                    continue
                row = self._run_row(tenant_id, selection, correlation_id, now, "skipped")
                row.update(
                    finished_at=now,
                    had_errors=True,
                    error_count=1,
                    error_codes=[ErrorCode.LOCK_HELD.value],
                    error_context=[{"code": ErrorCode.LOCK_HELD.value, "holder_run_id": holder.id}],
                )
                skipped_id = conn.execute(
                    sync_runs.insert().values(**row).returning(sync_runs.c.id)
                ).scalar_one()
                return RunSkipped(int(skipped_id), int(holder.id))
        raise InventoryError(f"could not take the run lock for tenant {tenant_id}")

    def _run_row(
        self,
        tenant_id: str,
        selection: Selection,
        correlation_id: str | None,
        now: datetime,
        status: str,
    ) -> dict[str, Any]:
        return {
            "tenant_id": tenant_id,
            "selection_name": selection.name,
            "selection_hash": selection.hash,
            "selection_payload": selection.payload,
            "status": status,
            "had_errors": False,
            "started_at": now,
            "heartbeat_at": now,
            "items_observed": 0,
            "items_inserted": 0,
            "items_updated": 0,
            "error_count": 0,
            "policy_type_counts": {},
            "policy_type_outcomes": {},
            "error_codes": [],
            "error_context": [],
            "correlation_id": correlation_id,
        }

    def _abandon(self, conn: Connection, tenant_id: str, run_id: int, now: datetime) -> bool:
        result = conn.execute(
            update(sync_runs)
            .where(
                *_still_running(tenant_id, run_id),
                sync_runs.c.heartbeat_at < now - self.lease,
            )
            .values(
                status="failed",
                had_errors=True,
                finished_at=now,
                error_count=sync_runs.c.error_count + 1,
                error_codes=[ErrorCode.RUN_ABANDONED.value],
                error_context=[
                    {
                        "code": ErrorCode.RUN_ABANDONED.value,
                        "message": "heartbeat older than the lease; lock taken over",
                    }
                ],
            )
        )
        return bool(result.rowcount)

    def heartbeat(self, tenant_id: str, run_id: int) -> None:
        """Prove this run is alive; raises RunAbandonedError when it was taken over."""
        tenant_id = normalize_tenant_id(tenant_id)
        with tenant_transaction(self.engine, tenant_id) as conn:
            result = conn.execute(
                update(sync_runs)
                .where(
                    *_still_running(tenant_id, run_id),
                )
                .values(heartbeat_at=self._now(conn))
            )
        if result.rowcount == 0:
            raise RunAbandonedError(f"sync run {run_id} no longer holds its lock")

    def finish_sync_run(self, tenant_id: str, run_id: int, result: RunResult) -> str:
        """Close the run with its final status and counts, releasing the lock."""
        tenant_id = normalize_tenant_id(tenant_id)
        status = result.status
        with tenant_transaction(self.engine, tenant_id) as conn:
            now = self._now(conn)
            updated = conn.execute(
                update(sync_runs)
                .where(
                    *_still_running(tenant_id, run_id),
                )
                .values(
                    status=status,
                    had_errors=bool(result.error_codes),
                    finished_at=now,
                    heartbeat_at=now,
                    items_observed=result.counts.observed,
                    items_inserted=result.counts.inserted,
                    items_updated=result.counts.updated,
                    error_count=result.error_count,
                    policy_type_counts=dict(sorted(result.policy_type_counts.items())),
                    policy_type_outcomes=dict(sorted(result.policy_type_outcomes.items())),
                    error_codes=result.error_codes,
                    error_context=redact_value(result.error_context),
                )
            )
        if updated.rowcount == 0:
            raise RunAbandonedError(f"sync run {run_id} was taken over before it finished")
        return status

    def fail_sync_run(self, tenant_id: str, run_id: int, code: ErrorCode, message: str) -> None:
        """Close a run that crashed; best effort, never raises for a run already closed."""
        tenant_id = normalize_tenant_id(tenant_id)
        with tenant_transaction(self.engine, tenant_id) as conn:
            now = self._now(conn)
            conn.execute(
                update(sync_runs)
                .where(
                    *_still_running(tenant_id, run_id),
                )
                .values(
                    status="failed",
                    had_errors=True,
                    finished_at=now,
                    heartbeat_at=now,
                    error_count=sync_runs.c.error_count + 1,
                    error_codes=[code.value],
                    error_context=redact_value([{"code": code.value, "message": message}]),
                )
            )

    def get_sync_run(self, tenant_id: str, run_id: int) -> dict[str, Any]:
        tenant_id = normalize_tenant_id(tenant_id)
        with tenant_transaction(self.engine, tenant_id) as conn:
            row = conn.execute(
                select(sync_runs).where(
                    sync_runs.c.tenant_id == tenant_id,
                    sync_runs.c.id == run_id,
                )
            ).first()
        if row is None:
            raise InventoryError(f"sync run {run_id} not found for tenant {tenant_id}")
        return dict(row._mapping)

    # -- items ----------------------------------------------------------------------------

    def upsert_items(
        self,
        tenant_id: str,
        run_id: int,
        policy_type: str,
        batch: Iterable[ObservedItem],
        *,
        seen_at: datetime,
    ) -> UpsertCounts:
        """Insert new items and touch known ones, set-based, in one transaction with their
        `added` / `changed` / `returned` events.

        Unchanged items get only `last_seen_*`; changed ones (another content hash) also
        their name, metadata, hash and `last_changed_*`. An item a newer run already saw keeps
        that run's view (runs of other selections overlap). See `bulk_upsert` for how each
        dialect does it.
        """
        tenant_id = normalize_tenant_id(tenant_id)
        unique = {item.external_id: item for item in batch}
        if not unique:
            return UpsertCounts()
        upsert = upsert_postgresql if self.engine.dialect.name == "postgresql" else upsert_sqlite
        with tenant_transaction(self.engine, tenant_id) as conn:
            self._require_lock(conn, tenant_id, run_id)
            done = upsert(conn, tenant_id, policy_type, run_id, seen_at, list(unique.values()))
        return UpsertCounts(
            done.inserted, done.updated, done.observed - done.inserted - done.updated, done.returned
        )

    def _require_lock(self, conn: Connection, tenant_id: str, run_id: int) -> None:
        """Write only while the run holds its lock. A run taken over while it was frozen or
        cut off would otherwise write its older `last_seen_*` over the newer run's, making
        observed items look missing. FOR SHARE (PostgreSQL) makes a takeover wait for this
        transaction; SQLite's BEGIN IMMEDIATE already serializes the two."""
        holds = conn.execute(
            select(sync_runs.c.id)
            .where(*_still_running(tenant_id, run_id))
            .with_for_update(read=True)
        ).first()
        if holds is None:
            raise RunAbandonedError(f"sync run {run_id} no longer holds its lock; batch dropped")

    def item_count(self, tenant_id: str, policy_types: Iterable[str] | None = None) -> int:
        tenant_id = normalize_tenant_id(tenant_id)
        query = select(func.count()).select_from(items).where(items.c.tenant_id == tenant_id)
        if policy_types is not None:
            query = query.where(items.c.policy_type.in_(list(policy_types)))
        with tenant_transaction(self.engine, tenant_id) as conn:
            return int(conn.execute(query).scalar_one())
