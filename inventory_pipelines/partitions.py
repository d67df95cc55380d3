"""Partition definitions, defined once: tenant × selection, both dynamic.

The tenant dimension holds tenant keys (`contoso-ltd`), so the UI shows names a person can
read; the inventory tables keep the GUID as the tenant's identity.
"""

import dagster as dg
from sqlalchemy import Engine

from inventory_pipelines.core.tenants import Tenant, resolve_tenant

TENANT_DIMENSION = "tenant"
SELECTION_DIMENSION = "selection"

tenant_partitions = dg.DynamicPartitionsDefinition(name=TENANT_DIMENSION)
selection_partitions = dg.DynamicPartitionsDefinition(name=SELECTION_DIMENSION)
tenant_selection_partitions = dg.MultiPartitionsDefinition(
    {TENANT_DIMENSION: tenant_partitions, SELECTION_DIMENSION: selection_partitions}
)


def partition_key(tenant_key: str, selection_name: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TENANT_DIMENSION: tenant_key, SELECTION_DIMENSION: selection_name})


def split_partition_key(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """(tenant key, selection name) of the partition being materialized."""
    keys = context.partition_key.keys_by_dimension
    return keys[TENANT_DIMENSION], keys[SELECTION_DIMENSION]


def partition_tenant(context: dg.AssetExecutionContext, engine: Engine) -> tuple[Tenant, str]:
    """The registered tenant and the selection name of the partition being materialized.

    A GUID is accepted too, so partitions registered before tenants had keys still run.
    """
    tenant_key, selection_name = split_partition_key(context)
    return resolve_tenant(engine, tenant_key), selection_name


def ensure_partitions(
    instance: dg.DagsterInstance, *, tenants: set[str], selections: set[str]
) -> None:
    """Register any tenant or selection partitions the instance does not know yet."""
    for definition, wanted in ((tenant_partitions, tenants), (selection_partitions, selections)):
        assert definition.name is not None
        known = set(instance.get_dynamic_partitions(definition.name))
        missing = sorted(wanted - known)
        if missing:
            instance.add_dynamic_partitions(definition.name, missing)
