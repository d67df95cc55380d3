-- Change feed (SQLite). Logical twin of sql/postgresql/0005_inventory_changes.sql (which also
-- puts the table under row-level security; SQLite has none, as noted in 0002).
--
-- inventory_items.content_hash: SHA-256 (32 raw bytes) of the canonical JSON of the full
-- object Graph returned, minus volatile fields (core/content_hash.py); the hash, never the
-- content. Nullable: a row stored before this migration gets its hash on its next
-- observation, and that first hash does not count as a change.
ALTER TABLE inventory_items ADD COLUMN content_hash BLOB
    CHECK (content_hash IS NULL OR (typeof(content_hash) = 'blob' AND length(content_hash) = 32));

-- inventory_changes: one row per item event (see the PostgreSQL twin for the meaning of
-- every column). No foreign keys, as in the PostgreSQL twin.
CREATE TABLE inventory_changes (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id       TEXT NOT NULL,
    policy_type     TEXT NOT NULL,
    external_id     TEXT NOT NULL,
    item_id         INTEGER NOT NULL,
    event           TEXT NOT NULL
        CHECK (event IN ('added', 'changed', 'returned', 'went_missing')),
    sync_run_id     INTEGER NOT NULL,
    selection_hash  TEXT,
    reason          TEXT CHECK (reason IN ('not_observed', 'type_not_fetched')),
    confidence      TEXT CHECK (confidence IN ('high', 'low')),
    occurred_at     TEXT NOT NULL,
    -- Selection, reason and confidence belong to went_missing, and only to it.
    CONSTRAINT inventory_changes_missing_details CHECK (
        CASE WHEN event = 'went_missing'
             THEN selection_hash IS NOT NULL AND reason IS NOT NULL AND confidence IS NOT NULL
             ELSE selection_hash IS NULL AND reason IS NULL AND confidence IS NULL
        END
    )
);
CREATE UNIQUE INDEX inventory_changes_once
    ON inventory_changes (tenant_id, sync_run_id, item_id, event);
CREATE INDEX inventory_changes_by_time ON inventory_changes (tenant_id, occurred_at, id);
