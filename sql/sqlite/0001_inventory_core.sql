-- Inventory core schema (SQLite). Logical twin of sql/postgresql/0001_inventory_core.sql.
-- JSON and timestamps are TEXT (ISO-8601 UTC, one fixed format, so comparisons are correct).

CREATE TABLE tenants (
    tenant_id     TEXT PRIMARY KEY CHECK (tenant_id = lower(tenant_id) AND length(tenant_id) = 36),
    display_name  TEXT NOT NULL,
    active        BOOLEAN NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE inventory_sync_runs (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id             TEXT NOT NULL REFERENCES tenants (tenant_id),
    selection_name        TEXT NOT NULL,
    selection_hash        TEXT NOT NULL
        CHECK (length(selection_hash) = 64 AND selection_hash NOT GLOB '*[^0-9a-f]*'),
    selection_payload     TEXT NOT NULL,
    status                TEXT NOT NULL
        CHECK (status IN ('running', 'success', 'partial', 'failed', 'skipped')),
    had_errors            BOOLEAN NOT NULL DEFAULT 0,
    started_at            TEXT NOT NULL,
    finished_at           TEXT,
    heartbeat_at          TEXT NOT NULL,
    items_observed        INTEGER NOT NULL DEFAULT 0,
    items_inserted        INTEGER NOT NULL DEFAULT 0,
    items_updated         INTEGER NOT NULL DEFAULT 0,
    error_count           INTEGER NOT NULL DEFAULT 0,
    policy_type_counts    TEXT NOT NULL DEFAULT '{}',
    policy_type_outcomes  TEXT NOT NULL DEFAULT '{}',
    error_codes           TEXT NOT NULL DEFAULT '[]',
    error_context         TEXT NOT NULL DEFAULT '[]',
    correlation_id        TEXT
);

CREATE UNIQUE INDEX inventory_sync_runs_one_running
    ON inventory_sync_runs (tenant_id, selection_hash) WHERE status = 'running';
CREATE INDEX inventory_sync_runs_by_selection
    ON inventory_sync_runs (tenant_id, selection_hash, started_at);
CREATE INDEX inventory_sync_runs_by_correlation ON inventory_sync_runs (correlation_id);

CREATE TABLE inventory_items (
    id                   INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant_id            TEXT NOT NULL,
    policy_type          TEXT NOT NULL,
    external_id          TEXT NOT NULL,
    display_name         TEXT,
    meta_jsonb           TEXT NOT NULL DEFAULT '{}',
    first_seen_at        TEXT NOT NULL,
    first_seen_run_id    INTEGER NOT NULL,
    last_seen_at         TEXT NOT NULL,
    last_seen_run_id     INTEGER NOT NULL REFERENCES inventory_sync_runs (id),
    last_changed_at      TEXT NOT NULL,
    last_changed_run_id  INTEGER NOT NULL,
    CONSTRAINT inventory_items_identity UNIQUE (tenant_id, policy_type, external_id)
);

CREATE TABLE inventory_missing (
    tenant_id        TEXT NOT NULL REFERENCES tenants (tenant_id),
    selection_hash   TEXT NOT NULL,
    item_id          INTEGER NOT NULL REFERENCES inventory_items (id),
    policy_type      TEXT NOT NULL,
    external_id      TEXT NOT NULL,
    display_name     TEXT,
    last_seen_at     TEXT NOT NULL,
    reason           TEXT NOT NULL CHECK (reason IN ('not_observed', 'type_not_fetched')),
    confidence       TEXT NOT NULL CHECK (confidence IN ('high', 'low')),
    baseline_run_id  INTEGER NOT NULL REFERENCES inventory_sync_runs (id),
    computed_at      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, selection_hash, item_id)
);
