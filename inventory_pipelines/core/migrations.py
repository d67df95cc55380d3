"""Versioned SQL migrations from `sql/<dialect>/NNNN_name.sql`, applied once each and recorded.

Each migration runs in its own transaction together with its record, so a failed migration
leaves nothing half-applied. A changed file that was already applied is refused.

On SQLite, adding a constrained column means rebuilding the table (create, copy, drop,
rename). SQLite's documented procedure for that needs foreign-key enforcement off, which can
only change outside a transaction: migrations run with it off and must leave
`PRAGMA foreign_key_check` clean before they commit.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from inventory_pipelines.core.errors import InventoryError

MIGRATIONS_TABLE = "schema_migrations"
_FILE_PATTERN = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")
_PG_MIGRATION_LOCK = 0x1F0E_7A11  # advisory lock key: serializes concurrent `db upgrade`


def sql_root() -> Path:
    """The repository's `sql/` directory."""
    return Path(__file__).resolve().parents[2] / "sql"


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def available_migrations(dialect: str, root: Path | None = None) -> list[Migration]:
    directory = (root or sql_root()) / dialect
    if not directory.is_dir():
        raise InventoryError(f"no migrations for dialect {dialect!r} in {directory}")
    found = []
    for path in sorted(directory.iterdir()):
        match = _FILE_PATTERN.match(path.name)
        if match:
            found.append(Migration(int(match.group(1)), match.group(2), path))
    return found


def split_statements(sql: str) -> list[str]:
    """Split a migration into statements at semicolons that end a line, except inside a
    `$$`-quoted body (a PostgreSQL function), whose own statements end lines too."""
    lines = [line for line in sql.splitlines() if not line.strip().startswith("--")]
    statements, current = [], []
    in_body = False
    for line in lines:
        current.append(line)
        if line.count("$$") % 2:
            in_body = not in_body
        if not in_body and line.rstrip().endswith(";"):
            statements.append("\n".join(current).strip().rstrip(";"))
            current = []
    tail = "\n".join(current).strip()
    if tail:
        statements.append(tail)
    return [s for s in statements if s]


def _ensure_table(conn: Connection) -> None:
    conn.execute(
        text(
            f"CREATE TABLE IF NOT EXISTS {MIGRATIONS_TABLE} ("
            " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
            " checksum TEXT NOT NULL, applied_at TEXT NOT NULL)"
        )
    )


def applied_versions(conn: Connection) -> dict[int, str]:
    rows = conn.execute(text(f"SELECT version, checksum FROM {MIGRATIONS_TABLE}"))
    return {int(v): str(c) for v, c in rows}


def upgrade(engine: Engine, root: Path | None = None) -> list[Migration]:
    """Apply every pending migration; return those applied (empty when up to date)."""
    migrations = available_migrations(engine.dialect.name, root)
    applied: list[Migration] = []
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
        _ensure_table(conn)
    for migration in migrations:
        with engine.connect() as conn, _sqlite_foreign_keys_off(conn), conn.begin():
            if engine.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            done = applied_versions(conn)
            if migration.version in done:
                if done[migration.version] != migration.checksum:
                    raise InventoryError(
                        f"migration {migration.path.name} changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            for statement in split_statements(migration.sql):
                conn.exec_driver_sql(statement)
            if engine.dialect.name == "sqlite":
                _check_foreign_keys(conn, migration)
            conn.execute(
                text(
                    f"INSERT INTO {MIGRATIONS_TABLE} (version, name, checksum, applied_at)"
                    " VALUES (:v, :n, :c, :a)"
                ),
                {
                    "v": migration.version,
                    "n": migration.name,
                    "c": migration.checksum,
                    "a": datetime.now(UTC).isoformat(),
                },
            )
            applied.append(migration)
    return applied


@contextmanager
def _sqlite_foreign_keys_off(conn: Connection) -> Iterator[None]:
    """SQLite: foreign-key enforcement off for this connection, set before any transaction."""
    if conn.dialect.name != "sqlite":
        yield
        return
    driver = conn.connection.driver_connection
    assert driver is not None
    driver.execute("PRAGMA foreign_keys=OFF")
    try:
        yield
    finally:
        driver.execute("PRAGMA foreign_keys=ON")


def _check_foreign_keys(conn: Connection, migration: Migration) -> None:
    """Refuse to commit a SQLite migration that left a dangling reference behind."""
    violation = conn.exec_driver_sql("PRAGMA foreign_key_check").first()
    if violation is not None:
        raise InventoryError(
            f"migration {migration.path.name} leaves a row of {violation[0]} "
            f"referencing a missing row of {violation[2]}"
        )
