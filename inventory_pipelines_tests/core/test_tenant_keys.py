import pytest

from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.tenant_keys import (
    KEY_MAX_LENGTH,
    slugify,
    validate_tenant_key,
    with_suffix,
)


@pytest.mark.parametrize(
    "name, key",
    [
        ("Contoso Ltd.", "contoso-ltd"),
        ("  --Fabrikam, Inc.--  ", "fabrikam-inc"),
        ("Café Müller GmbH", "cafe-muller-gmbh"),
        ("Straße & Œuvre", "strasse-oeuvre"),
        ("Bjørn's Łódź", "bjorn-s-lodz"),
        ("ÉCOLE 42", "ecole-42"),
        ("日本", ""),
        ("x" * 80, "x" * KEY_MAX_LENGTH),
        ("a" * 62 + " b", "a" * 62),
    ],
)
def test_slugify(name: str, key: str) -> None:
    assert slugify(name) == key


def test_suffixes_keep_keys_within_the_limit() -> None:
    base = "a" * KEY_MAX_LENGTH
    assert with_suffix("contoso", 2) == "contoso-2"
    assert with_suffix(base, 12) == "a" * (KEY_MAX_LENGTH - 3) + "-12"
    assert with_suffix("a" * 61 + "-b", 2) == "a" * 61 + "-2"


@pytest.mark.parametrize("good", ["contoso", "0day", "a", "contoso-ltd-2", "a" * KEY_MAX_LENGTH])
def test_valid_keys(good: str) -> None:
    assert validate_tenant_key(good) == good


def test_guid_shaped_keys_are_ambiguous() -> None:
    with pytest.raises(ValidationError, match="looks like a tenant id"):
        validate_tenant_key("72f988bf-86f1-41af-91ab-2d7cd011db47")
