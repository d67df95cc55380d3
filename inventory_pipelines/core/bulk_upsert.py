"""The item upsert, set-based on each dialect, and the SQL it runs.

PostgreSQL: the batch is bulk-loaded with COPY into a session-local staging table (not
WAL-logged) and merged by one `INSERT … SELECT … ON CONFLICT DO UPDATE`, which also returns
the inserted/updated counts; rows are never sent one by one. Unchanged items only move
`last_seen_at`/`last_seen_run_id`, which sit side by side so PostgreSQL logs an in-place (HOT)
update as just those bytes.

SQLite: one `executemany` of the same upsert, preceded by one lookup of the batch's known
content hashes to tell inserted from updated.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlalchemy import Connection

if TYPE_CHECKING:
    from inventory_pipelines.core.store import ObservedItem

STAGE_TABLE = "inventory_items_stage"

PG_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (
    external_id   TEXT NOT NULL,
    display_name  TEXT,
    meta_jsonb    JSONB NOT NULL
) ON COMMIT DELETE ROWS
"""

PG_COPY_STAGE = f"COPY {STAGE_TABLE} (external_id, display_name, meta_jsonb) FROM STDIN"

# Writing back an identical name and metadata costs nothing extra in WAL (the update record
# holds only the bytes that differ), so only last_changed_* need a condition.
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
                          AND last_changed_run_id = %(run_id)s),
       count(*)
FROM merged
"""

SQLITE_UPSERT = f"""
INSERT INTO inventory_items AS i ({_ITEM_COLUMNS})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
{_UPDATE_ON_CONFLICT.format(unchanged=_SQLITE_UNCHANGED)}
"""

SQLITE_KNOWN_HASHES = """
SELECT external_id, display_name, meta_jsonb, first_seen_run_id FROM inventory_items
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
    """(inserted, updated, observed) after COPY + merge, inside the caller's transaction."""
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
        inserted, updated, observed = cursor.fetchone()
    finally:
        cursor.close()
    return int(inserted), int(updated), int(observed)


def upsert_sqlite(
    conn: Connection,
    tenant_id: str,
    policy_type: str,
    run_id: int,
    seen_at: datetime,
    batch: Sequence[ObservedItem],
) -> tuple[int, int, int]:
    """(inserted, updated, observed) via one lookup and one executemany."""
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        known: dict[str, tuple[str | None, str, int]] = {}
        ids = [item.external_id for item in batch]
        for start in range(0, len(ids), _SQLITE_MAX_IN):
            chunk = ids[start : start + _SQLITE_MAX_IN]
            sql = SQLITE_KNOWN_HASHES.format(placeholders=",".join("?" * len(chunk)))
            for external_id, name, meta_json, first_run in cursor.execute(
                sql, [tenant_id, policy_type, *chunk]
            ):
                known[external_id] = (name, meta_json, first_run)
        # The text format UtcDateTime stores on SQLite, so comparisons stay correct.
        stamp = seen_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
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
    # Same rule as PostgreSQL: an item first seen by this run counts as inserted.
    inserted = updated = 0
    for item in batch:
        before = known.get(item.external_id)
        if before is None or before[2] == run_id:
            inserted += 1
        elif (before[0], before[1]) != (item.display_name, item.meta_json):
            updated += 1
    return inserted, updated, len(batch)
