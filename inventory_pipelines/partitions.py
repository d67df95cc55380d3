"""Partition definitions, defined once: tenant × selection, both dynamic."""

import dagster as dg

TENANT_DIMENSION = "tenant"
SELECTION_DIMENSION = "selection"

tenant_partitions = dg.DynamicPartitionsDefinition(name=TENANT_DIMENSION)
selection_partitions = dg.DynamicPartitionsDefinition(name=SELECTION_DIMENSION)
tenant_selection_partitions = dg.MultiPartitionsDefinition(
    {TENANT_DIMENSION: tenant_partitions, SELECTION_DIMENSION: selection_partitions}
)


def partition_key(tenant_id: str, selection_name: str) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey({TENANT_DIMENSION: tenant_id, SELECTION_DIMENSION: selection_name})


def split_partition_key(context: dg.AssetExecutionContext) -> tuple[str, str]:
    """(tenant id, selection name) of the partition being materialized."""
    keys = context.partition_key.keys_by_dimension
    return keys[TENANT_DIMENSION], keys[SELECTION_DIMENSION]


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
