"""The metadata whitelist: which Graph fields inventory keeps, with type and size limits.

Graph objects carry settings, scripts and secrets we must not copy; only the listed keys
are kept. Unknown keys, wrong types and oversize values are dropped or cut, never fatal.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

MAX_STRING = 256
MAX_LIST_ITEMS = 50
MAX_DISPLAY_NAME = 512

Cleaner = Callable[[Any], Any]
_DROP = object()


def _text(value: str, limit: int) -> str:
    # NUL cannot be stored in PostgreSQL text or JSONB; nothing legitimate carries it.
    return (value.replace("\x00", "") if "\x00" in value else value)[:limit]


def _string(limit: int = MAX_STRING) -> Cleaner:
    def clean(value: Any) -> Any:
        return _text(value, limit) if isinstance(value, str) else _DROP

    return clean


def _boolean(value: Any) -> Any:
    return value if isinstance(value, bool) else _DROP


def _integer(value: Any) -> Any:
    ok = isinstance(value, int) and not isinstance(value, bool) and abs(value) < 2**53
    return value if ok else _DROP


def _version(value: Any) -> Any:
    if isinstance(value, str):
        return _text(value, 64)
    return _integer(value)


def _string_list(value: Any) -> Any:
    # Graph sends platforms as a comma-separated string on some types, a list on others.
    if isinstance(value, str):
        return _text(value, MAX_STRING)
    if not isinstance(value, list):
        return _DROP
    return [_text(v, 64) for v in value[:MAX_LIST_ITEMS] if isinstance(v, str)]


_TEMPLATE_KEYS = ("templateId", "templateFamily", "templateDisplayName", "templateDisplayVersion")


def _template_reference(value: Any) -> Any:
    if not isinstance(value, Mapping):
        return _DROP
    kept = {k: _text(value[k], MAX_STRING) for k in _TEMPLATE_KEYS if isinstance(value.get(k), str)}
    return kept or _DROP


WHITELIST: dict[str, Cleaner] = {
    "@odata.type": _string(128),
    "createdDateTime": _string(40),
    "lastModifiedDateTime": _string(40),
    "modifiedDateTime": _string(40),
    "version": _version,
    "platforms": _string_list,
    "technologies": _string_list,
    "roleScopeTagIds": _string_list,
    "templateReference": _template_reference,
    "isBuiltIn": _boolean,
    "isAssigned": _boolean,
    "state": _string(40),
    "priority": _integer,
    "settingCount": _integer,
}


def whitelist_metadata(item: Mapping[str, Any]) -> dict[str, Any]:
    """Keep only whitelisted keys whose values pass their type and size rules."""
    kept: dict[str, Any] = {}
    for key, clean in WHITELIST.items():
        if key in item:
            value = item[key]
            if value is None:
                continue
            cleaned = clean(value)
            if cleaned is not _DROP:
                kept[key] = cleaned
    return kept


def display_name_of(item: Mapping[str, Any], name_field: str = "displayName") -> str | None:
    """The item's name, from the type's name field first, cut to a safe length."""
    for field in (name_field, "displayName", "name"):
        value = item.get(field)
        if isinstance(value, str):
            return _text(value, MAX_DISPLAY_NAME)
    return None
