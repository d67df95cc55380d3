"""Tenant keys: the readable, unique, immutable handle of a tenant and its Dagster partition key.

A key is lower-case ASCII letters, digits and '-', 1 to 63 characters, starting with a letter
or digit (the database checks the same shape). The default is a slug of the display name;
migration 0003 derives the keys of tenants registered before keys existed the same way.
"""

from __future__ import annotations

import re

from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.tenant_ids import looks_like_guid

KEY_MAX_LENGTH = 63
_KEY = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_SEPARATORS = re.compile(r"[^A-Za-z0-9]+")

# Common Latin accents folded to ASCII so "Café Müller" reads as cafe-muller. The same table
# is spelled out in sql/*/0003_tenant_key.sql; keep them equal.
_ACCENTED = (
    "ÀÁÂÃÄÅàáâãäåÇçÈÉÊËèéêëÌÍÎÏìíîïÑñÒÓÔÕÖØòóôõöøÙÚÛÜùúûüÝýÿ"
    "ĀāĂăĄąĆćČčĎďĐđĒēĘęĚěĞğĪīİıŁłŃńŇňŌōŐőŘřŚśŞşŠšŢţŤťŪūŮůŰűŹźŻżŽž"
)
_PLAIN = (
    "aaaaaaaaaaaacceeeeeeeeiiiiiiiinnoooooooooooouuuuuuuuyyy"
    "aaaaaaccccddddeeeeeeggiiiillnnnnoooorrssssssttttuuuuuuzzzzzz"
)
_FOLD = str.maketrans(
    dict(zip(_ACCENTED, _PLAIN, strict=True))
    | {"ß": "ss", "Æ": "ae", "æ": "ae", "Œ": "oe", "œ": "oe"}
)


def slugify(display_name: str) -> str:
    """The key a display name suggests; empty when it has no letters or digits to keep."""
    text = _SEPARATORS.sub("-", display_name.translate(_FOLD)).lower().strip("-")
    return text[:KEY_MAX_LENGTH].rstrip("-")


def fallback_key(tenant_id: str) -> str:
    """For names with nothing to slug (e.g. only CJK characters): readable enough, unique."""
    return f"tenant-{tenant_id[:8]}"


def with_suffix(base: str, number: int) -> str:
    """`base-N`, shortening `base` so the result still fits."""
    suffix = f"-{number}"
    return base[: KEY_MAX_LENGTH - len(suffix)].rstrip("-") + suffix


def validate_tenant_key(key: str) -> str:
    """An operator-chosen key, or a clear error saying which rule it breaks."""
    if not _KEY.match(key):
        raise ValidationError(
            f"tenant key {key!r} is invalid: use 1 to {KEY_MAX_LENGTH} lower-case letters a-z, "
            "digits and '-', starting with a letter or digit (e.g. contoso-ltd)"
        )
    if looks_like_guid(key):
        raise ValidationError(
            f"tenant key {key!r} looks like a tenant id; choose a readable name "
            "(commands accept the key or the GUID, so a GUID-shaped key would be ambiguous)"
        )
    return key
