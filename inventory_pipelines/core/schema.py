"""SQLAlchemy table objects for queries. The DDL lives in `sql/` migrations, not here."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Dialect,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)
from sqlalchemy.dialects import sqlite
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.types import TypeDecorator


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on both dialects (SQLite keeps one fixed text format)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; inventory stores timezone-aware UTC only")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _sqlite_processors() -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """UtcDateTime's bind and result processing as SQLAlchemy does it on SQLite, on top of its
    own `sqlite.DATETIME` text format."""
    dialect = sqlite.dialect()
    on_sqlite = UtcDateTime().dialect_impl(dialect)
    to_text = on_sqlite.bind_processor(dialect)
    from_text = on_sqlite.result_processor(dialect, None)
    assert to_text is not None and from_text is not None
    return to_text, from_text


_to_sqlite_text, _from_sqlite_text = _sqlite_processors()


def sqlite_timestamp(value: datetime) -> str:
    """`value` in the text form UtcDateTime stores on SQLite (`2026-03-01 12:00:00.000000`,
    UTC, microseconds always written), for SQL that binds timestamps itself.

    SQLite compares these texts as strings: the missing query's `last_seen_at < started_at`
    is right only because every writer produces exactly this fixed-width form, so raw SQL
    takes it from SQLAlchemy's own type instead of spelling the format a second time.
    """
    text: str = _to_sqlite_text(value)
    return text


def from_sqlite_timestamp(text: str) -> datetime:
    """A timestamp SQLite returned as text (any precision `fromisoformat` reads), aware UTC."""
    value: datetime = _from_sqlite_text(text)
    return value


Json: Any = JSON().with_variant(JSONB(), "postgresql")
Id: Any = BigInteger().with_variant(Integer(), "sqlite")

metadata = MetaData()

tenants = Table(
    "tenants",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("display_name", Text, nullable=False),
    Column("active", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
    Column("tenant_key", Text, nullable=False, unique=True),
)

sync_runs = Table(
    "inventory_sync_runs",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Text, nullable=False),
    Column("selection_name", Text, nullable=False),
    Column("selection_hash", String(64), nullable=False),
    Column("selection_payload", Json, nullable=False),
    Column("status", Text, nullable=False),
    Column("had_errors", Boolean, nullable=False),
    Column("started_at", UtcDateTime, nullable=False),
    Column("finished_at", UtcDateTime),
    Column("heartbeat_at", UtcDateTime, nullable=False),
    Column("items_observed", Integer, nullable=False),
    Column("items_inserted", Integer, nullable=False),
    Column("items_updated", Integer, nullable=False),
    Column("error_count", Integer, nullable=False),
    Column("policy_type_counts", Json, nullable=False),
    Column("policy_type_outcomes", Json, nullable=False),
    Column("error_codes", Json, nullable=False),
    Column("error_context", Json, nullable=False),
    Column("correlation_id", Text),
)

items = Table(
    "inventory_items",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Text, nullable=False),
    Column("policy_type", Text, nullable=False),
    Column("external_id", Text, nullable=False),
    Column("display_name", Text),
    Column("meta_jsonb", Json, nullable=False),
    Column("first_seen_at", UtcDateTime, nullable=False),
    Column("first_seen_run_id", Id, nullable=False),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("last_seen_run_id", Id, nullable=False),
    Column("last_changed_at", UtcDateTime, nullable=False),
    Column("last_changed_run_id", Id, nullable=False),
    Column("content_hash", LargeBinary),
)

missing = Table(
    "inventory_missing",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("selection_hash", String(64), primary_key=True),
    Column("item_id", Id, primary_key=True),
    Column("policy_type", Text, nullable=False),
    Column("external_id", Text, nullable=False),
    Column("display_name", Text),
    Column("last_seen_at", UtcDateTime, nullable=False),
    Column("reason", Text, nullable=False),
    Column("confidence", Text, nullable=False),
    Column("baseline_run_id", Id, nullable=False),
    Column("computed_at", UtcDateTime, nullable=False),
)

coverage = Table(
    "inventory_coverage",
    metadata,
    Column("tenant_id", Text, primary_key=True),
    Column("tenant_key", Text, nullable=False),
    Column("policy_type", Text, primary_key=True),
    Column("last_complete_at", UtcDateTime),
    Column("last_complete_run_id", Id),
    Column("item_count", Integer),
    Column("latest_outcome", Text),
    Column("latest_attempt_at", UtcDateTime),
    Column("latest_run_id", Id),
    Column("age_seconds", Id),
    Column("computed_at", UtcDateTime, nullable=False),
)

changes = Table(
    "inventory_changes",
    metadata,
    Column("id", Id, primary_key=True, autoincrement=True),
    Column("tenant_id", Text, nullable=False),
    Column("policy_type", Text, nullable=False),
    Column("external_id", Text, nullable=False),
    Column("item_id", Id, nullable=False),
    Column("event", Text, nullable=False),
    Column("sync_run_id", Id, nullable=False),
    Column("selection_hash", String(64)),
    Column("reason", Text),
    Column("confidence", Text),
    Column("occurred_at", UtcDateTime, nullable=False),
)

INVENTORY_TABLES = (
    "tenants",
    "inventory_items",
    "inventory_sync_runs",
    "inventory_missing",
    "inventory_coverage",
    "inventory_changes",
)
