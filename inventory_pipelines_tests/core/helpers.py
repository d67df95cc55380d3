"""Small builders shared by the core tests."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine

from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.selection import Selection, validate_payload
from inventory_pipelines.core.store import (
    COMPLETE,
    InventoryStore,
    RunResult,
    RunStarted,
)
from inventory_pipelines.core.tenants import add_tenant

TENANT_A = "11111111-1111-4111-8111-111111111111"
TENANT_B = "22222222-2222-4222-8222-222222222222"


def selection(name: str, *types: str) -> Selection:
    return Selection(name, validate_payload({"policy_types": list(types)}))


def register(engine: Engine, *tenant_ids: str) -> None:
    for tenant_id in tenant_ids:
        add_tenant(engine, tenant_id, f"Tenant {tenant_id[:4]}")


def items(*ids: str, name: str = "Policy", **meta: Any) -> list[ObservedItem]:
    return [ObservedItem.build(i, f"{name} {i}", dict(meta)) for i in ids]


def sync(
    store: InventoryStore,
    tenant_id: str,
    sel: Selection,
    observed: dict[str, list[ObservedItem]],
    *,
    failed: dict[str, str] | None = None,
    item_errors: int = 0,
) -> tuple[int, str]:
    """Run one complete sync through the store: lock, upsert per type, finish."""
    started = store.start_sync_run(tenant_id, sel, correlation_id="test-run")
    assert isinstance(started, RunStarted), started
    result = RunResult(item_errors=item_errors)
    for policy_type in sel.policy_types:
        if failed and policy_type in failed:
            result.policy_type_outcomes[policy_type] = failed[policy_type]
            continue
        batch = observed.get(policy_type, [])
        counts = store.upsert_items(
            tenant_id, started.run_id, policy_type, batch, seen_at=started.started_at
        )
        result.counts.add(counts)
        result.policy_type_counts[policy_type] = counts.observed
        result.policy_type_outcomes[policy_type] = COMPLETE
    status = store.finish_sync_run(tenant_id, started.run_id, result)
    return started.run_id, status
