"""One rule for tenant ids: a GUID, stored and sent lower-case; the registry, the store and
the Graph client all use it (`core/tenant_ids.py`)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from inventory_pipelines.core import tenant_ids
from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.tenant_ids import looks_like_guid, normalize_tenant_id

GUID = "72F988BF-86F1-41AF-91AB-2D7CD011DB47"


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "   ",
        "contoso.onmicrosoft.com",
        "contoso",
        "72f988bf86f141af91ab2d7cd011db47",
        "{" + GUID + "}",
        "urn:uuid:" + GUID,
        "72f988bf-86f1-41af-91ab-2d7cd011db4",
        "zzf988bf-86f1-41af-91ab-2d7cd011db47",
        GUID + "/../other",
        GUID + "\nX",
    ],
)
def test_anything_but_a_guid_is_rejected_by_name(bad: str) -> None:
    with pytest.raises(ValidationError, match="is not a GUID"):
        normalize_tenant_id(bad)


@pytest.mark.parametrize("bad", [None, 42, b"72f988bf-86f1-41af-91ab-2d7cd011db47"])
def test_a_non_string_is_rejected_too(bad: object) -> None:
    with pytest.raises(ValidationError, match="is not a GUID"):
        normalize_tenant_id(bad)  # type: ignore[arg-type]
    assert not looks_like_guid(bad)  # type: ignore[arg-type]


def test_a_guid_is_kept_lower_case_without_surrounding_space() -> None:
    assert normalize_tenant_id(f"  {GUID}\t") == GUID.lower()
    assert looks_like_guid(GUID) and looks_like_guid(GUID.lower())


@given(st.uuids())
def test_every_guid_normalizes_to_its_canonical_text(value: uuid.UUID) -> None:
    assert normalize_tenant_id(str(value).upper()) == str(value)


def test_there_is_one_validator() -> None:
    """The registry and the Graph side import this module's functions; none keeps its own."""
    from inventory_pipelines.core import missing, store, tenant_keys, tenants
    from inventory_pipelines.graph import auth, client

    for module in (tenants, store, missing, client, auth):
        assert module.normalize_tenant_id is tenant_ids.normalize_tenant_id
    assert tenant_keys.looks_like_guid is tenant_ids.looks_like_guid
    assert not hasattr(auth, "check_tenant_id")
