"""Retention of the change feed: a scheduled job deletes `inventory_changes` rows older than
`INVENTORY_CHANGES_RETENTION_DAYS`. Orchestration only; `core/changes.py` does the pruning,
tenant by tenant, at most `batch_size` rows per DELETE, so no run holds a long transaction or
writes one large burst of WAL.
"""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import dagster as dg

from inventory_pipelines.core.changes import (
    DEFAULT_PRUNE_BATCH,
    DEFAULT_RETENTION_DAYS,
    prune_all_tenants,
)
from inventory_pipelines.core.errors import ConfigurationError
from inventory_pipelines.core.store import utcnow
from inventory_pipelines.coverage_asset import number_setting
from inventory_pipelines.resources import InventoryDatabase

RETENTION_SETTING = "INVENTORY_CHANGES_RETENTION_DAYS"
RETENTION_CRON = "30 3 * * *"
"""Daily at 03:30 UTC, after the nightly refresh's wave (02:00) has mostly settled."""


@dataclass(frozen=True)
class RetentionSettings:
    days: int = DEFAULT_RETENTION_DAYS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> "RetentionSettings":
        """Read the setting (when the code location loads); a bad value fails fast."""
        env = os.environ if environ is None else environ
        days = number_setting(env, RETENTION_SETTING, DEFAULT_RETENTION_DAYS, int)
        if days < 1:
            raise ConfigurationError(f"{RETENTION_SETTING} must be a whole number of days >= 1")
        return cls(int(days))


class PruneConfig(dg.Config):
    batch_size: int = DEFAULT_PRUNE_BATCH
    """Rows one DELETE removes at most."""


def build_retention_job(
    settings: RetentionSettings | None = None,
) -> tuple[dg.JobDefinition, dg.ScheduleDefinition]:
    """The pruning job and its daily schedule (on by default)."""
    settings = settings or RetentionSettings()

    @dg.op(
        name="prune_inventory_changes",
        description=f"Delete change-feed events older than {settings.days} days, per tenant.",
    )
    def prune_inventory_changes(
        context: dg.OpExecutionContext, config: PruneConfig, inventory_db: InventoryDatabase
    ) -> dg.Output[int]:
        if config.batch_size < 1:
            raise dg.Failure("batch_size must be at least 1")
        pruned = prune_all_tenants(
            inventory_db.engine(),
            retention=timedelta(days=settings.days),
            now=utcnow(),
            batch_size=config.batch_size,
        )
        for tenant_key, deleted in pruned.items():
            if deleted:
                context.log.info(f"tenant {tenant_key}: {deleted} events older than retention")
        total = sum(pruned.values())
        return dg.Output(
            total,
            metadata={
                "events_deleted": dg.MetadataValue.int(total),
                "tenants": dg.MetadataValue.int(len(pruned)),
                "retention_days": dg.MetadataValue.int(settings.days),
                "batch_size": dg.MetadataValue.int(config.batch_size),
            },
        )

    @dg.job(
        name="inventory_changes_retention",
        description="Prune inventory_changes to the retention age, tenant by tenant.",
    )
    def inventory_changes_retention() -> None:
        prune_inventory_changes()

    schedule = dg.ScheduleDefinition(
        name="inventory_changes_retention_daily",
        job=inventory_changes_retention,
        cron_schedule=RETENTION_CRON,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=f"Daily pruning of change-feed events older than {settings.days} days.",
    )
    return inventory_changes_retention, schedule
