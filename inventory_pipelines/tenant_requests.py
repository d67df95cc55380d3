"""Which runs the sensor and the schedule request: plain Python, testable without Dagster."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine

from inventory_pipelines.core.selection import load_selections
from inventory_pipelines.core.tenants import Tenant, list_tenants


@dataclass(frozen=True)
class SyncRequest:
    """One run to request: the partition is (tenant key, selection); the run key uses the
    GUID, which a tenant keeps whatever it is called."""

    tenant_id: str
    tenant_key: str
    tenant_name: str
    selection_name: str
    run_key: str


@dataclass(frozen=True)
class NewTenantPlan:
    """What one sensor tick does: runs to request, the next cursor, and the partitions that
    must exist: the keys of all active tenants (the sensor adds those the instance lacks,
    which also covers tenants registered before partitions were named by key)."""

    active_tenants: list[str]
    new_selections: list[str]
    requests: list[SyncRequest]
    cursor: str


def _activation_marker(tenant: Tenant) -> str:
    # updated_at changes when a tenant is re-activated, so a re-activation gets new run keys.
    return tenant.updated_at.strftime("%Y%m%dT%H%M%S%f")


def plan_new_tenant_runs(engine: Engine, cursor: str | None) -> NewTenantPlan:
    """Requests for tenants (and selections) not active at the last tick, one per pair.

    The cursor holds the active tenants and known selections; run keys additionally make
    every request idempotent if the cursor is ever lost.
    """
    state = json.loads(cursor) if cursor else {"tenants": {}, "selections": []}
    known_tenants: dict[str, str] = state.get("tenants", {})
    known_selections: list[str] = state.get("selections", [])
    selections = sorted(load_selections())
    active = {t.tenant_id: t for t in list_tenants(engine, active_only=True)}

    requests: list[SyncRequest] = []
    for tenant_id, tenant in sorted(active.items()):
        marker = _activation_marker(tenant)
        is_new = known_tenants.get(tenant_id) is None
        wanted = selections if is_new else [s for s in selections if s not in known_selections]
        requests.extend(
            _request(tenant, name, f"first-sync:{tenant_id}:{name}:{marker}") for name in wanted
        )
    new_selections = [s for s in selections if s not in known_selections]
    next_cursor = json.dumps(
        {
            "tenants": {tid: _activation_marker(t) for tid, t in sorted(active.items())},
            "selections": selections,
        },
        sort_keys=True,
    )
    active_keys = sorted(t.tenant_key for t in active.values())
    return NewTenantPlan(active_keys, new_selections, requests, next_cursor)


def plan_nightly_runs(engine: Engine, scheduled_for: datetime) -> list[SyncRequest]:
    """One request per active (tenant, selection), keyed by the tick so a tick runs once."""
    tick = scheduled_for.strftime("%Y%m%dT%H%M")
    return [
        _request(tenant, name, f"nightly:{tick}:{tenant.tenant_id}:{name}")
        for tenant in list_tenants(engine, active_only=True)
        for name in sorted(load_selections())
    ]


def _request(tenant: Tenant, selection_name: str, run_key: str) -> SyncRequest:
    return SyncRequest(
        tenant.tenant_id, tenant.tenant_key, tenant.display_name, selection_name, run_key
    )
