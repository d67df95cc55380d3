"""Sensors: new tenants get partitions and first syncs; automation keeps `missing` and
`coverage` fresh."""

import dagster as dg

from inventory_pipelines.jobs import inventory_sync_job
from inventory_pipelines.partitions import (
    TENANT_DIMENSION,
    partition_key,
    selection_partitions,
    tenant_partitions,
)
from inventory_pipelines.resources import InventoryDatabase
from inventory_pipelines.run_tags import tenant_tags
from inventory_pipelines.tenant_requests import plan_new_tenant_runs

NEW_TENANT_SENSOR_INTERVAL_SECONDS = 15


@dg.sensor(
    name="new_tenant_sensor",
    job=inventory_sync_job,
    minimum_interval_seconds=NEW_TENANT_SENSOR_INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Adds partitions for new or re-activated tenants and requests their first syncs.",
)
def new_tenant_sensor(
    context: dg.SensorEvaluationContext, inventory_db: InventoryDatabase
) -> dg.SensorResult:
    plan = plan_new_tenant_runs(inventory_db.engine(), context.cursor)
    registered = set(context.instance.get_dynamic_partitions(TENANT_DIMENSION))
    unregistered = [key for key in plan.active_tenants if key not in registered]
    partition_requests: list[dg.AddDynamicPartitionsRequest] = []
    if unregistered:
        partition_requests.append(tenant_partitions.build_add_request(unregistered))
    if plan.new_selections:
        partition_requests.append(selection_partitions.build_add_request(plan.new_selections))
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=r.run_key,
                partition_key=partition_key(r.tenant_key, r.selection_name),
                tags=tenant_tags(r.tenant_key, r.tenant_name, r.tenant_id),
            )
            for r in plan.requests
        ],
        dynamic_partitions_requests=partition_requests,
        cursor=plan.cursor,
    )


inventory_automation_sensor = dg.AutomationConditionSensorDefinition(
    name="inventory_automation_sensor",
    target=dg.AssetSelection.all(),
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=15,
    # Plain runs, not backfills: the backfill daemon wakes only every 30 s, which would delay
    # every missing computation and list each automation tick as a backfill in the UI.
    emit_backfills=False,
    description=(
        "Materializes inventory_missing after every sync of its partition, and "
        "inventory_coverage after syncs, at most once per coverage interval."
    ),
)
