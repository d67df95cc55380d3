"""Coverage rows as people read them: the tenant × type matrix and the CSV export (pandas)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from inventory_pipelines.core.coverage import COVERAGE_COLUMNS
from inventory_pipelines.core.store import COMPLETE

NEVER_ATTEMPTED = "·"


def coverage_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """The rows as a DataFrame with the table's columns in the table's order."""
    return pd.DataFrame(list(rows), columns=list(COVERAGE_COLUMNS))


def coverage_csv(rows: Iterable[Mapping[str, Any]]) -> str:
    """CSV with a header and ISO-8601 timestamps; empty cells for nulls."""
    frame = coverage_frame(rows)
    for column in ("last_complete_at", "latest_attempt_at", "computed_at"):
        frame[column] = frame[column].map(lambda v: v.isoformat() if pd.notna(v) else None)
    for column in ("last_complete_run_id", "item_count", "latest_run_id", "age_seconds"):
        frame[column] = frame[column].astype("Int64")  # nullable integers, not floats
    return str(frame.to_csv(index=False, lineterminator="\n"))


def needs_attention(row: Mapping[str, Any]) -> bool:
    """The latest attempt failed, or the type was never fetched completely."""
    return row["latest_outcome"] != COMPLETE or row["last_complete_at"] is None


def _cell(row: pd.Series) -> str:
    outcome = row["latest_outcome"]
    if outcome is None or pd.isna(outcome):
        return NEVER_ATTEMPTED
    if outcome == COMPLETE:
        age = row["age_seconds"]
        return f"ok {int(age) // 3600}h" if not pd.isna(age) else "ok"
    return str(outcome)


def coverage_matrix(rows: Iterable[Mapping[str, Any]], *, max_tenants: int = 50) -> str:
    """Markdown pivot of the latest outcome, tenants × policy types, limited to the tenants
    and types that need attention (a matrix of 500 × 41 all-ok cells hides the answer)."""
    frame = coverage_frame(rows)
    if frame.empty:
        return "No active tenants."
    frame["attention"] = [needs_attention(r) for r in frame.to_dict("records")]
    tenants = sorted(frame.loc[frame["attention"], "tenant_key"].unique())
    types = sorted(frame.loc[frame["attention"], "policy_type"].unique())
    total = frame["tenant_key"].nunique()
    if not tenants:
        return f"All {total} tenants: every policy type's latest fetch was complete."
    shown = frame[
        frame["tenant_key"].isin(tenants[:max_tenants]) & frame["policy_type"].isin(types)
    ]
    matrix = (
        shown.assign(cell=shown.apply(_cell, axis=1))
        .pivot(index="tenant_key", columns="policy_type", values="cell")
        .reindex(columns=types)
        .fillna("")
    )
    lines = [
        "| tenant | " + " | ".join(types) + " |",
        "|---" * (len(types) + 1) + "|",
    ]
    for tenant_key, cells in matrix.iterrows():
        lines.append(f"| {tenant_key} | " + " | ".join(str(c) for c in cells) + " |")
    footer = [
        "",
        f"{len(tenants)} of {total} tenants need attention "
        f"(`ok Nh`: complete, N hours ago; a code: the latest attempt failed; "
        f"`{NEVER_ATTEMPTED}`: never attempted); types where every tenant is fine are left out.",
    ]
    if len(tenants) > max_tenants:
        footer.append(f"…and {len(tenants) - max_tenants} more tenants.")
    return "\n".join(lines + footer)
