"""Timestamps on SQLite are text, compared as text: the item upsert's raw SQL and SQLAlchemy's
UtcDateTime must write exactly the same form, or the missing query's `last_seen_at <
started_at` silently orders them wrong. Both take the form from SQLAlchemy's own type
(`schema.sqlite_timestamp`); these tests hold the two writers and the comparison together."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import Column, Engine, MetaData, Table, create_engine, insert, select

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.migrations import upgrade
from inventory_pipelines.core.missing import compute_missing, missing_items_for
from inventory_pipelines.core.schema import (
    UtcDateTime,
    from_sqlite_timestamp,
    items,
    sqlite_timestamp,
    sync_runs,
)
from inventory_pipelines.core.store import COMPLETE, InventoryStore, RunResult, RunStarted
from inventory_pipelines_tests.core.helpers import TENANT_A, register, selection
from inventory_pipelines_tests.core.helpers import items as observed

SEL = selection("timestamps", "scope_tags")
US = timedelta(microseconds=1)

INSTANTS = [
    datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC),  # no fraction: still written as .000000
    datetime(2026, 3, 1, 12, 0, 0, 1, tzinfo=UTC),
    datetime(2026, 3, 1, 12, 0, 0, 999_999, tzinfo=UTC),
    datetime(2026, 3, 1, 13, 0, 1, 500_000, tzinfo=timezone(timedelta(hours=1))),  # not UTC
    datetime(999, 12, 31, 23, 59, 59, tzinfo=UTC),  # a three-digit year is padded too
]

aware_datetimes = st.datetimes(
    min_value=datetime(1, 1, 2),
    max_value=datetime(9999, 12, 30),
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    ),
)


@pytest.fixture(scope="module")
def orm_column() -> Iterator[tuple[Engine, Table]]:
    """A table with one UtcDateTime column, written the way every ORM insert writes one."""
    engine = create_engine("sqlite://")
    table = Table("stamps", MetaData(), Column("at", UtcDateTime))
    table.create(engine)
    yield engine, table
    engine.dispose()


def orm_text(orm_column: tuple[Engine, Table], value: datetime) -> str:
    engine, table = orm_column
    with engine.begin() as conn:
        conn.execute(table.delete())
        conn.execute(insert(table).values(at=value))
        text: str = conn.exec_driver_sql("SELECT at FROM stamps").scalar_one()
        assert conn.execute(select(table.c.at)).scalar_one() == value  # and it reads back
    return text


@settings(max_examples=200, deadline=None)
@given(value=aware_datetimes)
def test_the_raw_form_is_what_sqlalchemy_writes(
    orm_column: tuple[Engine, Table], value: datetime
) -> None:
    text = sqlite_timestamp(value)
    assert text == orm_text(orm_column, value)
    assert from_sqlite_timestamp(text) == value


@given(a=aware_datetimes, b=aware_datetimes)
def test_text_order_is_time_order(a: datetime, b: datetime) -> None:
    assert (sqlite_timestamp(a) < sqlite_timestamp(b)) == (a < b)
    assert (sqlite_timestamp(a) == sqlite_timestamp(b)) == (a == b)


def test_a_naive_datetime_is_refused_as_the_orm_refuses_it() -> None:
    with pytest.raises(ValueError, match="naive"):
        sqlite_timestamp(datetime(2026, 3, 1, 12, 0))


def test_sqlite_clock_readings_parse_at_millisecond_precision() -> None:
    """`database_now` reads SQLite's `strftime('%Y-%m-%d %H:%M:%f')`: three fraction digits."""
    assert from_sqlite_timestamp("2026-03-01 12:00:00.123") == datetime(
        2026, 3, 1, 12, 0, 0, 123_000, tzinfo=UTC
    )


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[InventoryStore]:
    engine = create_inventory_engine(f"sqlite:///{tmp_path / 'inventory.db'}")
    upgrade(engine)
    register(engine, TENANT_A)
    yield InventoryStore(engine)
    engine.dispose()


@pytest.mark.parametrize("instant", INSTANTS, ids=str)
def test_bulk_upsert_and_the_orm_store_the_same_text_and_it_round_trips(
    sqlite_store: InventoryStore, instant: datetime
) -> None:
    sqlite_store.clock = lambda: instant
    started = sqlite_store.start_sync_run(TENANT_A, SEL)  # started_at: written by the ORM
    assert isinstance(started, RunStarted)
    sqlite_store.upsert_items(  # last_seen_at: written by bulk_upsert's raw SQL
        TENANT_A, started.run_id, "scope_tags", observed("a"), seen_at=started.started_at
    )
    with sqlite_store.engine.connect() as conn:
        raw_seen = conn.exec_driver_sql("SELECT last_seen_at FROM inventory_items").scalar_one()
        raw_started = conn.exec_driver_sql(
            "SELECT started_at FROM inventory_sync_runs"
        ).scalar_one()
        seen = conn.execute(select(items.c.last_seen_at)).scalar_one()
        run_start = conn.execute(select(sync_runs.c.started_at)).scalar_one()
    assert raw_seen == raw_started == sqlite_timestamp(instant)
    assert seen == run_start == instant  # microseconds and all


def _sync_at(store: InventoryStore, when: datetime, *ids: str) -> None:
    store.clock = lambda: when
    started = store.start_sync_run(TENANT_A, SEL)
    assert isinstance(started, RunStarted)
    counts = store.upsert_items(
        TENANT_A, started.run_id, "scope_tags", observed(*ids), seen_at=started.started_at
    )
    result = RunResult()
    result.counts.add(counts)
    result.policy_type_outcomes["scope_tags"] = COMPLETE
    store.finish_sync_run(TENANT_A, started.run_id, result)


@pytest.mark.parametrize(
    "first",
    INSTANTS[:3],  # the last one's next microsecond is the next second
    ids=str,
)
def test_the_missing_query_orders_raw_and_orm_times_to_the_microsecond(
    engine: Engine, first: datetime
) -> None:
    """Item `a` last seen (raw SQL) one microsecond before the baseline started (ORM): missing.
    Item `b`, seen by the baseline itself at that very instant: not missing. Both dialects."""
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    _sync_at(store, first, "a", "b")
    _sync_at(store, first + US, "b")
    result = compute_missing(engine, TENANT_A, SEL)
    assert result.missing_count == 1
    assert [row["external_id"] for row in missing_items_for(engine, TENANT_A, SEL.hash)] == ["a"]
    with engine.connect() as conn:
        seen = dict(conn.execute(select(items.c.external_id, items.c.last_seen_at)).all())
    assert seen == {"a": first, "b": first + US}
