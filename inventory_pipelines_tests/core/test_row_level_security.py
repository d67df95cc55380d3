"""Tenant isolation enforced by PostgreSQL itself: the application role sees one tenant per
transaction, and a statement without a tenant sees and changes nothing."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from inventory_pipelines.core.app_role import grant_app_role
from inventory_pipelines.core.changes import prune_all_tenants, read_changes
from inventory_pipelines.core.coverage import read_coverage, refresh_coverage
from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.errors import ValidationError
from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenancy import tenant_transaction
from inventory_pipelines_tests.core.helpers import (
    TENANT_A,
    TENANT_B,
    items,
    register,
    selection,
    sync,
)
from inventory_pipelines_tests.databases import TRUNCATE

pytestmark = pytest.mark.postgres
SEL = selection("compliance", "compliance_policies")


@pytest.fixture
def owner(postgres_url: str) -> Iterator[Engine]:
    engine = create_inventory_engine(postgres_url)
    with engine.begin() as conn:
        conn.execute(text(TRUNCATE))
    yield engine
    engine.dispose()


@pytest.fixture
def app(owner: Engine, postgres_url: str) -> Iterator[Engine]:
    """An engine connected as a fresh least-privilege application role."""
    role = f"inventory_app_{uuid.uuid4().hex[:8]}"
    with owner.begin() as conn:
        conn.exec_driver_sql(f'CREATE ROLE "{role}" LOGIN')
    grant_app_role(owner, role)
    engine = create_inventory_engine(make_url(postgres_url).set(username=role, password=None))
    yield engine
    engine.dispose()
    with owner.begin() as conn:
        conn.exec_driver_sql(f'DROP OWNED BY "{role}"')
        conn.exec_driver_sql(f'DROP ROLE "{role}"')


@pytest.fixture
def populated(owner: Engine, app: Engine) -> InventoryStore:
    register(owner, TENANT_A, TENANT_B)  # the registry is an owner (admin) operation
    store = InventoryStore(app)  # syncs run as the application role, through RLS
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a1", "a2", "shared")})
    sync(store, TENANT_B, SEL, {"compliance_policies": items("b1", "shared")})
    compute_missing(app, TENANT_A, SEL)
    refresh_coverage(app, types=SEL.policy_types)  # one transaction per tenant, through RLS
    return store


TABLES = ("inventory_items", "inventory_sync_runs", "inventory_coverage", "inventory_changes")


def test_syncs_through_the_app_role_work(populated: InventoryStore) -> None:
    assert populated.item_count(TENANT_A) == 3
    assert populated.item_count(TENANT_B) == 2


@pytest.mark.parametrize("table", TABLES)
def test_unscoped_statements_see_and_change_nothing(
    populated: InventoryStore, app: Engine, owner: Engine, table: str
) -> None:
    with app.begin() as conn:  # no tenant set: a deliberately unscoped session
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() == 0
        assert conn.execute(text(f"UPDATE {table} SET tenant_id = tenant_id")).rowcount == 0
        assert conn.execute(text(f"DELETE FROM {table}")).rowcount == 0
    with owner.connect() as conn:  # the superuser test owner still sees everything
        assert conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one() > 0


@pytest.mark.parametrize("table", TABLES)
def test_a_query_without_where_sees_only_its_tenant(
    populated: InventoryStore, app: Engine, table: str
) -> None:
    with tenant_transaction(app, TENANT_A) as conn:
        tenants = set(conn.execute(text(f"SELECT DISTINCT tenant_id FROM {table}")).scalars())
        deleted = conn.execute(text(f"DELETE FROM {table} WHERE tenant_id = :b"), {"b": TENANT_B})
        assert deleted.rowcount == 0
    assert tenants == {TENANT_A}
    assert populated.item_count(TENANT_B) == 2


def test_writing_another_tenants_row_is_refused(populated: InventoryStore, app: Engine) -> None:
    with (
        pytest.raises(DBAPIError, match="row-level security"),
        tenant_transaction(app, TENANT_A) as conn,
    ):
        conn.execute(
            text(
                "INSERT INTO inventory_items (tenant_id, policy_type, external_id, meta_jsonb,"
                " first_seen_at, first_seen_run_id, last_seen_at, last_seen_run_id,"
                " last_changed_at, last_changed_run_id)"
                " SELECT :b, 'compliance_policies', 'evil', '{}', now(), id, now(), id,"
                " now(), id FROM inventory_sync_runs LIMIT 1"
            ),
            {"b": TENANT_B},
        )
    assert populated.item_count(TENANT_B) == 2


def test_coverage_is_refreshed_and_read_per_tenant_through_rls(
    populated: InventoryStore, app: Engine
) -> None:
    rows = read_coverage(app)
    assert sorted((r["tenant_id"], r["item_count"]) for r in rows) == [(TENANT_A, 3), (TENANT_B, 2)]
    with (
        pytest.raises(DBAPIError, match="row-level security"),
        tenant_transaction(app, TENANT_A) as conn,
    ):
        conn.execute(
            text(
                "INSERT INTO inventory_coverage (tenant_id, tenant_key, policy_type, computed_at)"
                " VALUES (:b, 'b', 'scope_tags', now())"
            ),
            {"b": TENANT_B},
        )


def test_the_change_feed_is_written_read_and_pruned_per_tenant_through_rls(
    populated: InventoryStore, app: Engine
) -> None:
    sync(populated, TENANT_A, SEL, {"compliance_policies": items("a1")})  # a2, shared gone
    assert compute_missing(app, TENANT_A, SEL).went_missing == 2  # written as the app role
    assert [r["event"] for r in read_changes(app, TENANT_B)] == ["added", "added"]
    assert {r["tenant_id"] for r in read_changes(app, TENANT_A)} == {TENANT_A}
    with (
        pytest.raises(DBAPIError, match="row-level security"),
        tenant_transaction(app, TENANT_A) as conn,
    ):
        conn.execute(
            text(
                "INSERT INTO inventory_changes (tenant_id, policy_type, external_id, item_id,"
                " event, sync_run_id, occurred_at) VALUES (:b, 'scope_tags', 'x', 1, 'added',"
                " 1, now())"
            ),
            {"b": TENANT_B},
        )
    # Retention runs as the app role too, one tenant per transaction: all pruned.
    pruned = prune_all_tenants(app, retention=timedelta(0), now=datetime.now(UTC) + timedelta(1))
    assert sorted(pruned.values()) == [2, 5]
    assert read_changes(app, TENANT_A) == read_changes(app, TENANT_B) == []


def test_the_app_role_cannot_change_the_registry_or_schema(
    populated: InventoryStore, app: Engine
) -> None:
    with pytest.raises(DBAPIError, match="permission denied"), app.begin() as conn:
        conn.execute(text("UPDATE tenants SET active = false"))
    with pytest.raises(DBAPIError, match=r"must be owner|permission denied"), app.begin() as conn:
        conn.execute(text("ALTER TABLE inventory_items DISABLE ROW LEVEL SECURITY"))


def test_grant_refuses_roles_that_bypass_rls(owner: Engine) -> None:
    with pytest.raises(ValidationError, match="superuser or has BYPASSRLS"):
        grant_app_role(owner, "postgres")
    with pytest.raises(ValidationError, match="does not exist"):
        grant_app_role(owner, "no_such_role_here")
    with pytest.raises(ValidationError, match="identifier"):
        grant_app_role(owner, 'x"; DROP TABLE tenants; --')


def test_sqlite_has_no_app_role(tmp_path: object) -> None:
    engine = create_engine(f"sqlite:///{tmp_path}/x.db")
    with pytest.raises(ValidationError, match="only on PostgreSQL"):
        grant_app_role(engine, "inventory_app")
