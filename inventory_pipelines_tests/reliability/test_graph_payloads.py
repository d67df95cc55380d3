"""Whatever Graph sends inside an item, the whitelist and the upsert keep working and store
only listed keys (property-based, on both databases)."""

from __future__ import annotations

import json
import string
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select

from inventory_pipelines.core.metadata import WHITELIST
from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.store import InventoryStore, RunResult, RunStarted
from inventory_pipelines.graph.fetch import MAX_ID_LENGTH, _item_id
from inventory_pipelines_tests.core.helpers import TENANT_A, register, selection

SEL = selection("compliance", "compliance_policies")

any_text = st.text(max_size=60)  # full unicode incl. NUL and control characters
# Very long strings, built cheaply: one character (possibly NUL or a tab) repeated.
long_text = st.builds(lambda c, n: c * n, st.characters(), st.integers(3000, 12000))
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | any_text,
    lambda c: st.lists(c, max_size=4) | st.dictionaries(any_text, c, max_size=4),
    max_leaves=12,
)
keys = st.sampled_from([*WHITELIST, "displayName", "name", "omaSettings", "secret"]) | any_text
ids = st.text(alphabet=string.ascii_letters + string.digits + "-_", min_size=1, max_size=60)
graph_items = st.builds(
    lambda identifier, body, name: {**body, "id": identifier, "displayName": name},
    ids,
    st.dictionaries(keys, json_values | long_text, max_size=10),
    st.none() | any_text | long_text,
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(batch=st.lists(graph_items, min_size=1, max_size=8, unique_by=lambda i: i["id"]))
def test_random_payloads_upsert_without_error_and_only_listed_keys(
    engine: Engine, batch: list[dict[str, Any]]
) -> None:
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    started = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(started, RunStarted)
    observed = [ObservedItem.from_graph(item) for item in batch]
    counts = store.upsert_items(
        TENANT_A, started.run_id, "compliance_policies", observed, seen_at=started.started_at
    )
    store.finish_sync_run(TENANT_A, started.run_id, RunResult({"compliance_policies": "complete"}))
    assert counts.observed == len(batch)
    with engine.connect() as conn:
        rows = conn.execute(
            select(
                items_table.c.external_id, items_table.c.meta_jsonb, items_table.c.display_name
            ).where(items_table.c.tenant_id == TENANT_A)
        ).all()
    stored = {external_id: (meta, name) for external_id, meta, name in rows}
    for item in batch:
        meta, name = stored[item["id"]]
        meta = json.loads(meta) if isinstance(meta, str) else meta
        assert set(meta) <= set(WHITELIST)
        assert "\x00" not in json.dumps(meta) and (name is None or "\x00" not in name)
        if isinstance(item.get("displayName"), str):
            assert name is not None and len(name) <= 512


@pytest.mark.parametrize(
    "item, valid",
    [
        ({"id": "3fa85f64-5717-4562-b3fc-2c963f66afa6"}, True),
        ({"id": "0"}, True),
        ({"id": ""}, False),
        ({"id": "   "}, False),
        ({"id": None}, False),
        ({"id": 42}, False),
        ({"id": "a\x00b"}, False),
        ({"id": "x" * (MAX_ID_LENGTH + 1)}, False),
        ({"displayName": "no id"}, False),
        ("not an object", False),
    ],
)
def test_only_usable_ids_identify_items(item: object, valid: bool) -> None:
    assert (_item_id(item) is not None) is valid
