"""orjson on the hot path writes exactly what the standard library wrote: stored metadata
text must stay byte-identical or every unchanged item would look changed."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_pipelines.core.fast_json import canonical_dumps, loads
from inventory_pipelines.core.metadata import WHITELIST, whitelist_metadata
from inventory_pipelines.core.observed import ObservedItem

_BEFORE = json.JSONEncoder(sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode
"""What `ObservedItem` serialized with before orjson."""

any_text = st.text(max_size=60)  # full unicode incl. NUL and control characters
with_surrogates = st.text(st.characters(categories=["Cs", "Lu", "Cc"]), max_size=10)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False)
    | any_text
    | with_surrogates,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(any_text, c, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from([*WHITELIST, "displayName", "name", "secret"]) | any_text
graph_items = st.dictionaries(keys, json_values, max_size=12)


@settings(max_examples=400, deadline=None)
@given(item=graph_items)
def test_whitelisted_metadata_serializes_byte_identically(item: dict[str, Any]) -> None:
    meta = whitelist_metadata(item)
    assert canonical_dumps(meta, json_floats=False) == _BEFORE(meta)
    assert ObservedItem.from_graph({"id": "x", **item}).meta_json == _BEFORE(meta)


@settings(max_examples=400, deadline=None)
@given(value=json_values)
def test_any_json_value_serializes_byte_identically(value: Any) -> None:
    assert canonical_dumps(value) == _BEFORE(value)


@pytest.mark.parametrize(
    "value",
    [
        {"f": 1e16, "g": 1e-7, "h": -0.0, "i": 0.1},  # orjson writes 1e16 / 1e-7
        {2: "int keys", 1: [True]},
        {"big": 2**70},
        {"s": "\ud800 lone surrogate"},
        {"z": 1, "a": {"é": [1, "\u2028", "\x7f"], "E": None}, "": True},
    ],
)
def test_values_orjson_writes_differently_fall_back(value: Any) -> None:
    assert canonical_dumps(value) == _BEFORE(value)


@pytest.mark.parametrize(
    "text",
    [
        b'{"value":[{"id":"a"}],"n":1.5}',
        b'{"s":"\\ud800"}',  # lone surrogate escape: json accepts it, orjson does not
        '{"u":"\u00e9"}'.encode("utf-16"),
    ],
)
def test_loads_accepts_what_json_accepts(text: bytes) -> None:
    assert loads(text) == json.loads(text)


def test_huge_integers_are_dropped_by_the_whitelist_either_way() -> None:
    text = b'{"priority":123456789012345678901234567890,"settingCount":7}'
    assert whitelist_metadata(loads(text)) == whitelist_metadata(json.loads(text))


def test_loads_refuses_what_json_refuses() -> None:
    for broken in (b'{"value":[,]}', b'{"value": [', b"\xff\xfe\xfd"):
        with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
            loads(broken)
    assert math.isnan(loads(b"NaN"))


class _Text(str):
    pass


@dataclass
class _Point:
    x: int
    y: int


@pytest.mark.parametrize(
    "value",
    [
        {"when": datetime(2026, 3, 1, tzinfo=UTC)},
        {"thing": _Point(1, 2)},
    ],
)
def test_what_json_cannot_encode_is_refused_as_json_refuses_it(value: Any) -> None:
    with pytest.raises(TypeError):
        _BEFORE(value)
    with pytest.raises(TypeError):
        canonical_dumps(value)


def test_subclasses_of_builtins_encode_as_json_encodes_them() -> None:
    value = {_Text("b"): _Text("x"), "a": [_Text("y")]}
    assert canonical_dumps(value) == _BEFORE(value)
