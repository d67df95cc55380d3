from datetime import UTC, datetime

import pytest
from sqlalchemy import Engine, insert, update
from sqlalchemy.exc import DBAPIError, IntegrityError

from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.schema import tenants
from inventory_pipelines.core.tenants import (
    add_tenant,
    deactivate_tenant,
    get_tenant,
    list_tenants,
    resolve_tenant,
)

GUID = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"
OTHER = "0c2e7b41-5d8a-4f3e-9b1c-6a7d8e9f0a1b"


def test_tenant_ids_are_stored_lower_case(engine: Engine) -> None:
    tenant, outcome = add_tenant(engine, GUID, "Contoso")
    assert outcome == "added" and tenant.tenant_id == GUID.lower() and tenant.active
    assert get_tenant(engine, GUID.lower()) == tenant
    assert add_tenant(engine, GUID.lower(), "Contoso")[1] == "unchanged"


def test_deactivate_and_reactivate(engine: Engine) -> None:
    add_tenant(engine, GUID, "Contoso")
    assert not deactivate_tenant(engine, GUID).active
    assert list_tenants(engine, active_only=True) == []
    tenant, outcome = add_tenant(engine, GUID, "Contoso Ltd")
    assert outcome == "reactivated" and tenant.active and tenant.display_name == "Contoso Ltd"
    assert tenant.updated_at > tenant.created_at


def test_unknown_tenant_cannot_be_deactivated(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="not registered"):
        deactivate_tenant(engine, GUID)


def test_empty_name_is_rejected_and_nothing_stored(engine: Engine) -> None:
    with pytest.raises(ValidationError, match="display name"):
        add_tenant(engine, GUID, "  ")
    assert list_tenants(engine) == []


def test_key_defaults_to_a_slug_of_the_name(engine: Engine) -> None:
    tenant, _ = add_tenant(engine, GUID, "Contoso Ltd.")
    assert tenant.tenant_key == "contoso-ltd"


def test_default_keys_are_made_unique(engine: Engine) -> None:
    keys = [
        add_tenant(engine, f"{n:08x}-86f1-41af-91ab-2d7cd011db47", name)[0].tenant_key
        for n, name in enumerate(["Contoso Ltd.", "contoso ltd", "CONTOSO-LTD"])
    ]
    assert keys == ["contoso-ltd", "contoso-ltd-2", "contoso-ltd-3"]


@pytest.mark.parametrize("name", ["日本", OTHER])
def test_a_name_without_a_usable_slug_gets_a_key_from_its_id(engine: Engine, name: str) -> None:
    assert add_tenant(engine, GUID, name)[0].tenant_key == "tenant-72f988bf"


def test_explicit_key_is_used(engine: Engine) -> None:
    tenant, _ = add_tenant(engine, GUID, "Contoso Ltd.", key="contoso")
    assert tenant.tenant_key == "contoso"


@pytest.mark.parametrize(
    "bad",
    ["", "Contoso", "-contoso", "contoso_ltd", "contoso ltd", "café", "a" * 64, GUID.lower()],
)
def test_invalid_explicit_keys_are_refused_and_nothing_stored(engine: Engine, bad: str) -> None:
    with pytest.raises(ValidationError, match=r"tenant key .* (is invalid|looks like a tenant id)"):
        add_tenant(engine, GUID, "Contoso", key=bad)
    assert list_tenants(engine) == []


def test_a_key_taken_by_another_tenant_is_refused(engine: Engine) -> None:
    add_tenant(engine, OTHER, "Fabrikam", key="contoso")
    with pytest.raises(ValidationError, match=f"already used by tenant {OTHER}"):
        add_tenant(engine, GUID, "Contoso", key="contoso")
    assert [t.tenant_id for t in list_tenants(engine)] == [OTHER]


def test_keys_are_immutable_and_renaming_keeps_the_key(engine: Engine) -> None:
    add_tenant(engine, GUID, "Contoso", key="contoso")
    renamed, outcome = add_tenant(engine, GUID, "Contoso Holdings")
    assert outcome == "renamed" and renamed.tenant_key == "contoso"
    assert add_tenant(engine, GUID, "Contoso Holdings", key="contoso")[1] == "unchanged"
    with pytest.raises(ValidationError, match=r"already has the key 'contoso'.*immutable"):
        add_tenant(engine, GUID, "Contoso Holdings", key="contoso-holdings")
    deactivate_tenant(engine, GUID)
    reactivated, outcome = add_tenant(engine, GUID, "Contoso Group")
    assert outcome == "reactivated" and reactivated.tenant_key == "contoso"


def test_the_database_refuses_to_change_a_key(engine: Engine) -> None:
    add_tenant(engine, GUID, "Contoso")
    with pytest.raises(DBAPIError, match="tenant_key is immutable"), engine.begin() as conn:
        conn.execute(update(tenants).values(tenant_key="renamed"))
    assert get_tenant(engine, GUID).tenant_key == "contoso"  # type: ignore[union-attr]


@pytest.mark.parametrize("bad", ["Contoso", "-contoso", "a" * 64, ""])
def test_the_database_checks_the_key_shape(engine: Engine, bad: str) -> None:
    now = datetime.now(UTC)
    row = {"display_name": "X", "active": True, "created_at": now, "updated_at": now}
    with pytest.raises(IntegrityError, match="tenants_tenant_key_shape"), engine.begin() as conn:
        conn.execute(insert(tenants).values(tenant_id=OTHER, tenant_key=bad, **row))


def test_resolve_accepts_the_key_or_the_guid(engine: Engine) -> None:
    tenant, _ = add_tenant(engine, GUID, "Contoso Ltd.")
    assert resolve_tenant(engine, "contoso-ltd") == tenant
    assert resolve_tenant(engine, " Contoso-Ltd ") == tenant
    assert resolve_tenant(engine, GUID) == tenant
    assert resolve_tenant(engine, GUID.lower()) == tenant


@pytest.mark.parametrize("unknown", ["fabrikam", OTHER, "not a key", ""])
def test_resolve_names_an_unknown_tenant(engine: Engine, unknown: str) -> None:
    add_tenant(engine, GUID, "Contoso")
    with pytest.raises(ValidationError, match="is not registered"):
        resolve_tenant(engine, unknown)


def test_deactivate_by_key(engine: Engine) -> None:
    add_tenant(engine, GUID, "Contoso")
    assert deactivate_tenant(engine, "contoso").active is False
