"""The asset job that sensors, schedules and backfills launch: one sync per partition."""

import dagster as dg

from inventory_pipelines.assets import inventory_items

inventory_sync_job = dg.define_asset_job(
    name="inventory_sync_job",
    selection=dg.AssetSelection.assets(inventory_items),
    description="Sync one tenant for one selection; missing items follow by automation.",
)
