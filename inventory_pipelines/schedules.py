"""The nightly refresh of every active tenant for every selection."""

import dagster as dg

from inventory_pipelines.jobs import inventory_sync_job
from inventory_pipelines.partitions import ensure_partitions, partition_key
from inventory_pipelines.resources import InventoryDatabase
from inventory_pipelines.run_tags import tenant_tags
from inventory_pipelines.tenant_requests import plan_nightly_runs

DEFAULT_NIGHTLY_CRON = "0 2 * * *"


def build_nightly_schedule(cron: str = DEFAULT_NIGHTLY_CRON) -> dg.ScheduleDefinition:
    @dg.schedule(
        name="nightly_inventory_refresh",
        job=inventory_sync_job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="One sync per active (tenant, selection), every night.",
    )
    def nightly_inventory_refresh(
        context: dg.ScheduleEvaluationContext, inventory_db: InventoryDatabase
    ) -> list[dg.RunRequest]:
        scheduled = context.scheduled_execution_time
        requests = plan_nightly_runs(inventory_db.engine(), scheduled)
        # The sensor normally registers partitions first; make sure even when it was off.
        ensure_partitions(
            context.instance,
            tenants={r.tenant_key for r in requests},
            selections={r.selection_name for r in requests},
        )
        return [
            dg.RunRequest(
                run_key=r.run_key,
                partition_key=partition_key(r.tenant_key, r.selection_name),
                tags=tenant_tags(r.tenant_key, r.tenant_name, r.tenant_id),
            )
            for r in requests
        ]

    return nightly_inventory_refresh
