"""The item upsert, set-based on each dialect, and the SQL it runs.

PostgreSQL: the batch is bulk-loaded with COPY into a session-local staging table (not
WAL-logged) and merged by one `INSERT … SELECT … ON CONFLICT DO UPDATE`, which also returns
the inserted/updated counts; rows are never sent one by one. Unchanged items only move
`last_seen_at`/`last_seen_run_id`, which sit side by side so PostgreSQL logs an in-place (HOT)
update as just those bytes.

Runs of different selections of one tenant may overlap, so a run that started earlier can
write later. `last_seen_*` therefore only move forward: a row whose last sighting is newer
than this batch's is left as it is (its name and metadata are the newer view too).
Otherwise the later run's items would fall below its own start and look missing to it.

SQLite: one `executemany` of the same upsert, preceded by one lookup of the batch's known
rows to tell inserted from updated from skipped.
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from sqlalchemy import Connection

if TYPE_CHECKING:
    from inventory_pipelines.core.store import ObservedItem

STAGE_TABLE = "inventory_items_stage"
# How SQLAlchemy's DateTime (and so UtcDateTime) stores timestamps as text on SQLite.
SQLITE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"

PG_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (
    external_id   TEXT NOT NULL,
    display_name  TEXT,
    meta_jsonb    JSONB NOT NULL
) ON COMMIT DELETE ROWS
"""

PG_COPY_STAGE = f"COPY {STAGE_TABLE} (external_id, display_name, meta_jsonb) FROM STDIN"

# Writing back an identical name and metadata costs nothing extra in WAL (the update record
# holds only the bytes that differ), so only last_changed_* need a condition. The WHERE skips
# a row already seen by a newer sighting ((time, run id), so ties have one order too): no
# row version, no WAL, and the row drops out of RETURNING.
_UPDATE_ON_CONFLICT = """
ON CONFLICT (tenant_id, policy_type, external_id) DO UPDATE SET
    last_seen_at = excluded.last_seen_at,
    last_seen_run_id = excluded.last_seen_run_id,
    display_name = excluded.display_name,
    meta_jsonb = excluded.meta_jsonb,
    last_changed_at = CASE WHEN {unchanged}
                           THEN i.last_changed_at ELSE excluded.last_changed_at END,
    last_changed_run_id = CASE WHEN {unchanged}
                               THEN i.last_changed_run_id ELSE excluded.last_changed_run_id END
WHERE i.tenant_id = excluded.tenant_id
  AND (i.last_seen_at, i.last_seen_run_id) <= (excluded.last_seen_at, excluded.last_seen_run_id)
"""
_PG_UNCHANGED = (
    "i.display_name IS NOT DISTINCT FROM excluded.display_name "
    "AND i.meta_jsonb = excluded.meta_jsonb"
)
_SQLITE_UNCHANGED = "i.display_name IS excluded.display_name AND i.meta_jsonb = excluded.meta_jsonb"

_ITEM_COLUMNS = """
    tenant_id, policy_type, external_id, display_name, meta_jsonb,
    first_seen_at, first_seen_run_id, last_seen_at, last_seen_run_id,
    last_changed_at, last_changed_run_id
"""

PG_MERGE_STAGE = f"""
WITH merged AS (
    INSERT INTO inventory_items AS i ({_ITEM_COLUMNS})
    SELECT %(tenant_id)s, %(policy_type)s, s.external_id, s.display_name, s.meta_jsonb,
           %(seen_at)s, %(run_id)s, %(seen_at)s, %(run_id)s, %(seen_at)s, %(run_id)s
    FROM {STAGE_TABLE} s
    {_UPDATE_ON_CONFLICT.format(unchanged=_PG_UNCHANGED)}
    RETURNING i.first_seen_run_id, i.last_changed_run_id
)
SELECT count(*) FILTER (WHERE first_seen_run_id = %(run_id)s),
       count(*) FILTER (WHERE first_seen_run_id <> %(run_id)s
                          AND last_changed_run_id = %(run_id)s)
FROM merged
"""

SQLITE_UPSERT = f"""
INSERT INTO inventory_items AS i ({_ITEM_COLUMNS})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
{_UPDATE_ON_CONFLICT.format(unchanged=_SQLITE_UNCHANGED)}
"""

SQLITE_KNOWN_ROWS = """
SELECT external_id, display_name, meta_jsonb, first_seen_run_id, last_seen_at, last_seen_run_id
FROM inventory_items
WHERE tenant_id = ? AND policy_type = ? AND external_id IN ({placeholders})
"""
_SQLITE_MAX_IN = 500

# COPY text format: backslash, tab, newline and carriage return are escaped; NUL cannot be
# stored in PostgreSQL text at all.
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\x00": ""})


_NEEDS_ESCAPE = re.compile(r"[\\\t\n\r\x00]").search


def _copy_field(value: str | None) -> str:
    if value is None:
        return "\\N"
    return value.translate(_COPY_ESCAPES) if _NEEDS_ESCAPE(value) else value


def upsert_postgresql(
    conn: Connection,
    tenant_id: str,
    policy_type: str,
    run_id: int,
    seen_at: datetime,
    batch: Sequence[ObservedItem],
) -> tuple[int, int, int]:
    """(inserted, updated, observed) after COPY + merge, inside the caller's transaction.

    Rows skipped for a newer sighting are not in RETURNING, so `observed` is the batch size.
    """
    buffer = io.StringIO()
    write = buffer.write
    for item in batch:
        write(
            f"{_copy_field(item.external_id)}\t{_copy_field(item.display_name)}\t"
            f"{_copy_field(item.meta_json)}\n"
        )
    buffer.seek(0)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute(PG_CREATE_STAGE)
        cursor.copy_expert(PG_COPY_STAGE, buffer)
        cursor.execute(
            PG_MERGE_STAGE,
            {
                "tenant_id": tenant_id,
                "policy_type": policy_type,
                "run_id": run_id,
                "seen_at": seen_at,
            },
        )
        inserted, updated = cursor.fetchone()
    finally:
        cursor.close()
    return int(inserted), int(updated), len(batch)


class _KnownRow(NamedTuple):
    """A stored row as the SQLite lookup reads it (timestamps in their stored text form)."""

    display_name: str | None
    meta_json: str
    first_seen_run_id: int
    last_seen_at: str
    last_seen_run_id: int


def _sqlite_known_rows(
    cursor: Any, tenant_id: str, policy_type: str, batch: Sequence[ObservedItem]
) -> dict[str, _KnownRow]:
    """The batch's already stored rows, looked up in chunks below SQLite's variable limit."""
    known: dict[str, _KnownRow] = {}
    ids = [item.external_id for item in batch]
    for start in range(0, len(ids), _SQLITE_MAX_IN):
        chunk = ids[start : start + _SQLITE_MAX_IN]
        sql = SQLITE_KNOWN_ROWS.format(placeholders=",".join("?" * len(chunk)))
        for external_id, *row in cursor.execute(sql, [tenant_id, policy_type, *chunk]):
            known[external_id] = _KnownRow(*row)
    return known


def _sqlite_counts(
    batch: Sequence[ObservedItem], known: Mapping[str, _KnownRow], stamp: str, run_id: int
) -> tuple[int, int]:
    """(inserted, updated) by the same rules as PostgreSQL's RETURNING: a row skipped for a
    newer sighting is unchanged, one first seen by this run is inserted."""
    inserted = updated = 0
    for item in batch:
        before = known.get(item.external_id)
        if before is None:
            inserted += 1
        elif (before.last_seen_at, before.last_seen_run_id) > (stamp, run_id):
            continue
        elif before.first_seen_run_id == run_id:
            inserted += 1
        elif (before.display_name, before.meta_json) != (item.display_name, item.meta_json):
            updated += 1
    return inserted, updated


def upsert_sqlite(
    conn: Connection,
    tenant_id: str,
    policy_type: str,
    run_id: int,
    seen_at: datetime,
    batch: Sequence[ObservedItem],
) -> tuple[int, int, int]:
    """(inserted, updated, observed) via one lookup and one executemany."""
    # The text format UtcDateTime stores on SQLite, so comparisons stay correct.
    stamp = seen_at.astimezone(UTC).strftime(SQLITE_TIMESTAMP_FORMAT)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        known = _sqlite_known_rows(cursor, tenant_id, policy_type, batch)
        cursor.executemany(
            SQLITE_UPSERT,
            [
                (
                    tenant_id,
                    policy_type,
                    item.external_id,
                    item.display_name,
                    item.meta_json,
                    stamp,
                    run_id,
                    stamp,
                    run_id,
                    stamp,
                    run_id,
                )
                for item in batch
            ],
        )
    finally:
        cursor.close()
    inserted, updated = _sqlite_counts(batch, known, stamp, run_id)
    return inserted, updated, len(batch)
