"""The tenant registry that the sensor watches: Entra tenant ids, stored lower-case."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine, select, update

from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.schema import tenants

_GUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalize_tenant_id(value: str) -> str:
    """Validate an Entra tenant id (a GUID) and return it lower-case."""
    candidate = (value or "").strip().lower()
    if not _GUID.match(candidate):
        raise ValidationError(
            f"tenant id {value!r} is not a GUID like 72f988bf-86f1-41af-91ab-2d7cd011db47 "
            "(the Entra directory id, not a domain name)"
        )
    return candidate


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    display_name: str
    active: bool
    created_at: datetime
    updated_at: datetime


def add_tenant(engine: Engine, tenant_id: str, display_name: str) -> tuple[Tenant, str]:
    """Register a tenant, or rename and re-activate it; returns it and what happened."""
    tenant_id = normalize_tenant_id(tenant_id)
    name = (display_name or "").strip()
    if not name:
        raise ValidationError("tenant display name must not be empty (--name)")
    now = datetime.now(UTC)
    with engine.begin() as conn:
        row = conn.execute(select(tenants).where(tenants.c.tenant_id == tenant_id)).first()
        if row is None:
            conn.execute(
                tenants.insert().values(
                    tenant_id=tenant_id,
                    display_name=name,
                    active=True,
                    created_at=now,
                    updated_at=now,
                )
            )
            outcome = "added"
        elif row.active and row.display_name == name:
            outcome = "unchanged"
        else:
            conn.execute(
                update(tenants)
                .where(tenants.c.tenant_id == tenant_id)
                .values(display_name=name, active=True, updated_at=now)
            )
            outcome = "reactivated" if not row.active else "renamed"
    tenant = get_tenant(engine, tenant_id)
    assert tenant is not None
    return tenant, outcome


def deactivate_tenant(engine: Engine, tenant_id: str) -> Tenant:
    """Stop scheduling a tenant; its inventory stays queryable."""
    tenant_id = normalize_tenant_id(tenant_id)
    with engine.begin() as conn:
        result = conn.execute(
            update(tenants)
            .where(tenants.c.tenant_id == tenant_id)
            .values(active=False, updated_at=datetime.now(UTC))
        )
        if result.rowcount == 0:
            raise ValidationError(f"tenant {tenant_id} is not registered")
    tenant = get_tenant(engine, tenant_id)
    assert tenant is not None
    return tenant


def get_tenant(engine: Engine, tenant_id: str) -> Tenant | None:
    tenant_id = normalize_tenant_id(tenant_id)
    with engine.connect() as conn:
        row = conn.execute(select(tenants).where(tenants.c.tenant_id == tenant_id)).first()
    return Tenant(**row._mapping) if row else None


def require_active_tenant(engine: Engine, tenant_id: str) -> Tenant:
    """The tenant, or a clear error when it is unknown or deactivated."""
    tenant = get_tenant(engine, tenant_id)
    if tenant is None:
        raise ValidationError(
            f"tenant {normalize_tenant_id(tenant_id)} is not registered; "
            "add it with `inventory-pipelines tenants add`"
        )
    if not tenant.active:
        raise ValidationError(f"tenant {tenant.tenant_id} is deactivated")
    return tenant


def list_tenants(engine: Engine, *, active_only: bool = False) -> list[Tenant]:
    query = select(tenants).order_by(tenants.c.tenant_id)
    if active_only:
        query = query.where(tenants.c.active.is_(True))
    with engine.connect() as conn:
        return [Tenant(**row._mapping) for row in conn.execute(query)]
