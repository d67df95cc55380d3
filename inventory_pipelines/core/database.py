"""Engine creation for the inventory database (SQLite file by default, PostgreSQL in production)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

from inventory_pipelines.core.errors import ConfigurationError

DATABASE_URL_SETTING = "INVENTORY_DATABASE_URL"
ADMIN_DATABASE_URL_SETTING = "INVENTORY_ADMIN_DATABASE_URL"
STATE_DIR_SETTING = "INVENTORY_STATE_DIR"
SQLITE_BUSY_TIMEOUT_MS = 30_000


def local_state_dir() -> Path:
    """Where local state lives when nothing else is configured."""
    configured = os.environ.get(STATE_DIR_SETTING)
    if configured:
        return Path(configured)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "inventory_pipelines"


def database_url_from_env() -> str:
    """`INVENTORY_DATABASE_URL`, or a SQLite file under the local state dir."""
    url = os.environ.get(DATABASE_URL_SETTING, "").strip()
    if url:
        return url
    return f"sqlite:///{local_state_dir() / 'inventory.db'}"


def admin_database_url_from_env() -> str:
    """The owner's URL for migrations and admin commands; defaults to the application's."""
    return os.environ.get(ADMIN_DATABASE_URL_SETTING, "").strip() or database_url_from_env()


def create_inventory_engine(url: str, *, create_sqlite_file: bool = True, **kwargs: Any) -> Engine:
    """Create an engine, failing fast with the setting's name when the URL is unusable.

    With `create_sqlite_file=False` a missing SQLite file is an error instead of a new empty
    database (and state directory): only `db upgrade` should bring one into being.
    """
    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigurationError(
            f"{DATABASE_URL_SETTING} is not a valid SQLAlchemy URL; expected e.g. "
            "sqlite:////path/inventory.db or postgresql+psycopg2://user@host:5432/db"
        ) from None
    if parsed.drivername == "postgresql":
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3; the project ships psycopg2.
        parsed = parsed.set(drivername="postgresql+psycopg2")
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        raise ConfigurationError(
            f"{DATABASE_URL_SETTING} uses {backend!r}; only sqlite and postgresql are supported"
        )
    try:
        if backend == "sqlite":
            return _sqlite_engine(parsed, create_file=create_sqlite_file, **kwargs)
        return create_engine(parsed, pool_pre_ping=True, **kwargs)
    except NoSuchModuleError:
        raise ConfigurationError(
            f"{DATABASE_URL_SETTING} names driver {parsed.drivername!r}, which is not installed; "
            "use postgresql+psycopg2://"
        ) from None


def _sqlite_engine(url: URL, *, create_file: bool, **kwargs: Any) -> Engine:
    database = url.database
    if database and database != ":memory:" and "uri" not in url.query:
        path = Path(database)
        if create_file:
            path.parent.mkdir(parents=True, exist_ok=True)
        elif not path.is_file():
            raise ConfigurationError(
                f"inventory database {path} does not exist; create it with "
                f"`inventory-pipelines db upgrade` (or point {DATABASE_URL_SETTING} at one)"
            )
        else:
            # Opened read-write, never created: a file deleted meanwhile stays an error.
            url = url.set(
                database=f"file:{quote(str(path.resolve()))}",
                query={**url.query, "mode": "rw", "uri": "true"},
            )
    engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}, **kwargs)

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy, not pysqlite, open transactions; WAL lets readers run during writes.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        # Take the write lock up front: a deferred transaction that later writes can fail
        # with "database is locked" without ever waiting on the busy timeout.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
