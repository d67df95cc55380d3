"""Test databases on both dialects: a fresh SQLite file per test, one migrated PostgreSQL
database per test session (per xdist worker) that is truncated between tests."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.migrations import upgrade

ADMIN_URL_SETTING = "INVENTORY_TEST_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
TRUNCATE = (
    "TRUNCATE inventory_changes, inventory_coverage, inventory_missing, inventory_items, "
    "inventory_sync_runs, tenants "
    "RESTART IDENTITY CASCADE"
)


def admin_url() -> str:
    return os.environ.get(ADMIN_URL_SETTING, DEFAULT_ADMIN_URL)


def postgres_problem() -> str | None:
    """None when the PostgreSQL test server answers, else why not."""
    try:
        engine = create_engine(admin_url(), connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # any failure means: not usable for tests
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


def create_database(prefix: str) -> str:
    """Create an empty PostgreSQL database and return its URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url()).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str) -> None:
    name = make_url(url).database
    admin = create_engine(admin_url(), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """One migrated PostgreSQL database for this session (or xdist worker)."""
    url = create_database("inventory_test")
    engine = create_inventory_engine(url)
    upgrade(engine)
    engine.dispose()
    yield url
    drop_database(url)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A migrated, empty inventory database URL on each dialect."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'inventory.db'}"
        engine = create_inventory_engine(url)
        upgrade(engine)
        engine.dispose()
        return url
    url = str(request.getfixturevalue("postgres_url"))
    engine = create_inventory_engine(url)
    with engine.begin() as conn:
        conn.execute(text(TRUNCATE))
    engine.dispose()
    return url


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    engine = create_inventory_engine(database_url)
    yield engine
    engine.dispose()
