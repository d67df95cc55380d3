"""Rendering a sync summary for people (CLI text) and machines (JSON)."""

from __future__ import annotations

from typing import Any

from inventory_pipelines.graph.sync import SyncSummary


def summary_as_dict(summary: SyncSummary) -> dict[str, Any]:
    return {
        "run_id": summary.run_id,
        "tenant_id": summary.tenant_id,
        "selection": summary.selection_name,
        "selection_hash": summary.selection_hash,
        "status": summary.status,
        "holder_run_id": summary.holder_run_id,
        "duration_seconds": round(summary.duration_seconds, 3),
        "items_observed": summary.items_observed,
        "items_inserted": summary.items_inserted,
        "items_updated": summary.items_updated,
        "changes": dict(summary.changes),
        "throttle_wait_wall_seconds": round(summary.throttle_wait_wall_seconds, 3),
        "throttle_wait_sum_seconds": round(summary.throttle_wait_sum_seconds, 3),
        "batch_rounds": summary.batch_rounds,
        "envelopes": summary.envelopes,
        "error_codes": summary.error_codes,
        "policy_types": {
            key: {
                "outcome": t.outcome,
                "observed": t.counts.observed,
                "inserted": t.counts.inserted,
                "updated": t.counts.updated,
                "invalid_items": t.invalid_items,
                "pages": t.pages,
                "requests": t.requests,
                "retries": t.retries,
                "throttle_wait_seconds": round(t.throttle_wait_seconds, 3),
                "error": t.error,
            }
            for key, t in sorted(summary.types.items())
        },
    }


def format_summary(summary: SyncSummary) -> str:
    if summary.skipped:
        return (
            f"sync run {summary.run_id}: skipped (lock_held by run {summary.holder_run_id}) "
            f"tenant {summary.tenant_id} selection {summary.selection_name}"
        )
    lines = [
        f"sync run {summary.run_id}: {summary.status} tenant {summary.tenant_id} "
        f"selection {summary.selection_name} ({summary.selection_hash[:12]}) "
        f"in {summary.duration_seconds:.1f}s",
        f"  observed {summary.items_observed}, inserted {summary.items_inserted}, "
        f"updated {summary.items_updated}",
        "  change feed: " + ", ".join(f"{count} {kind}" for kind, count in summary.changes.items()),
    ]
    requests = summary.total("requests")
    if summary.envelopes:
        lines.append(
            f"  {requests} page requests in {summary.envelopes} $batch envelopes "
            f"({summary.batch_rounds} rounds)"
        )
    else:
        lines.append(f"  {requests} page requests (one GET each)")
    if summary.throttle_wait_sum_seconds:
        lines.append(
            f"  throttled: held up {summary.throttle_wait_wall_seconds:.1f}s of wall time "
            f"({summary.throttle_wait_sum_seconds:.1f}s summed over parallel requests)"
        )
    if summary.error_codes:
        lines.append(f"  error codes: {', '.join(summary.error_codes)}")
    for key, t in sorted(summary.types.items()):
        detail = f"{t.counts.observed:>6} items  {t.pages:>4} pages"
        if t.retries:
            detail += f"  {t.retries} retries ({t.throttle_wait_seconds:.1f}s throttled)"
        if t.invalid_items:
            detail += f"  {t.invalid_items} invalid"
        lines.append(f"  {key:<36} {t.outcome:<20} {detail}")
    return "\n".join(lines)
