"""The two assets and their checks: orchestration only, the logic lives in core/ and graph/."""

import warnings
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,  # not exported by the pinned release
)
from sqlalchemy import Engine

from inventory_pipelines.core.missing import MissingResult, compute_missing, missing_items_for
from inventory_pipelines.core.selection import Selection, get_selection
from inventory_pipelines.graph.sync import SyncSummary, sync_partition
from inventory_pipelines.partitions import tenant_selection_partitions
from inventory_pipelines.resources import GraphResource, InventoryDatabase
from inventory_pipelines.run_tags import tagged_partition_tenant

GRAPH_POOL = "microsoft_graph"
SYNC_CHECK = "sync_finished_without_errors"
MISSING_SHARE_CHECK = "missing_share_is_plausible"
SUSPICIOUS_MISSING_SHARE = 0.2
SUSPICIOUS_MISSING_MIN_ITEMS = 5
PREVIEW_ROWS = 10
MISSING_ASSET = dg.AssetKey("inventory_missing")


def partitioned_check_spec(name: str, **kwargs: Any) -> dg.AssetCheckSpec:
    """A check evaluated per tenant × selection partition, so the UI shows each partition's
    result. Partitioned checks are a preview feature of the pinned Dagster release; the pin
    is deliberate, so its preview warning is silenced here and nowhere else."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=dg.PreviewWarning)
        return dg.AssetCheckSpec(name, partitions_def=tenant_selection_partitions, **kwargs)


@dg.asset(
    name="inventory_items",
    partitions_def=tenant_selection_partitions,
    pool=GRAPH_POOL,
    group_name="inventory",
    kinds={"python", "sql"},
    # Only a complete look materializes: the Partitions tab then shows a partial or failed
    # sync as a failed partition, never as fresh data.
    output_required=False,
    check_specs=[
        partitioned_check_spec(
            SYNC_CHECK,
            asset="inventory_items",
            blocking=True,
            description="Passes for a clean sync; WARN for partial or skipped, ERROR for failed.",
        )
    ],
    description="Last-observed Intune policies of one tenant for one selection of policy types.",
)
def inventory_items(
    context: dg.AssetExecutionContext, inventory_db: InventoryDatabase, graph: GraphResource
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """A `success` sync materializes. Anything else records its metadata as an observation
    and yields its check result: `skipped` (another run holds the partition's lock) ends
    there; `partial` and `failed` bring `inventory_missing` to this baseline right here (no
    materialization means no automation follows) and then fail the step."""
    tenant_id, selection_name = tagged_partition_tenant(context, inventory_db.engine())
    selection = get_selection(selection_name)
    with graph.client() as client:
        summary = sync_partition(
            inventory_db.store(),
            client,
            tenant_id,
            selection,
            correlation_id=context.run.run_id,
            options=graph.sync_options(),
        )
    metadata = sync_metadata(summary)
    check = sync_check(summary)
    if summary.status == "success":
        yield dg.MaterializeResult(metadata=metadata, check_results=[check])
        return
    context.log_event(
        dg.AssetObservation(
            asset_key=context.asset_key, partition=context.partition_key, metadata=metadata
        )
    )
    if summary.status == "skipped":
        context.log.warning(
            f"{check.description}: another run is syncing this partition; its result counts"
        )
        yield check
        return
    missing_metadata, missing_check = missing_outcome(inventory_db.engine(), tenant_id, selection)
    context.log_event(
        dg.AssetMaterialization(
            asset_key=MISSING_ASSET,
            partition=context.partition_key,
            metadata=missing_metadata,
            description="Recorded by the sync run: an incomplete sync starts no automation.",
        )
    )
    yield check  # stores the events logged above first
    context.log_event(_targeting_latest(context, missing_check))
    raise dg.Failure(description=check.description, metadata=metadata, allow_retries=False)


def _targeting_latest(
    context: dg.AssetExecutionContext, check: dg.AssetCheckResult
) -> dg.AssetCheckEvaluation:
    """`inventory_missing`'s check result, aimed at the materialization this run recorded, so
    the check's partition status counts it as current (as it does for the asset's own step)."""
    [record] = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MISSING_ASSET, asset_partitions=[context.partition_key]),
        limit=1,
    ).records
    if record.run_id != context.run.run_id:
        raise dg.Failure(f"inventory_missing of {context.partition_key} was not recorded")
    return dg.AssetCheckEvaluation(
        asset_key=MISSING_ASSET,
        check_name=MISSING_SHARE_CHECK,
        passed=check.passed,
        metadata=check.metadata,
        severity=check.severity,
        description=check.description,
        partition=context.partition_key,
        target_materialization_data=AssetCheckEvaluationTargetMaterializationData(
            storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
        ),
    )


def sync_metadata(summary: SyncSummary) -> dict[str, Any]:
    types = summary.types.values()
    return {
        "status": dg.MetadataValue.text(summary.status),
        "sync_run_id": dg.MetadataValue.int(summary.run_id),
        "selection_hash": dg.MetadataValue.text(summary.selection_hash),
        "items_observed": dg.MetadataValue.int(summary.items_observed),
        "items_inserted": dg.MetadataValue.int(summary.items_inserted),
        "items_updated": dg.MetadataValue.int(summary.items_updated),
        # Change-feed events of this run (inventory_changes), plotted per partition.
        **{
            f"changes_{kind}": dg.MetadataValue.int(count)
            for kind, count in summary.changes.items()
        },
        "policy_types_failed": dg.MetadataValue.int(
            sum(1 for t in types if t.outcome != "complete")
        ),
        "invalid_items": dg.MetadataValue.int(sum(t.invalid_items for t in types)),
        "pages": dg.MetadataValue.int(sum(t.pages for t in types)),
        "requests": dg.MetadataValue.int(sum(t.requests for t in types)),
        "retries": dg.MetadataValue.int(sum(t.retries for t in types)),
        # Wall: how long throttling held the sync up. Sum: the same waits added over the
        # parallel fetch workers (more than the wall time when several waited at once).
        "throttle_wait_wall_seconds": dg.MetadataValue.float(
            round(summary.throttle_wait_wall_seconds, 3)
        ),
        "throttle_wait_sum_seconds": dg.MetadataValue.float(
            round(summary.throttle_wait_sum_seconds, 3)
        ),
        "duration_seconds": dg.MetadataValue.float(round(summary.duration_seconds, 3)),
        "error_codes": dg.MetadataValue.json(summary.error_codes),
        "policy_type_counts": dg.MetadataValue.json(
            {key: t.counts.observed for key, t in sorted(summary.types.items())}
        ),
        "policy_types": dg.MetadataValue.md(_types_table(summary)),
    }


def _types_table(summary: SyncSummary) -> str:
    lines = [
        "| policy type | outcome | items | new | changed | pages | retries |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, t in sorted(summary.types.items()):
        lines.append(
            f"| {key} | {t.outcome} | {t.counts.observed} | {t.counts.inserted} | "
            f"{t.counts.updated} | {t.pages} | {t.retries} |"
        )
    return "\n".join(lines)


def sync_check(summary: SyncSummary) -> dg.AssetCheckResult:
    """Passes only for a `success` run. A partial or skipped run is a warning to look at; a
    failed one is an error, which (the check being blocking) also fails the Dagster run."""
    return dg.AssetCheckResult(
        check_name=SYNC_CHECK,
        passed=summary.status == "success",
        severity=(
            dg.AssetCheckSeverity.ERROR
            if summary.status == "failed"
            else dg.AssetCheckSeverity.WARN
        ),
        description=(
            f"sync run {summary.run_id}: {summary.status}"
            + (f" ({', '.join(summary.error_codes)})" if summary.error_codes else "")
        ),
        # Text, not numbers: a run id or a status plotted over time means nothing.
        metadata={
            "status": dg.MetadataValue.text(summary.status),
            "sync_run_id": dg.MetadataValue.text(str(summary.run_id)),
            "error_codes": dg.MetadataValue.text(", ".join(summary.error_codes) or "none"),
        },
    )


@dg.asset(
    name="inventory_missing",
    deps=[inventory_items],
    partitions_def=tenant_selection_partitions,
    group_name="inventory",
    kinds={"python", "sql"},
    automation_condition=dg.AutomationCondition.eager().replace(
        # Eager waits while any run *or backfill* still targets the parent partition. A
        # backfill counts a finished partition as in progress until the backfill daemon books
        # it (every 30 s), which would hold the missing data back; only a sync actually
        # running must hold it back.
        "any_deps_in_progress",
        dg.AutomationCondition.any_deps_match(dg.AutomationCondition.run_in_progress()),
    ),
    check_specs=[
        partitioned_check_spec(
            MISSING_SHARE_CHECK,
            asset="inventory_missing",
            description="Warns when a large share of the selection vanished at once.",
        )
    ],
    description="Policies not observed since the latest completed sync, with a confidence.",
)
def inventory_missing(
    context: dg.AssetExecutionContext, inventory_db: InventoryDatabase
) -> dg.MaterializeResult:
    tenant_id, selection_name = tagged_partition_tenant(context, inventory_db.engine())
    metadata, check = missing_outcome(
        inventory_db.engine(), tenant_id, get_selection(selection_name)
    )
    return dg.MaterializeResult(metadata=metadata, check_results=[check])


def missing_outcome(
    engine: Engine, tenant_id: str, selection: Selection
) -> tuple[dict[str, Any], dg.AssetCheckResult]:
    """Recompute the partition's missing items; its metadata and share check."""
    result = compute_missing(engine, tenant_id, selection)
    preview = missing_items_for(engine, tenant_id, selection.hash, limit=PREVIEW_ROWS)
    metadata: dict[str, Any] = {
        "missing_count": dg.MetadataValue.int(result.missing_count),
        # Newly missing items (went_missing events); those still missing do not repeat.
        "changes_went_missing": dg.MetadataValue.int(result.went_missing),
        "confidence": dg.MetadataValue.text(result.confidence),
        "baseline_run_id": dg.MetadataValue.int(result.baseline_run_id or 0),
        "baseline_status": dg.MetadataValue.text(result.baseline_status or "none"),
        "missing_share": dg.MetadataValue.float(round(result.missing_share, 4)),
        "selection_hash": dg.MetadataValue.text(result.selection_hash),
        "by_reason": dg.MetadataValue.json(result.by_reason),
        "preview": dg.MetadataValue.md(_missing_preview(preview, result)),
    }
    return metadata, missing_share_check(result)


def _missing_preview(rows: list[dict[str, Any]], result: MissingResult) -> str:
    if not rows:
        return f"Nothing missing (confidence: {result.confidence})."
    lines = ["| policy type | name | external id | reason | last seen |", "|---|---|---|---|---|"]
    for row in rows:
        name = (row["display_name"] or "").replace("|", "\\|")
        lines.append(
            f"| {row['policy_type']} | {name} | {row['external_id']} | {row['reason']} | "
            f"{row['last_seen_at']:%Y-%m-%d %H:%M} |"
        )
    if result.missing_count > len(rows):
        lines.append(f"\n…and {result.missing_count - len(rows)} more.")
    return "\n".join(lines)


def missing_share_check(result: MissingResult) -> dg.AssetCheckResult:
    """Warns when an unusually large share of the selection went missing in one go."""
    suspicious = (
        result.by_reason.get("not_observed", 0) >= SUSPICIOUS_MISSING_MIN_ITEMS
        and result.missing_share >= SUSPICIOUS_MISSING_SHARE
    )
    return dg.AssetCheckResult(
        check_name=MISSING_SHARE_CHECK,
        passed=not suspicious,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"{result.missing_count} of {result.selection_item_count} items missing "
            f"({result.missing_share:.0%}); a large share at once is more likely a Graph-side "
            "incident than real deletions"
            if suspicious
            else f"{result.missing_count} missing ({result.missing_share:.0%})"
        ),
        metadata={
            "missing_share": dg.MetadataValue.float(result.missing_share),
            "missing_count": dg.MetadataValue.int(result.missing_count),
        },
    )
