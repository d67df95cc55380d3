"""A sync touches only inventory tables; errors are stored redacted."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, inspect, select, text

from inventory_pipelines.core.errors import ErrorCode
from inventory_pipelines.core.migrations import MIGRATIONS_TABLE
from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.core.store import InventoryStore, RunResult, RunStarted
from inventory_pipelines_tests.core.helpers import TENANT_A, items, register, selection, sync

SEL = selection("compliance", "compliance_policies", "scope_tags")
SYNC_TABLES = {"inventory_items", "inventory_sync_runs", "inventory_missing", "inventory_changes"}


def table_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        return {
            name: conn.execute(text(f'SELECT count(*) FROM "{name}"')).scalar_one()
            for name in inspect(engine).get_table_names()
        }


def test_sync_touches_only_inventory_tables(engine: Engine) -> None:
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    tables_before = set(inspect(engine).get_table_names())
    counts_before = table_counts(engine)
    with engine.connect() as conn:
        migrations_before = conn.execute(text(f"SELECT * FROM {MIGRATIONS_TABLE}")).all()
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a", "b"), "scope_tags": items("t")})
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a")})
    compute_missing(engine, TENANT_A, SEL)
    tables_after = set(inspect(engine).get_table_names())
    counts_after = table_counts(engine)
    assert tables_after == tables_before
    assert not {t for t in tables_after if "snapshot" in t or "backup" in t}
    changed = {t for t in tables_after if counts_after[t] != counts_before[t]}
    assert changed == SYNC_TABLES
    with engine.connect() as conn:
        assert conn.execute(text(f"SELECT * FROM {MIGRATIONS_TABLE}")).all() == migrations_before


SCRIPT_BODY = "V3JpdGUtSG9zdCAiaW52ZW50b3J5IGlzIG5vdCBhIGJhY2t1cCI="
SETTING_VALUE = "only-in-the-graph-object-7f3a"


def test_content_is_hashed_never_stored(engine: Engine) -> None:
    """The change feed keeps a 32-byte hash per item; the object's content (script bodies,
    setting values, unlisted keys) reaches no table, and every table the sync writes holds
    only the columns it held before plus the hash."""
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    graph_object = {
        "@odata.type": "#microsoft.graph.deviceManagementScript",
        "id": "script-1",
        "displayName": "Set wallpaper",
        "scriptContent": SCRIPT_BODY,
        "settings": [{"settingInstance": {"simpleSettingValue": {"value": SETTING_VALUE}}}],
        "version": 3,
    }
    edited = {**graph_object, "scriptContent": SCRIPT_BODY[::-1]}
    for observed in (graph_object, edited):
        sync(store, TENANT_A, SEL, {"compliance_policies": [ObservedItem.from_graph(observed)]})
    with engine.connect() as conn:
        dump = {
            name: repr(conn.execute(text(f'SELECT * FROM "{name}"')).all())
            for name in inspect(engine).get_table_names()
        }
        hashes = conn.execute(text("SELECT content_hash FROM inventory_items")).scalars().all()
        events = conn.execute(text("SELECT event FROM inventory_changes ORDER BY id")).all()
    for table, rows in dump.items():
        for content in (SCRIPT_BODY, SCRIPT_BODY[::-1], SETTING_VALUE, "scriptContent"):
            assert content not in rows, f"{table} holds Graph content {content!r}"
    assert [len(h) for h in hashes] == [32]
    assert [e for (e,) in events] == ["added", "changed"]  # the edit was seen, not kept
    columns = {c["name"] for c in inspect(engine).get_columns("inventory_changes")}
    assert columns == {
        "id",
        "tenant_id",
        "policy_type",
        "external_id",
        "item_id",
        "event",
        "sync_run_id",
        "selection_hash",
        "reason",
        "confidence",
        "occurred_at",
    }


secret_chars = string.ascii_letters + string.digits + "-_"
# The "Zq9" prefix keeps a drawn secret from being a stretch of what a run row holds anyway
# ("compliance_polic" is in "compliance_policies"): the test looks for it in the whole row.
tokens = st.text(alphabet=secret_chars, min_size=13, max_size=37).map(lambda s: f"Zq9{s}")


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(token=tokens, secret=tokens)
def test_errors_are_persisted_redacted(engine: Engine, token: str, secret: str) -> None:
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    jwt = f"eyJ{token}.{token[::-1]}.{token[:8]}"
    started = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(started, RunStarted)
    result = RunResult({"compliance_policies": "complete", "scope_tags": "unauthorized"})
    result.error_context.append(
        {
            "code": ErrorCode.UNAUTHORIZED.value,
            "message": f"Authorization: Bearer {token}; client_secret={secret}; seen {jwt}",
            "headers": {"Authorization": f"Bearer {jwt}"},
        }
    )
    store.finish_sync_run(TENANT_A, started.run_id, result)
    crashed = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(crashed, RunStarted)
    store.fail_sync_run(TENANT_A, crashed.run_id, ErrorCode.INTERNAL, f"crash with bearer {token}")
    with engine.connect() as conn:
        stored = repr(conn.execute(select(sync_runs)).all())
        runs = conn.execute(select(func.count()).select_from(sync_runs)).scalar_one()
    assert runs >= 2
    assert token not in stored and secret not in stored and jwt not in stored
    assert "[REDACTED]" in stored
