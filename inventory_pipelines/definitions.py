"""The single Definitions object that `workspace.yaml` loads; the only place EnvVars are bound."""

import os

import dagster as dg

from inventory_pipelines.assets import inventory_items, inventory_missing
from inventory_pipelines.coverage_asset import CoverageSettings, build_coverage_asset
from inventory_pipelines.jobs import inventory_sync_job
from inventory_pipelines.resources import GraphResource, InventoryDatabase
from inventory_pipelines.retention import RetentionSettings, build_retention_job
from inventory_pipelines.schedules import DEFAULT_NIGHTLY_CRON, build_nightly_schedule
from inventory_pipelines.sensors import inventory_automation_sensor, new_tenant_sensor

# INVENTORY_CHANGES_RETENTION_DAYS, read when the location loads.
retention_job, retention_schedule = build_retention_job(RetentionSettings.from_env())

defs = dg.Definitions(
    assets=[
        inventory_items,
        inventory_missing,
        # INVENTORY_COVERAGE_INTERVAL_MINUTES / _MAX_AGE_HOURS, read when the location loads.
        build_coverage_asset(CoverageSettings.from_env()),
    ],
    jobs=[inventory_sync_job, retention_job],
    sensors=[new_tenant_sensor, inventory_automation_sensor],
    schedules=[
        build_nightly_schedule(os.environ.get("INVENTORY_NIGHTLY_CRON") or DEFAULT_NIGHTLY_CRON),
        retention_schedule,
    ],
    resources={
        "inventory_db": InventoryDatabase(),
        # The credential (GRAPH_CLIENT_SECRET, GRAPH_CLIENT_CERTIFICATE_PATH or
        # GRAPH_FEDERATED_TOKEN_FILE) is read when a run starts; see GraphResource.
        "graph": GraphResource(client_id=dg.EnvVar("GRAPH_CLIENT_ID")),
    },
    # One asset per run: running it in the run's own process avoids a second subprocess.
    executor=dg.in_process_executor,
)
