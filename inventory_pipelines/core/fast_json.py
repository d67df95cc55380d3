"""JSON on the hot path (Graph pages in, canonical metadata out) with orjson, byte-identical
to the standard library where orjson would differ, so stored rows keep comparing equal.

orjson refuses lone surrogates, integers beyond 64 bits and NaN literals, all of which the
standard library accepts; it writes some floats differently (`1e16` for `1e+16`). Those rare
inputs go through `json`, so results never depend on which path was taken.
"""

from __future__ import annotations

import json
from typing import Any

import orjson

_CANONICAL = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode
"""The canonical form: sorted keys, compact separators, unescaped unicode."""


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


def canonical_dumps(value: Any, *, float_free: bool = False) -> str:
    """Canonical JSON text of `value`, as `json` writes it.

    `float_free=True` skips looking for floats and non-string keys: for values built by the
    metadata whitelist, which keeps only strings, booleans, small integers and string lists.
    """
    if not float_free and _has_float_or_odd_key(value):
        return _CANONICAL(value)
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:  # lone surrogates, huge integers, unknown types
        return _CANONICAL(value)
