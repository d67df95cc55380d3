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

Change detection rides on the same statement: an item is changed when its content hash
differs from the stored one (a row without a hash yet, stored before the hash existed,
compares name and metadata as before, so getting its first hash is not a change). The
`added`, `changed` and `returned` events of the batch go into `inventory_changes` in the same
transaction (see `core/changes.py` for what each means); an unchanged batch writes none.

SQLite: one `executemany` of the same upsert, preceded by one lookup of the batch's known
rows to tell inserted from updated from skipped, and followed by the events.
"""

from __future__ import annotations

import io
import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple

from sqlalchemy import Connection

from inventory_pipelines.core.changes import (
    ADDED,
    CHANGED,
    RETURNED,
    SQL_INSERT_SYNC_EVENT,
    SQL_REPORTED_MISSING,
)
from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.schema import sqlite_timestamp

STAGE_TABLE = "inventory_items_stage"


class UpsertOutcome(NamedTuple):
    """What one batch did: rows first seen by this run, rows whose content changed, items
    that returned after being reported missing, and the batch size (rows skipped for a
    newer sighting count as observed, unchanged)."""

    inserted: int
    updated: int
    returned: int
    observed: int


PG_CREATE_STAGE = f"""
CREATE TEMP TABLE IF NOT EXISTS {STAGE_TABLE} (
    external_id   TEXT NOT NULL,
    display_name  TEXT,
    meta_jsonb    JSONB NOT NULL,
    content_hash  BYTEA NOT NULL
) ON COMMIT DELETE ROWS
"""

PG_COPY_STAGE = (
    f"COPY {STAGE_TABLE} (external_id, display_name, meta_jsonb, content_hash) FROM STDIN"
)

# Writing back an identical name, metadata and hash costs nothing extra in WAL (the update
# record holds only the bytes that differ), so only last_changed_* need a condition. The WHERE
# skips a row already seen by a newer sighting ((time, run id), so ties have one order too):
# no row version, no WAL, and the row drops out of RETURNING.
_UPDATE_ON_CONFLICT = """
ON CONFLICT (tenant_id, policy_type, external_id) DO UPDATE SET
    last_seen_at = excluded.last_seen_at,
    last_seen_run_id = excluded.last_seen_run_id,
    display_name = excluded.display_name,
    meta_jsonb = excluded.meta_jsonb,
    last_changed_at = CASE WHEN {unchanged}
                           THEN i.last_changed_at ELSE excluded.last_changed_at END,
    last_changed_run_id = CASE WHEN {unchanged}
                               THEN i.last_changed_run_id ELSE excluded.last_changed_run_id END,
    content_hash = excluded.content_hash
WHERE i.tenant_id = excluded.tenant_id
  AND (i.last_seen_at, i.last_seen_run_id) <= (excluded.last_seen_at, excluded.last_seen_run_id)
"""
# Unchanged: the same content hash; a row stored before hashes existed (NULL) compares its
# name and metadata, so receiving its first hash is not a change.
_PG_UNCHANGED = (
    "(i.content_hash = excluded.content_hash OR (i.content_hash IS NULL"
    " AND i.display_name IS NOT DISTINCT FROM excluded.display_name"
    " AND i.meta_jsonb = excluded.meta_jsonb))"
)
_SQLITE_UNCHANGED = (
    "(i.content_hash = excluded.content_hash OR (i.content_hash IS NULL"
    " AND i.display_name IS excluded.display_name AND i.meta_jsonb = excluded.meta_jsonb))"
)

_ITEM_COLUMNS = """
    tenant_id, policy_type, external_id, display_name, meta_jsonb,
    first_seen_at, first_seen_run_id, last_seen_at, last_seen_run_id,
    last_changed_at, last_changed_run_id, content_hash
"""

# The events of the batch are derived from RETURNING: first seen by this run = added; content
# changed by this run = changed; reported missing and unseen since (`reported`, read from the
# statement's snapshot, i.e. before this upsert moved last_seen_at) = returned. An unchanged
# row matches none, so an unchanged re-sync inserts nothing here.
PG_MERGE_STAGE = f"""
WITH reported AS (
    {SQL_REPORTED_MISSING.format(tenant="%(tenant_id)s", policy_type="%(policy_type)s")}
),
merged AS (
    INSERT INTO inventory_items AS i ({_ITEM_COLUMNS})
    SELECT %(tenant_id)s, %(policy_type)s, s.external_id, s.display_name, s.meta_jsonb,
           %(seen_at)s, %(run_id)s, %(seen_at)s, %(run_id)s, %(seen_at)s, %(run_id)s,
           s.content_hash
    FROM {STAGE_TABLE} s
    {_UPDATE_ON_CONFLICT.format(unchanged=_PG_UNCHANGED)}
    RETURNING i.id, i.external_id, i.first_seen_run_id, i.last_changed_run_id
),
events AS (
    {SQL_INSERT_SYNC_EVENT}
    SELECT %(tenant_id)s, %(policy_type)s, x.external_id, x.id, e.event, %(run_id)s, %(seen_at)s
    FROM (
        SELECT m.id, m.external_id, m.first_seen_run_id, m.last_changed_run_id,
               r.item_id IS NOT NULL AS returned
        FROM merged m LEFT JOIN reported r ON r.item_id = m.id
        WHERE m.first_seen_run_id = %(run_id)s OR m.last_changed_run_id = %(run_id)s
           OR r.item_id IS NOT NULL
    ) x
    CROSS JOIN LATERAL (VALUES
        (CASE WHEN x.first_seen_run_id = %(run_id)s THEN '{ADDED}' END),
        (CASE WHEN x.first_seen_run_id <> %(run_id)s AND x.last_changed_run_id = %(run_id)s
              THEN '{CHANGED}' END),
        (CASE WHEN x.returned THEN '{RETURNED}' END)
    ) AS e (event)
    WHERE e.event IS NOT NULL
    ON CONFLICT DO NOTHING
    RETURNING event
)
SELECT count(*) FILTER (WHERE first_seen_run_id = %(run_id)s),
       count(*) FILTER (WHERE first_seen_run_id <> %(run_id)s
                          AND last_changed_run_id = %(run_id)s),
       (SELECT count(*) FROM events WHERE event = '{RETURNED}')
FROM merged
"""

SQLITE_UPSERT = f"""
INSERT INTO inventory_items AS i ({_ITEM_COLUMNS})
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
{_UPDATE_ON_CONFLICT.format(unchanged=_SQLITE_UNCHANGED)}
"""

SQLITE_KNOWN_ROWS = """
SELECT external_id, id, display_name, meta_jsonb, content_hash,
       first_seen_run_id, last_seen_at, last_seen_run_id
FROM inventory_items
WHERE tenant_id = ? AND policy_type = ? AND external_id IN ({placeholders})
"""

SQLITE_NEW_IDS = """
SELECT external_id, id FROM inventory_items
WHERE tenant_id = ? AND policy_type = ? AND external_id IN ({placeholders})
"""

SQLITE_REPORTED = SQL_REPORTED_MISSING.format(tenant="?", policy_type="?")

SQLITE_INSERT_EVENTS = f"""
{SQL_INSERT_SYNC_EVENT}
VALUES (?, ?, ?, ?, ?, ?, ?)
ON CONFLICT DO NOTHING
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
) -> UpsertOutcome:
    """COPY + merge (+ events), inside the caller's transaction.

    Rows skipped for a newer sighting are not in RETURNING, so `observed` is the batch size.
    """
    buffer = io.StringIO()
    write = buffer.write
    for item in batch:
        # bytea in hex input format; COPY's own escaping doubles the backslash.
        write(
            f"{_copy_field(item.external_id)}\t{_copy_field(item.display_name)}\t"
            f"{_copy_field(item.meta_json)}\t\\\\x{item.content_hash.hex()}\n"
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
        inserted, updated, returned = cursor.fetchone()
    finally:
        cursor.close()
    return UpsertOutcome(int(inserted), int(updated), int(returned), len(batch))


class _KnownRow(NamedTuple):
    """A stored row as the SQLite lookup reads it (timestamps in their stored text form)."""

    id: int
    display_name: str | None
    meta_json: str
    content_hash: bytes | None
    first_seen_run_id: int
    last_seen_at: str
    last_seen_run_id: int

    def unchanged(self, item: ObservedItem) -> bool:
        """The same rule as the SQL's: equal hashes, or no hash yet and equal name and meta."""
        if self.content_hash is not None:
            return self.content_hash == item.content_hash
        return (self.display_name, self.meta_json) == (item.display_name, item.meta_json)


def _in_chunks(
    cursor: Any, sql: str, tenant_id: str, policy_type: str, ids: Sequence[str]
) -> Iterator[tuple[Any, ...]]:
    """Rows of `sql` for `ids`, looked up in chunks below SQLite's variable limit."""
    for start in range(0, len(ids), _SQLITE_MAX_IN):
        chunk = ids[start : start + _SQLITE_MAX_IN]
        query = sql.format(placeholders=",".join("?" * len(chunk)))
        yield from cursor.execute(query, [tenant_id, policy_type, *chunk])


def _sqlite_known_rows(
    cursor: Any, tenant_id: str, policy_type: str, batch: Sequence[ObservedItem]
) -> dict[str, _KnownRow]:
    """The batch's already stored rows."""
    ids = [item.external_id for item in batch]
    return {
        external_id: _KnownRow(*row)
        for external_id, *row in _in_chunks(cursor, SQLITE_KNOWN_ROWS, tenant_id, policy_type, ids)
    }


class _SqliteOutcome(NamedTuple):
    inserted: int
    updated: int
    events: list[tuple[str, int | None, str]]
    """(external id, item id (None for a new row), event)"""


def _sqlite_outcome(
    batch: Sequence[ObservedItem],
    known: Mapping[str, _KnownRow],
    reported: set[int],
    stamp: str,
    run_id: int,
) -> _SqliteOutcome:
    """Counts and events by the same rules as PostgreSQL's RETURNING: a row skipped for a
    newer sighting is unchanged, one first seen by this run is inserted."""
    inserted = updated = 0
    events: list[tuple[str, int | None, str]] = []
    for item in batch:
        before = known.get(item.external_id)
        if before is None:
            inserted += 1
            events.append((item.external_id, None, ADDED))
            continue
        if (before.last_seen_at, before.last_seen_run_id) > (stamp, run_id):
            continue
        if before.first_seen_run_id == run_id:
            inserted += 1
            events.append((item.external_id, before.id, ADDED))
        elif not before.unchanged(item):
            updated += 1
            events.append((item.external_id, before.id, CHANGED))
        if before.id in reported:
            events.append((item.external_id, before.id, RETURNED))
    return _SqliteOutcome(inserted, updated, events)


def upsert_sqlite(
    conn: Connection,
    tenant_id: str,
    policy_type: str,
    run_id: int,
    seen_at: datetime,
    batch: Sequence[ObservedItem],
) -> UpsertOutcome:
    """One lookup, one executemany, then the events (new rows' ids looked up)."""
    # Exactly the text UtcDateTime stores, so comparisons with ORM-written times stay correct.
    stamp = sqlite_timestamp(seen_at)
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        known = _sqlite_known_rows(cursor, tenant_id, policy_type, batch)
        reported = {
            int(item_id) for (item_id,) in cursor.execute(SQLITE_REPORTED, (tenant_id, policy_type))
        }
        outcome = _sqlite_outcome(batch, known, reported, stamp, run_id)
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
                    item.content_hash,
                )
                for item in batch
            ],
        )
        new = [external_id for external_id, item_id, _ in outcome.events if item_id is None]
        new_ids = dict(_in_chunks(cursor, SQLITE_NEW_IDS, tenant_id, policy_type, new))
        if outcome.events:
            cursor.executemany(
                SQLITE_INSERT_EVENTS,
                [
                    (
                        tenant_id,
                        policy_type,
                        external_id,
                        item_id if item_id is not None else new_ids[external_id],
                        event,
                        run_id,
                        stamp,
                    )
                    for external_id, item_id, event in outcome.events
                ],
            )
    finally:
        cursor.close()
    returned = sum(1 for *_, event in outcome.events if event == RETURNED)
    return UpsertOutcome(outcome.inserted, outcome.updated, returned, len(batch))
