"""Run tags naming the tenant, so runs can be found and read by key, name or GUID.

The sensor and the schedule put them on the runs they request; runs started elsewhere (UI
backfills, automation) get them from the asset when it starts.
"""

from __future__ import annotations

import dagster as dg
from sqlalchemy import Engine

from inventory_pipelines.core.tenants import Tenant
from inventory_pipelines.partitions import partition_tenant

TENANT_KEY_TAG = "inventory/tenant_key"
TENANT_NAME_TAG = "inventory/tenant_name"
TENANT_ID_TAG = "inventory/tenant_id"


def tenant_tags(tenant_key: str, display_name: str, tenant_id: str) -> dict[str, str]:
    return {TENANT_KEY_TAG: tenant_key, TENANT_NAME_TAG: display_name, TENANT_ID_TAG: tenant_id}


def tagged_partition_tenant(context: dg.AssetExecutionContext, engine: Engine) -> tuple[str, str]:
    """(tenant GUID, selection name) of the partition; tags the run with the tenant first
    when it does not carry the tags yet."""
    tenant, selection_name = partition_tenant(context, engine)
    tag_run(context, tenant)
    return tenant.tenant_id, selection_name


def tag_run(context: dg.AssetExecutionContext, tenant: Tenant) -> None:
    wanted = tenant_tags(tenant.tenant_key, tenant.display_name, tenant.tenant_id)
    current = context.run.tags
    missing = {k: v for k, v in wanted.items() if current.get(k) != v}
    if missing:
        context.instance.add_run_tags(context.run.run_id, missing)
