"""Missing items of one (tenant, selection) and the confidence of that judgement (SPEC §5).

The baseline is the latest completed run of the same selection; an item of a selected type
whose `last_seen_at` predates the baseline's start is missing. Items of a type the baseline
did not fetch completely are `type_not_fetched`, so a throttled or forbidden type never looks
like a mass deletion. Items newly missing get a `went_missing` event (`core/changes.py`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Connection, Engine, case, delete, insert, literal, select

from inventory_pipelines.core.changes import record_went_missing
from inventory_pipelines.core.schema import items, missing, sync_runs
from inventory_pipelines.core.selection import Selection
from inventory_pipelines.core.store import COMPLETE, COMPLETED_STATUSES, utcnow
from inventory_pipelines.core.tenancy import tenant_transaction
from inventory_pipelines.core.tenant_ids import normalize_tenant_id

Confidence = Literal["high", "low", "unknown"]


@dataclass(frozen=True)
class MissingResult:
    tenant_id: str
    selection_hash: str
    confidence: Confidence
    baseline_run_id: int | None
    baseline_status: str | None
    missing_count: int
    selection_item_count: int
    computed_at: datetime
    by_reason: dict[str, int] = field(default_factory=dict)
    by_policy_type: dict[str, int] = field(default_factory=dict)
    went_missing: int = 0
    """`went_missing` events this computation recorded (items newly missing)."""

    @property
    def missing_share(self) -> float:
        """Share of the selection's known items that are missing (0 when nothing is known)."""
        return self.missing_count / self.selection_item_count if self.selection_item_count else 0.0


def confidence_for(status: str, had_errors: bool) -> Confidence:
    return "low" if status in ("partial", "failed") or had_errors else "high"


def baseline_run(conn: Connection, tenant_id: str, selection_hash: str) -> Any:
    """The latest completed (success, partial, failed) run of this tenant and selection."""
    return conn.execute(
        select(
            sync_runs.c.id,
            sync_runs.c.status,
            sync_runs.c.had_errors,
            sync_runs.c.started_at,
            sync_runs.c.policy_type_outcomes,
            sync_runs.c.items_observed,
        )
        .where(
            sync_runs.c.tenant_id == tenant_id,
            sync_runs.c.selection_hash == selection_hash,
            sync_runs.c.status.in_(COMPLETED_STATUSES),
        )
        .order_by(sync_runs.c.started_at.desc(), sync_runs.c.id.desc())
        .limit(1)
    ).first()


def compute_missing(
    engine: Engine, tenant_id: str, selection: Selection, *, now: datetime | None = None
) -> MissingResult:
    """Replace the partition's rows in `inventory_missing` atomically and summarize them;
    items newly missing get a `went_missing` event in the same transaction."""
    tenant_id = normalize_tenant_id(tenant_id)
    computed_at = now or utcnow()
    types = list(selection.policy_types)
    with tenant_transaction(engine, tenant_id) as conn:
        previous = {
            (row.item_id, row.last_seen_at)
            for row in conn.execute(
                delete(missing)
                .where(missing.c.tenant_id == tenant_id, missing.c.selection_hash == selection.hash)
                .returning(missing.c.item_id, missing.c.last_seen_at)
            )
        }
        baseline = baseline_run(conn, tenant_id, selection.hash)
        if baseline is None:
            return MissingResult(
                tenant_id, selection.hash, "unknown", None, None, 0, 0, computed_at
            )
        confidence = confidence_for(baseline.status, baseline.had_errors)
        outcomes = baseline.policy_type_outcomes or {}
        incomplete = [t for t in types if outcomes.get(t) != COMPLETE]
        reason = case(
            (items.c.policy_type.in_(incomplete), literal("type_not_fetched")),
            else_=literal("not_observed"),
        )
        rows = conn.execute(
            insert(missing)
            .from_select(
                [
                    "tenant_id",
                    "selection_hash",
                    "item_id",
                    "policy_type",
                    "external_id",
                    "display_name",
                    "last_seen_at",
                    "reason",
                    "confidence",
                    "baseline_run_id",
                    "computed_at",
                ],
                select(
                    items.c.tenant_id,
                    literal(selection.hash),
                    items.c.id,
                    items.c.policy_type,
                    items.c.external_id,
                    items.c.display_name,
                    items.c.last_seen_at,
                    reason,
                    literal(confidence),
                    literal(baseline.id),
                    literal(computed_at, missing.c.computed_at.type),
                ).where(
                    items.c.tenant_id == tenant_id,
                    items.c.policy_type.in_(types),
                    items.c.last_seen_at < baseline.started_at,
                ),
            )
            .returning(
                missing.c.item_id,
                missing.c.policy_type,
                missing.c.external_id,
                missing.c.last_seen_at,
                missing.c.reason,
            )
        ).all()
        went_missing = record_went_missing(
            conn, tenant_id, selection.hash, baseline, confidence, previous, rows
        )
    by_reason: dict[str, int] = {}
    by_type: dict[str, int] = {}
    for row in rows:
        by_reason[row.reason] = by_reason.get(row.reason, 0) + 1
        by_type[row.policy_type] = by_type.get(row.policy_type, 0) + 1
    return MissingResult(
        tenant_id,
        selection.hash,
        confidence,
        int(baseline.id),
        baseline.status,
        len(rows),
        # Known items of the selection = what the baseline saw + what it did not: no second
        # scan of the partition just to size it.
        int(baseline.items_observed) + len(rows),
        computed_at,
        dict(sorted(by_reason.items())),
        dict(sorted(by_type.items())),
        went_missing,
    )


def missing_items_for(
    engine: Engine, tenant_id: str, selection_hash: str, *, limit: int | None = None
) -> list[dict[str, Any]]:
    """The stored missing rows of one partition, oldest sighting first."""
    tenant_id = normalize_tenant_id(tenant_id)
    query = (
        select(missing)
        .where(
            missing.c.tenant_id == tenant_id,
            missing.c.selection_hash == selection_hash,
        )
        .order_by(missing.c.last_seen_at, missing.c.policy_type, missing.c.external_id)
    )
    if limit is not None:
        query = query.limit(limit)
    with tenant_transaction(engine, tenant_id) as conn:
        return [dict(row._mapping) for row in conn.execute(query)]
