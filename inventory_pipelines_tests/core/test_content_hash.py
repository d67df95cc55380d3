"""The content hash: volatile fields (the item's OData annotations but `@odata.type`) do not
count, every other field does, at any depth; key order never matters."""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_pipelines.core.content_hash import (
    KEPT_ANNOTATIONS,
    content_hash,
    hashed_content,
    is_volatile,
)

POLICY: dict[str, Any] = {
    "@odata.type": "#microsoft.graph.windows10CustomConfiguration",
    "id": "0f6c9e0e-1111-4a2b-9c3d-000000000001",
    "displayName": "Baseline",
    "description": None,
    "version": 4,
    "roleScopeTagIds": ["0", "7"],
    "omaSettings": [
        {"omaUri": "./Device/Vendor/MSFT/Policy/Config/A", "value": 1, "isEncrypted": False},
        {"omaUri": "./Device/Vendor/MSFT/Policy/Config/B", "value": "ünïcødé ✓"},
    ],
    "nested": {"deeper": {"deepest": [1, 2.5, None, {"flag": True}]}},
}

VOLATILE = [
    "@odata.etag",
    "@odata.id",
    "@odata.editLink",
    "@odata.context",
    "@microsoft.graph.tips",
    "assignments@odata.context",
    "settings@odata.nextLink",
    "settings@odata.count",
]


@pytest.mark.parametrize("key", VOLATILE)
def test_a_change_only_in_a_volatile_field_is_no_change(key: str) -> None:
    assert is_volatile(key)
    first = {**POLICY, key: "W/\"datetime'2026-03-01T00%3A00%3A00'\""}
    second = {**POLICY, key: "something else entirely"}
    assert content_hash(first) == content_hash(second) == content_hash(POLICY)


def test_odata_type_is_content() -> None:
    assert {"@odata.type"} == KEPT_ANNOTATIONS and not is_volatile("@odata.type")
    derived = {**POLICY, "@odata.type": "#microsoft.graph.windows10GeneralConfiguration"}
    assert content_hash(derived) != content_hash(POLICY)


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every leaf path of a JSON value."""
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _paths(v, (*path, k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _paths(v, (*path, i))]
    return [path]


@pytest.mark.parametrize("path", _paths(POLICY), ids=lambda p: "/".join(map(str, p)))
def test_a_change_in_any_other_field_is_a_change_nested_too(path: tuple[Any, ...]) -> None:
    changed = copy.deepcopy(POLICY)
    parent = changed
    for step in path[:-1]:
        parent = parent[step]
    old = parent[path[-1]]
    parent[path[-1]] = "changed" if old != "changed" else "other"
    assert content_hash(changed) != content_hash(POLICY)


def test_added_or_removed_fields_and_reordered_lists_are_changes() -> None:
    assert content_hash({**POLICY, "newField": None}) != content_hash(POLICY)
    without = {k: v for k, v in POLICY.items() if k != "description"}
    assert content_hash(without) != content_hash(POLICY)
    reordered = {**POLICY, "roleScopeTagIds": ["7", "0"]}
    assert content_hash(reordered) != content_hash(POLICY)


def test_hash_is_sha256_of_canonical_json_without_volatile_fields() -> None:
    annotated = {**POLICY, "@odata.etag": "W/1", "assignments@odata.context": "x"}
    assert hashed_content(annotated) == POLICY
    assert hashed_content(POLICY) is POLICY  # nothing to drop: no copy
    canonical = json.dumps(POLICY, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    digest = content_hash(annotated)
    assert len(digest) == 32
    assert digest == hashlib.sha256(canonical.encode()).digest()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**60), 2**60) | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(item=st.dictionaries(st.text(max_size=10), json_values, max_size=8), data=st.data())
def test_key_order_never_matters(item: dict[str, Any], data: st.DataObject) -> None:
    keys = data.draw(st.permutations(list(item)))
    assert content_hash({k: item[k] for k in keys}) == content_hash(item)


def test_values_orjson_refuses_still_hash_deterministically() -> None:
    odd = {**POLICY, "big": 2**70, "broken": "\ud800 lone surrogate"}
    assert content_hash(odd) == content_hash(dict(reversed(list(odd.items()))))
    assert content_hash(odd) != content_hash({**odd, "big": 2**70 + 1})


# -- the encoder is shared now; stored content hashes must not move ---------------------------


def _orjson_digest(item: dict[str, Any]) -> bytes:
    """How content hashes were computed before the project had one encoder: orjson with sorted
    keys, the standard library for what orjson refuses. Every stored digest was made so."""
    content = hashed_content(item)
    try:
        encoded = orjson.dumps(content, option=orjson.OPT_SORT_KEYS)
    except orjson.JSONEncodeError:
        encoded = json.dumps(
            content, sort_keys=True, separators=(",", ":"), ensure_ascii=False
        ).encode("utf-8", "surrogatepass")
    return hashlib.sha256(encoded).digest()


PINNED_DIGESTS = [
    (POLICY, "84f752e9db4265f19729f348bbf702f3d3840ea9f19e3f0c7c56c515d1455dc9"),
    (
        {"f": 1e16, "n": float("nan"), "big": 2**70, "s": "\ud800", "u": "é"},
        "f5abfd58cccfade590801a348610264a57712fa89b6ea60bdd6e0d7fffadfe5a",
    ),
    (
        {"f": 1e16, "g": 1e-7, "i": float("inf")},
        "edb941e19d8e9fef71985228712e6f5b80ab0acca0f6f7d4dad0f60b43458b9f",
    ),
]
"""Digests computed by the encoder before it was shared; floats in orjson's spelling."""


@pytest.mark.parametrize(("item", "expected"), PINNED_DIGESTS)
def test_stored_content_hashes_are_unchanged(item: dict[str, Any], expected: str) -> None:
    assert content_hash(item).hex() == expected


odd_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.text(st.characters(categories=["Cs", "Cc"]), max_size=4),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(st.text(max_size=10), odd_json, max_size=6))
def test_content_hash_is_what_it_was_for_any_value(item: dict[str, Any]) -> None:
    assert content_hash(item) == _orjson_digest(item)
