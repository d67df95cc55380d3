from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from inventory_pipelines.core.metadata import (
    MAX_DISPLAY_NAME,
    MAX_STRING,
    WHITELIST,
    display_name_of,
    whitelist_metadata,
)


def test_unknown_keys_are_dropped_silently() -> None:
    item = {
        "id": "1",
        "@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
        "version": 3,
        "omaSettings": [{"secret": "x"}],
        "scriptContent": "cGFzc3dvcmQ=",
        "roleScopeTagIds": ["0", "1"],
    }
    assert whitelist_metadata(item) == {
        "@odata.type": "#microsoft.graph.windows10GeneralConfiguration",
        "version": 3,
        "roleScopeTagIds": ["0", "1"],
    }


def test_oversize_values_are_cut_not_fatal() -> None:
    item = {
        "@odata.type": "x" * 10_000,
        "platforms": "windows10" * 1000,
        "roleScopeTagIds": [str(i) * 100 for i in range(500)],
        "templateReference": {"templateId": "t" * 5000, "other": "dropped"},
    }
    kept = whitelist_metadata(item)
    assert len(kept["@odata.type"]) == 128
    assert len(kept["platforms"]) == MAX_STRING
    assert len(kept["roleScopeTagIds"]) == 50
    assert all(len(v) <= 64 for v in kept["roleScopeTagIds"])
    assert kept["templateReference"] == {"templateId": "t" * MAX_STRING}


def test_wrong_types_and_nulls_are_dropped() -> None:
    item = {"version": {"nested": 1}, "isBuiltIn": "yes", "priority": 2**60, "state": None}
    assert whitelist_metadata(item) == {}


def test_display_name_prefers_the_types_name_field() -> None:
    assert display_name_of({"name": "Catalog", "displayName": "x"}, "name") == "Catalog"
    assert display_name_of({"displayName": "Config"}) == "Config"
    assert display_name_of({"name": "fallback"}) == "fallback"
    assert display_name_of({"displayName": None}) is None
    assert len(display_name_of({"displayName": "é" * 5000}) or "") == MAX_DISPLAY_NAME


graph_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda c: st.lists(c, max_size=5) | st.dictionaries(st.text(max_size=10), c, max_size=5),
    max_leaves=15,
)
graph_items = st.dictionaries(
    st.sampled_from([*WHITELIST, "id", "displayName", "secret", "omaSettings"]) | st.text(),
    graph_values,
    max_size=12,
)


@given(graph_items)
def test_whitelist_never_raises_and_keeps_only_listed_keys(item: dict[str, Any]) -> None:
    kept = whitelist_metadata(item)
    assert set(kept) <= set(WHITELIST)
    for value in kept.values():
        assert value is not None
