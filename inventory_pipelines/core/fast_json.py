"""JSON on the hot path (Graph pages in) and the project's one canonical JSON encoder.

`canonical_dumps` is what every stored or hashed JSON text goes through: selection payloads
and their hashes, item metadata, content hashes. Canonical means sorted keys, compact
separators and unescaped UTF-8, exactly as the standard library writes them with those
options; orjson does the work where its output is the same. orjson refuses lone surrogates,
integers beyond 64 bits and NaN literals, all of which the standard library accepts, and it
writes some floats differently (`1e16` for `1e+16`). Those rare inputs go through `json`, so
results never depend on which path was taken.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode
"""The canonical form: sorted keys, compact separators, unescaped unicode."""
_ORJSON_CANONICAL = (
    orjson.OPT_SORT_KEYS
    | orjson.OPT_PASSTHROUGH_DATETIME
    | orjson.OPT_PASSTHROUGH_DATACLASS
    | orjson.OPT_PASSTHROUGH_SUBCLASS
)
"""Sorted keys; datetimes and dataclasses, which `json` cannot encode, are refused (and so
fail as in `json`), subclasses of str/int/dict/list go through `json`. (UUIDs, enums and
numpy values orjson would still write; values here are parsed JSON or TOML, never those.)"""


def loads(content: bytes | str) -> Any:
    """Parse a JSON document; raises `json.JSONDecodeError` or `UnicodeDecodeError` as `json`."""
    try:
        return orjson.loads(content)
    except orjson.JSONDecodeError:
        return json.loads(content)


def _has_float_or_odd_key(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(
            not isinstance(key, str) or _has_float_or_odd_key(item) for key, item in value.items()
        )
    if isinstance(value, list | tuple):
        return any(_has_float_or_odd_key(item) for item in value)
    return False


def canonical_dumps(value: Any, *, json_floats: bool = True) -> str:
    """Canonical JSON text of `value`, as `json` writes it.

    `json_floats=False` spells floats as orjson does (`1e16`, NaN and infinities as `null`)
    and so skips looking for them: for the content hash, whose stored digests were made that
    way, and for values built by the metadata whitelist, which holds no floats at all.
    """
    if json_floats and _has_float_or_odd_key(value):
        return _CANONICAL(value)
    try:
        return orjson.dumps(value, option=_ORJSON_CANONICAL).decode()
    except orjson.JSONEncodeError:  # lone surrogates, huge integers, non-string keys, …
        return _CANONICAL(value)
