import pytest
from sqlalchemy import Engine

from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.tenants import (
    add_tenant,
    deactivate_tenant,
    get_tenant,
    list_tenants,
    normalize_tenant_id,
)

GUID = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "contoso.onmicrosoft.com",
        "72f988bf86f141af91ab2d7cd011db47",
        "{" + GUID + "}",
        "72f988bf-86f1-41af-91ab-2d7cd011db4",
        "zzf988bf-86f1-41af-91ab-2d7cd011db47",
    ],
)
def test_bad_tenant_ids_are_rejected_by_name(bad: str) -> None:
    with pytest.raises(ValidationError, match="is not a GUID"):
        normalize_tenant_id(bad)


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
