import hashlib
import json
import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.policy_types import POLICY_TYPES, all_policy_type_keys
from inventory_pipelines.core.selection import (
    canonical_json,
    get_selection,
    load_selections,
    parse_payload,
    selection_hash,
    validate_payload,
)

json_scalars = st.none() | st.booleans() | st.integers() | st.text(max_size=8)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


def shuffled(value: Any, rng: random.Random) -> Any:
    """The same logical value with every dict's key order and every list's order shuffled."""
    if isinstance(value, dict):
        keys = list(value)
        rng.shuffle(keys)
        return {k: shuffled(value[k], rng) for k in keys}
    if isinstance(value, list):
        items = [shuffled(v, rng) for v in value]
        rng.shuffle(items)
        return items
    return value


def test_canonical_json_is_sorted_compact_utf8() -> None:
    payload = {"b": [3, 1, 2], "a": {"y": "é", "x": None}}
    assert canonical_json(payload) == '{"a":{"x":null,"y":"é"},"b":[1,2,3]}'
    expected = hashlib.sha256('{"a":{"x":null,"y":"é"},"b":[1,2,3]}'.encode()).hexdigest()
    assert selection_hash(payload) == expected


def test_key_and_array_order_do_not_change_the_hash() -> None:
    one = {"policy_types": ["scope_tags", "compliance_policies"], "note": {"a": 1, "b": 2}}
    two = {"note": {"b": 2, "a": 1}, "policy_types": ["compliance_policies", "scope_tags"]}
    assert selection_hash(one) == selection_hash(two)


def test_different_payloads_have_different_hashes() -> None:
    base = {"policy_types": ["compliance_policies"]}
    assert selection_hash(base) != selection_hash({"policy_types": ["scope_tags"]})
    assert selection_hash(base) != selection_hash(
        {"policy_types": ["compliance_policies", "scope_tags"]}
    )
    assert selection_hash(base) != selection_hash({**base, "extra": True})


@given(json_values, st.randoms(use_true_random=False))
def test_hash_is_invariant_under_reordering(value: Any, rng: random.Random) -> None:
    assert selection_hash(shuffled(value, rng)) == selection_hash(value)
    assert canonical_json(shuffled(value, rng)) == canonical_json(value)


@given(json_values, json_values)
def test_hash_differs_exactly_when_canonical_form_differs(a: Any, b: Any) -> None:
    assert (selection_hash(a) == selection_hash(b)) == (canonical_json(a) == canonical_json(b))


@given(json_values)
def test_canonical_json_round_trips(value: Any) -> None:
    assert canonical_json(json.loads(canonical_json(value))) == canonical_json(value)


def test_validation_rejects_unknown_types_by_name() -> None:
    with pytest.raises(ValidationError, match=r"unknown policy type.*bogus_type"):
        validate_payload({"policy_types": ["compliance_policies", "bogus_type"]})


@pytest.mark.parametrize(
    "text, message",
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "JSON object"),
        ('{"policy_types": []}', "non-empty list"),
        ('{"policy_types": "compliance_policies"}', "non-empty list"),
        ('{"policy_types": [1]}', "must be strings"),
    ],
)
def test_bad_payloads_are_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        parse_payload(text)


def test_validation_sorts_and_deduplicates_types() -> None:
    payload = validate_payload(
        {"policy_types": ["scope_tags", "compliance_policies", "scope_tags"]}
    )
    assert payload["policy_types"] == ["compliance_policies", "scope_tags"]


def test_shipped_selections_include_all_types() -> None:
    selections = load_selections()
    assert selections["all"].policy_types == tuple(all_policy_type_keys())
    assert len(selections["all"].policy_types) == len(POLICY_TYPES) >= 40
    for selection in selections.values():
        assert len(selection.hash) == 64
        assert selection.hash == selection_hash(selection.payload)


def test_unknown_selection_names_the_known_ones() -> None:
    with pytest.raises(ValidationError, match=r"unknown selection 'nightly'.*all"):
        get_selection("nightly")


def test_selections_file_errors_name_the_file(tmp_path: Any) -> None:
    bad = tmp_path / "selections.toml"
    bad.write_text('version = 1\n[selections.x]\npolicy_types = ["nope"]\n')
    with pytest.raises(ValidationError, match=r"selection 'x' in .*selections.toml.*nope"):
        load_selections(bad)
    bad.write_text('[selections.x]\npolicy_types = ["scope_tags"]\n')
    with pytest.raises(ValidationError, match="version = 1"):
        load_selections(bad)


@pytest.mark.parametrize("everything", ['"*"', '["*"]'])
def test_star_means_every_type_on_the_command_line_too(everything: str) -> None:
    payload = parse_payload(f'{{"policy_types": {everything}}}')
    assert payload == get_selection("all").payload
    assert selection_hash(payload) == get_selection("all").hash


def test_star_cannot_be_combined_with_types(tmp_path: Any) -> None:
    with pytest.raises(ValidationError, match="already means every policy type"):
        parse_payload('{"policy_types": ["*", "scope_tags"]}')
    path = tmp_path / "selections.toml"
    path.write_text('version = 1\n[selections.everything]\npolicy_types = "*"\n')
    assert load_selections(path)["everything"].hash == get_selection("all").hash


# -- the encoder is shared now; stored selection hashes must not move ------------------------


def _json_module_canonical(payload: Any) -> str:
    """How selection hashes were computed before the project had one encoder (the standard
    library, arrays sorted by their own encoding): the form every stored hash was made in."""

    def sort_arrays(value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k): sort_arrays(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return sorted((sort_arrays(v) for v in value), key=dumps)
        return value

    def dumps(value: Any) -> str:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)

    return dumps(sort_arrays(payload))


PINNED_HASHES = [
    (
        {
            "policy_types": [
                "compliance_policies",
                "settings_catalog_compliance",
                "compliance_scripts",
                "notification_templates",
            ]
        },
        "50e7ce2fd2f96acff34cab739215a079882da703904a3fb362e4e5534976bfc3",
    ),
    (
        {
            "policy_types": ["scope_tags"],
            "note": "Zürich ✓ \u2028",
            "limits": {"max": 2**70, "ratio": 1e16, "small": 1e-7, "zero": -0.0},
            "tags": [[2, 1], {"b": None, "a": True}, "x", 3.5],
        },
        "ca28f6079c53f23d924cc68e01604a361314fec394a7a37574ac4e48f0086e35",
    ),
]
"""Hashes computed by the standard-library encoder before it was replaced (the first is the
shipped `compliance` selection's, as stored in `inventory_sync_runs.selection_hash`)."""


@pytest.mark.parametrize(("payload", "expected"), PINNED_HASHES)
def test_stored_selection_hashes_are_unchanged(payload: dict[str, Any], expected: str) -> None:
    assert selection_hash(payload) == expected
    assert canonical_json(payload) == _json_module_canonical(payload)


def test_a_shipped_selection_keeps_its_stored_hash() -> None:
    assert get_selection("compliance").hash == PINNED_HASHES[0][1]


any_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=8)
    | st.text(st.characters(categories=["Cs", "Cc", "Zl"]), max_size=4),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(any_json)
def test_canonical_json_is_what_the_standard_library_wrote(value: Any) -> None:
    assert canonical_json(value) == _json_module_canonical(value)
