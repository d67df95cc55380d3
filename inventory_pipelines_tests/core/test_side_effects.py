"""A sync touches only inventory tables; errors are stored redacted."""

import string

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, func, inspect, select, text

from inventory_pipelines.core.errors import ErrorCode
from inventory_pipelines.core.migrations import MIGRATIONS_TABLE
from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.core.store import InventoryStore, RunResult, RunStarted
from inventory_pipelines_tests.core.helpers import TENANT_A, items, register, selection, sync

SEL = selection("compliance", "compliance_policies", "scope_tags")
SYNC_TABLES = {"inventory_items", "inventory_sync_runs", "inventory_missing"}


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


secret_chars = string.ascii_letters + string.digits + "-_"
tokens = st.text(alphabet=secret_chars, min_size=16, max_size=40)


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
