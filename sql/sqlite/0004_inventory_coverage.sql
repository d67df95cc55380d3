-- Coverage (SQLite). Logical twin of sql/postgresql/0004_inventory_coverage.sql (which also
-- puts the table under row-level security; SQLite has none, as noted in 0002).
-- One row per active tenant × expected policy type, refreshed per tenant by the
-- inventory_coverage asset (core/coverage.py): the last complete fetch of the type (its run's
-- start, the run, the items it saw) and the latest attempt (success, partial or failed run
-- that selected the type; skipped and running runs are not attempts). `latest_outcome` is
-- `complete` or the error code; `age_seconds` is the age of the last complete fetch as of
-- `computed_at` (null when never).

CREATE TABLE inventory_coverage (
    tenant_id             TEXT NOT NULL REFERENCES tenants (tenant_id),
    tenant_key            TEXT NOT NULL,
    policy_type           TEXT NOT NULL,
    last_complete_at      TEXT,
    last_complete_run_id  INTEGER REFERENCES inventory_sync_runs (id),
    item_count            INTEGER,
    latest_outcome        TEXT,
    latest_attempt_at     TEXT,
    latest_run_id         INTEGER REFERENCES inventory_sync_runs (id),
    age_seconds           INTEGER,
    computed_at           TEXT NOT NULL,
    PRIMARY KEY (tenant_id, policy_type)
);
