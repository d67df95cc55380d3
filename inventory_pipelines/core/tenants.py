"""The tenant registry that the sensor watches: Entra tenant ids, stored lower-case, each with
a readable, immutable key that names its Dagster partition."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.exc import IntegrityError

from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.schema import tenants
from inventory_pipelines.core.tenant_ids import looks_like_guid, normalize_tenant_id
from inventory_pipelines.core.tenant_keys import (
    KEY_MAX_LENGTH,
    fallback_key,
    slugify,
    validate_tenant_key,
    with_suffix,
)

_ADD_ATTEMPTS = 3  # a concurrent registration can take the derived key first; derive again


@dataclass(frozen=True)
class Tenant:
    tenant_id: str
    tenant_key: str
    display_name: str
    active: bool
    created_at: datetime
    updated_at: datetime


def add_tenant(
    engine: Engine, tenant_id: str, display_name: str, key: str | None = None
) -> tuple[Tenant, str]:
    """Register a tenant, or rename and re-activate it; returns it and what happened.

    `key` defaults to a slug of the name, made unique with `-2`, `-3`, …. A key never
    changes once given: renaming keeps it, and asking for another one is an error.
    """
    tenant_id = normalize_tenant_id(tenant_id)
    name = (display_name or "").strip()
    if not name:
        raise ValidationError("tenant display name must not be empty (--name)")
    wanted = validate_tenant_key(key.strip()) if key is not None else None
    for attempt in range(_ADD_ATTEMPTS):
        try:
            with engine.begin() as conn:
                outcome = _add_or_update(conn, tenant_id, name, wanted)
            break
        except IntegrityError:
            if attempt == _ADD_ATTEMPTS - 1:
                raise ValidationError(
                    f"tenant {tenant_id} could not be registered: another registration took "
                    "its key at the same time; run the command again"
                ) from None
    tenant = get_tenant(engine, tenant_id)
    assert tenant is not None
    return tenant, outcome


def _add_or_update(conn: Connection, tenant_id: str, name: str, key: str | None) -> str:
    now = datetime.now(UTC)
    row = conn.execute(select(tenants).where(tenants.c.tenant_id == tenant_id)).first()
    if row is not None:
        if key is not None and key != row.tenant_key:
            raise ValidationError(
                f"tenant {tenant_id} already has the key {row.tenant_key!r}; "
                "tenant keys are immutable (they name the tenant's Dagster partitions)"
            )
        if row.active and row.display_name == name:
            return "unchanged"
        conn.execute(
            update(tenants)
            .where(tenants.c.tenant_id == tenant_id)
            .values(display_name=name, active=True, updated_at=now)
        )
        return "reactivated" if not row.active else "renamed"
    if key is None:
        slug = slugify(name)
        usable = slug and not looks_like_guid(slug)  # a GUID-shaped key would be ambiguous
        key = _free_key(conn, slug if usable else fallback_key(tenant_id))
    else:
        holder = _tenant_with_key(conn, key)
        if holder is not None:
            raise ValidationError(
                f"tenant key {key!r} is already used by tenant {holder.tenant_id} "
                f"({holder.display_name!r}); choose another --key"
            )
    conn.execute(
        tenants.insert().values(
            tenant_id=tenant_id,
            tenant_key=key,
            display_name=name,
            active=True,
            created_at=now,
            updated_at=now,
        )
    )
    return "added"


def _free_key(conn: Connection, base: str) -> str:
    """`base`, or the first of `base-2`, `base-3`, … that no tenant uses."""
    # Keys hold no LIKE wildcards. Suffixes of up to 13 characters keep base's first 50.
    prefix = base[: KEY_MAX_LENGTH - 13]
    taken = set(
        conn.execute(
            select(tenants.c.tenant_key).where(tenants.c.tenant_key.like(f"{prefix}%"))
        ).scalars()
    )
    candidate, number = base, 1
    while candidate in taken:
        number += 1
        candidate = with_suffix(base, number)
    return candidate


def _tenant_with_key(conn: Connection, key: str) -> Tenant | None:
    row = conn.execute(select(tenants).where(tenants.c.tenant_key == key)).first()
    return Tenant(**row._mapping) if row else None


def deactivate_tenant(engine: Engine, key_or_id: str) -> Tenant:
    """Stop scheduling a tenant (named by key or GUID); its inventory stays queryable."""
    tenant_id = resolve_tenant(engine, key_or_id).tenant_id
    with engine.begin() as conn:
        conn.execute(
            update(tenants)
            .where(tenants.c.tenant_id == tenant_id)
            .values(active=False, updated_at=datetime.now(UTC))
        )
    tenant = get_tenant(engine, tenant_id)
    assert tenant is not None
    return tenant


def get_tenant(engine: Engine, tenant_id: str) -> Tenant | None:
    tenant_id = normalize_tenant_id(tenant_id)
    with engine.connect() as conn:
        row = conn.execute(select(tenants).where(tenants.c.tenant_id == tenant_id)).first()
    return Tenant(**row._mapping) if row else None


def resolve_tenant(engine: Engine, key_or_id: str) -> Tenant:
    """The tenant a person named by its key (`contoso-ltd`) or its GUID; an error if none."""
    value = (key_or_id or "").strip()
    with engine.connect() as conn:
        tenant = None
        if looks_like_guid(value):
            row = conn.execute(select(tenants).where(tenants.c.tenant_id == value.lower())).first()
            tenant = Tenant(**row._mapping) if row else None
        if tenant is None:
            tenant = _tenant_with_key(conn, value.lower())
    if tenant is None:
        raise ValidationError(
            f"tenant {value!r} is not registered (neither a tenant key nor a tenant id); "
            "see `inventory-pipelines tenants list`, or add it with `tenants add`"
        )
    return tenant


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
