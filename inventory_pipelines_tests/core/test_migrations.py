import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, inspect, select, text

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.errors import InventoryError
from inventory_pipelines.core.migrations import (
    MIGRATIONS_TABLE,
    available_migrations,
    split_statements,
    sql_root,
    upgrade,
)
from inventory_pipelines.core.schema import INVENTORY_TABLES, metadata, tenants
from inventory_pipelines.core.tenant_keys import fallback_key, slugify
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines_tests.databases import create_database, drop_database


def logical_schema(engine: Engine) -> dict[str, object]:
    """Columns with nullability, primary keys, unique constraints and indexes per table."""
    inspector = inspect(engine)
    schema: dict[str, object] = {}
    for table in INVENTORY_TABLES:
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
        # PostgreSQL also lists the index behind each unique constraint; SQLite does not.
        indexes = {
            (i["name"], tuple(i["column_names"]), bool(i["unique"]))
            for i in inspector.get_indexes(table)
            if not i.get("duplicates_constraint")
        }
        pk = tuple(inspector.get_pk_constraint(table)["constrained_columns"])
        schema[table] = {
            # SQLite reports INTEGER PRIMARY KEY columns as nullable; they are not.
            "columns": {
                c["name"]: c["nullable"] and c["name"] not in pk
                for c in inspector.get_columns(table)
            },
            "pk": pk,
            "uniques": uniques,
            "indexes": indexes,
            "fks": {
                (tuple(f["constrained_columns"]), f["referred_table"])
                for f in inspector.get_foreign_keys(table)
            },
        }
    return schema


def test_both_dialects_have_the_same_migrations() -> None:
    sqlite = [(m.version, m.name) for m in available_migrations("sqlite")]
    postgres = [(m.version, m.name) for m in available_migrations("postgresql")]
    assert sqlite == postgres and sqlite


def test_upgrade_is_idempotent(engine: Engine) -> None:
    assert upgrade(engine) == []  # the fixture already migrated
    with engine.connect() as conn:
        versions = conn.execute(text(f"SELECT version FROM {MIGRATIONS_TABLE}")).scalars().all()
    assert sorted(versions) == [m.version for m in available_migrations(engine.dialect.name)]


def test_schema_matches_the_query_tables(engine: Engine) -> None:
    schema = logical_schema(engine)
    for table in INVENTORY_TABLES:
        declared = set(metadata.tables[table].columns.keys())
        assert set(schema[table]["columns"]) == declared, table  # type: ignore[index]


@pytest.mark.postgres
def test_same_logical_schema_on_both_dialects(postgres_url: str, tmp_path: Path) -> None:
    sqlite_engine = create_inventory_engine(f"sqlite:///{tmp_path / 'schema.db'}")
    upgrade(sqlite_engine)
    pg_engine = create_inventory_engine(postgres_url)
    assert logical_schema(sqlite_engine) == logical_schema(pg_engine)
    with pg_engine.connect() as conn:
        meta_type = conn.execute(
            text(
                "SELECT data_type FROM information_schema.columns "
                "WHERE table_name = 'inventory_items' AND column_name = 'meta_jsonb'"
            )
        ).scalar_one()
    assert meta_type == "jsonb"


def test_identity_is_unique_per_tenant_type_and_external_id(engine: Engine) -> None:
    schema = logical_schema(engine)
    assert ("tenant_id", "policy_type", "external_id") in schema["inventory_items"]["uniques"]  # type: ignore[index]


def test_an_edited_applied_migration_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "sql"
    (root / "sqlite").mkdir(parents=True)
    original = sql_root() / "sqlite" / "0001_inventory_core.sql"
    copy = root / "sqlite" / "0001_inventory_core.sql"
    copy.write_text(original.read_text())
    engine = create_inventory_engine(f"sqlite:///{tmp_path / 'm.db'}")
    assert len(upgrade(engine, root)) == 1
    copy.write_text(original.read_text() + "\n-- edited\n")
    with pytest.raises(InventoryError, match="changed after it was applied"):
        upgrade(engine, root)


def test_a_failing_migration_leaves_nothing_behind(tmp_path: Path) -> None:
    root = tmp_path / "sql"
    (root / "sqlite").mkdir(parents=True)
    (root / "sqlite" / "0001_broken.sql").write_text(
        "CREATE TABLE half_done (id INTEGER);\nTHIS IS NOT SQL;\n"
    )
    engine = create_inventory_engine(f"sqlite:///{tmp_path / 'b.db'}")
    with pytest.raises(Exception, match="syntax error"):
        upgrade(engine, root)
    assert "half_done" not in inspect(engine).get_table_names()


def test_lock_and_baseline_indexes_exist(engine: Engine) -> None:
    indexes = logical_schema(engine)["inventory_sync_runs"]["indexes"]  # type: ignore[index]
    assert ("inventory_sync_runs_one_running", ("tenant_id", "selection_hash"), True) in indexes
    assert (
        "inventory_sync_runs_by_selection",
        ("tenant_id", "selection_hash", "started_at"),
        False,
    ) in indexes


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A database with no schema at all, to migrate step by step."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'steps.db'}"
        return
    url = create_database("inventory_migration_test")
    yield url
    drop_database(url)


def migrations_up_to(dialect: str, version: int, tmp_path: Path) -> Path:
    root = tmp_path / "sql"
    (root / dialect).mkdir(parents=True)
    for migration in available_migrations(dialect):
        if migration.version <= version:
            shutil.copy(migration.path, root / dialect / migration.path.name)
    return root


BEFORE_KEYS = [
    # (tenant id, display name, registered on)
    ("aaaaaaaa-0000-4000-8000-000000000001", "Contoso Ltd.", 1),
    ("bbbbbbbb-0000-4000-8000-000000000002", "contoso  LTD", 2),
    ("cccccccc-0000-4000-8000-000000000003", "Café Müller GmbH", 3),
    ("dddddddd-0000-4000-8000-000000000004", "日本", 4),
    ("eeeeeeee-0000-4000-8000-000000000005", "Straße & Œuvre, Bjørn's Łódź!", 5),
    ("ffffffff-0000-4000-8000-000000000006", "x" * 80, 6),
]


def test_0003_gives_existing_tenants_unique_readable_keys(
    empty_database_url: str, tmp_path: Path
) -> None:
    engine = create_inventory_engine(empty_database_url)
    dialect = engine.dialect.name
    upgrade(engine, migrations_up_to(dialect, 2, tmp_path))
    with engine.begin() as conn:
        for tenant_id, name, day in BEFORE_KEYS:
            conn.execute(
                text(
                    "INSERT INTO tenants (tenant_id, display_name, active, created_at, updated_at)"
                    " VALUES (:id, :name, :active, :at, :at)"
                ),
                {"id": tenant_id, "name": name, "active": True, "at": f"2025-01-0{day} 00:00:00"},
            )
        conn.execute(
            text(
                "INSERT INTO inventory_sync_runs (tenant_id, selection_name, selection_hash,"
                " selection_payload, status, started_at, heartbeat_at)"
                " VALUES (:id, 'all', :hash, '{}', 'success', :at, :at)"
            ),
            {"id": BEFORE_KEYS[0][0], "hash": "0" * 64, "at": "2025-01-01 00:00:00"},
        )

    assert upgrade(engine)[0].version == 3
    with engine.connect() as conn:
        keys = dict(conn.execute(select(tenants.c.tenant_id, tenants.c.tenant_key)).all())
        runs = conn.execute(text("SELECT count(*) FROM inventory_sync_runs")).scalar_one()
    assert keys == {
        "aaaaaaaa-0000-4000-8000-000000000001": "contoso-ltd",
        # The later of two colliding names gets the start of its id.
        "bbbbbbbb-0000-4000-8000-000000000002": "contoso-ltd-bbbbbbbb",
        "cccccccc-0000-4000-8000-000000000003": "cafe-muller-gmbh",
        "dddddddd-0000-4000-8000-000000000004": "tenant-dddddddd",
        "eeeeeeee-0000-4000-8000-000000000005": "strasse-oeuvre-bjorn-s-lodz",
        "ffffffff-0000-4000-8000-000000000006": "x" * 63,
    }
    # The migration derives keys exactly as registration does (where names do not collide).
    for tenant_id, name, _ in BEFORE_KEYS[2:]:
        assert keys[tenant_id] == (slugify(name) or fallback_key(tenant_id))
    assert runs == 1  # the rebuilt SQLite table kept the references to it
    new_tenant, _ = add_tenant(engine, "12345678-0000-4000-8000-000000000007", "Contoso Ltd")
    assert new_tenant.tenant_key == "contoso-ltd-2"
    engine.dispose()


def test_dollar_quoted_bodies_stay_one_statement() -> None:
    sql = (
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n    RETURN NEW;\nEND\n$$;\n"
        "SELECT 1;\n"
    )
    assert split_statements(sql) == [
        "CREATE FUNCTION f() RETURNS trigger LANGUAGE plpgsql AS $$\n"
        "BEGIN\n    RETURN NEW;\nEND\n$$",
        "SELECT 1",
    ]
