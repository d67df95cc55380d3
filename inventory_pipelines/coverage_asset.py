"""The `inventory_coverage` asset and its `coverage_is_fresh` check: orchestration only, the
computation lives in core/coverage.py.

Coverage follows syncs by automation, throttled: a 500-tenant nightly wave materializes
`inventory_items` 500 times (× selections), and coverage must not run that often. It runs when
some sync finished since it last ran *and* a tick of an every-N-minutes cron passed since it
last ran, so at most once per interval, and at the latest one interval after the last sync.
A sync that finished is a materialization of `inventory_items` (complete) or of
`inventory_missing` (which every sync brings, a partial or failed one included, since those
do not materialize `inventory_items`): coverage depends on both.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import dagster as dg

from inventory_pipelines.assets import inventory_items, inventory_missing
from inventory_pipelines.core.coverage import Freshness, freshness, refresh_coverage
from inventory_pipelines.core.coverage_report import coverage_matrix, needs_attention
from inventory_pipelines.core.errors import ConfigurationError
from inventory_pipelines.core.store import COMPLETE, utcnow
from inventory_pipelines.resources import InventoryDatabase

COVERAGE_FRESH_CHECK = "coverage_is_fresh"
INTERVAL_SETTING = "INVENTORY_COVERAGE_INTERVAL_MINUTES"
MAX_AGE_SETTING = "INVENTORY_COVERAGE_MAX_AGE_HOURS"
DEFAULT_INTERVAL_MINUTES = 5
DEFAULT_MAX_AGE = timedelta(hours=26)  # a nightly sync plus two hours of slack
TABLE_ROWS = 200
CHECK_LISTED = 50


@dataclass(frozen=True)
class CoverageSettings:
    interval_minutes: int = DEFAULT_INTERVAL_MINUTES
    max_age: timedelta = DEFAULT_MAX_AGE

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> CoverageSettings:
        """Read the two settings (when the code location loads); bad values fail fast."""
        env = os.environ if environ is None else environ
        interval = number_setting(env, INTERVAL_SETTING, DEFAULT_INTERVAL_MINUTES, int)
        interval_cron(int(interval))  # validates
        hours = number_setting(env, MAX_AGE_SETTING, DEFAULT_MAX_AGE.total_seconds() / 3600, float)
        if hours <= 0:
            raise ConfigurationError(f"{MAX_AGE_SETTING} must be a positive number of hours")
        return cls(int(interval), timedelta(hours=hours))


def number_setting(env: Mapping[str, str], name: str, default: float, kind: type) -> float:
    """A numeric setting from `env` (`kind` int or float); unset is the default, junk an error."""
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        return float(kind(raw))
    except ValueError:
        raise ConfigurationError(
            f"{name}={raw!r} is not a number; unset it for the default ({default:g})"
        ) from None


def interval_cron(minutes: int) -> str:
    """The cron whose ticks are `minutes` apart: a divisor of 60, or whole hours dividing 24."""
    if 1 <= minutes <= 60 and 60 % minutes == 0:
        return "0 * * * *" if minutes == 60 else f"*/{minutes} * * * *"
    if minutes > 0 and minutes % 60 == 0 and 1440 % minutes == 0:
        return f"0 */{minutes // 60} * * *"
    raise ConfigurationError(
        f"{INTERVAL_SETTING}={minutes} must divide an hour (1, 2, 3, 4, 5, 6, 10, 12, 15, 20, "
        "30, 60) or be whole hours dividing a day (120, 180, 240, 360, 480, 720, 1440)"
    )


def coverage_automation_condition(interval_minutes: int) -> dg.AutomationCondition:
    """Some sync finished since coverage was last requested, an interval tick passed since
    then, and no coverage run is in progress.

    Built from `newly_updated` / `newly_requested` directly rather than `any_deps_updated()
    .since_last_handled()`: those are and/or compositions, which carry no event times in the
    pinned release, so a sync recorded on the tick right after a request would count as
    handled by it. With plain operands the since-operator compares times, and a sync that
    lands after a request always leads to one more coverage run.
    """
    cron = interval_cron(interval_minutes)
    requested: dg.AutomationCondition[dg.AssetKey | dg.AssetCheckKey] = (
        dg.AutomationCondition.newly_requested()
    )
    tick: dg.AutomationCondition[dg.AssetKey | dg.AssetCheckKey] = (
        dg.AutomationCondition.cron_tick_passed(cron, "UTC")
    )
    synced = (
        dg.AutomationCondition.any_deps_match(dg.AutomationCondition.newly_updated())
        .since(requested)
        .with_label("a sync finished since coverage was last requested")
    )
    interval_passed = tick.since(requested).with_label(
        f"a {interval_minutes}-minute tick passed since coverage was last requested"
    )
    return (synced & interval_passed & ~dg.AutomationCondition.in_progress()).with_label(
        f"after syncs, at most every {interval_minutes} min"
    )


def build_coverage_asset(settings: CoverageSettings | None = None) -> dg.AssetsDefinition:
    settings = settings or CoverageSettings()

    @dg.asset(
        name="inventory_coverage",
        # Unpartitioned on every partition of the syncs: any tenant × selection synced counts.
        deps=[inventory_items, inventory_missing],
        group_name="inventory",
        kinds={"python", "sql"},
        automation_condition=coverage_automation_condition(settings.interval_minutes),
        check_specs=[
            dg.AssetCheckSpec(
                COVERAGE_FRESH_CHECK,
                asset="inventory_coverage",
                description=(
                    "Warns about tenant × policy type pairs with no complete fetch for longer "
                    f"than {settings.max_age.total_seconds() / 3600:g} h, and tenants that "
                    "never fetched anything completely."
                ),
            )
        ],
        description=(
            "Per active tenant and policy type: last complete fetch, latest attempt's outcome."
        ),
    )
    def inventory_coverage(inventory_db: InventoryDatabase) -> dg.MaterializeResult:
        now = utcnow()
        rows = refresh_coverage(inventory_db.engine(), now=now)
        return dg.MaterializeResult(
            metadata=coverage_metadata(rows),
            check_results=[freshness_check(freshness(rows, settings.max_age, now))],
        )

    return inventory_coverage


_TABLE_SCHEMA = dg.TableSchema(
    columns=[
        dg.TableColumn("tenant_key", "string"),
        dg.TableColumn("policy_type", "string"),
        dg.TableColumn("latest_outcome", "string", description="complete or the error code"),
        dg.TableColumn("latest_attempt_at", "string"),
        dg.TableColumn("last_complete_at", "string"),
        dg.TableColumn("age_hours", "float"),
        dg.TableColumn("item_count", "int"),
    ]
)


def _stamp(value: datetime | None) -> str | None:
    return f"{value:%Y-%m-%d %H:%M}" if value is not None else None


def coverage_metadata(rows: list[dict[str, Any]]) -> dict[str, Any]:
    attention = [r for r in rows if needs_attention(r)]
    records = [
        dg.TableRecord(
            {
                "tenant_key": r["tenant_key"],
                "policy_type": r["policy_type"],
                "latest_outcome": r["latest_outcome"],
                "latest_attempt_at": _stamp(r["latest_attempt_at"]),
                "last_complete_at": _stamp(r["last_complete_at"]),
                "age_hours": (
                    round(r["age_seconds"] / 3600, 1) if r["age_seconds"] is not None else None
                ),
                "item_count": r["item_count"],
            }
        )
        for r in attention[:TABLE_ROWS]
    ]
    return {
        "tenants": dg.MetadataValue.int(len({r["tenant_id"] for r in rows})),
        "pairs": dg.MetadataValue.int(len(rows)),
        "pairs_latest_complete": dg.MetadataValue.int(
            sum(1 for r in rows if r["latest_outcome"] == COMPLETE)
        ),
        "pairs_latest_failed": dg.MetadataValue.int(
            sum(1 for r in rows if r["latest_outcome"] not in (None, COMPLETE))
        ),
        "pairs_never_complete": dg.MetadataValue.int(
            sum(1 for r in rows if r["last_complete_at"] is None)
        ),
        "tenants_needing_attention": dg.MetadataValue.int(len({r["tenant_id"] for r in attention})),
        "needs_attention": dg.MetadataValue.table(records, schema=_TABLE_SCHEMA),
        "matrix": dg.MetadataValue.md(coverage_matrix(rows)),
    }


def freshness_check(result: Freshness) -> dg.AssetCheckResult:
    """WARN: coverage gaps are for a person to look at, not a reason to stop anything."""
    hours = f"{result.max_age.total_seconds() / 3600:g} h"
    lines = [
        f"- tenant `{key}`: no complete fetch of any type" for key in result.never_complete_tenants
    ]
    lines += [
        f"- `{p.tenant_key}` × `{p.policy_type}`: "
        + (
            f"last complete {p.last_complete_at:%Y-%m-%d %H:%M}"
            if p.last_complete_at
            else "never complete"
        )
        + f", latest {p.latest_outcome or 'never attempted'}"
        for p in result.stale_pairs
    ]
    shown = lines[:CHECK_LISTED]
    if len(lines) > CHECK_LISTED:
        shown.append(f"- …and {len(lines) - CHECK_LISTED} more")
    return dg.AssetCheckResult(
        check_name=COVERAGE_FRESH_CHECK,
        passed=result.fresh,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            f"every pair fetched completely within {hours}"
            if result.fresh
            else f"{len(result.never_complete_tenants)} tenants never complete, "
            f"{len(result.stale_pairs)} pairs without a complete fetch within {hours}"
        ),
        metadata={
            "never_complete_tenants": dg.MetadataValue.int(len(result.never_complete_tenants)),
            "stale_pairs": dg.MetadataValue.int(len(result.stale_pairs)),
            "max_age_hours": dg.MetadataValue.float(result.max_age.total_seconds() / 3600),
            "details": dg.MetadataValue.md("\n".join(shown) or "none"),
        },
    )
