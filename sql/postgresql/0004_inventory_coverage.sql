-- Coverage (PostgreSQL). Logical twin of sql/sqlite/0004_inventory_coverage.sql.
-- One row per active tenant × expected policy type, refreshed per tenant by the
-- inventory_coverage asset (core/coverage.py): the last complete fetch of the type (its run's
-- start, the run, the items it saw) and the latest attempt (success, partial or failed run
-- that selected the type; skipped and running runs are not attempts). `latest_outcome` is
-- `complete` or the error code; `age_seconds` is the age of the last complete fetch as of
-- `computed_at` (null when never). Timestamps are run start times, from the database clock.

CREATE TABLE inventory_coverage (
    tenant_id             TEXT NOT NULL REFERENCES tenants (tenant_id),
    tenant_key            TEXT NOT NULL,
    policy_type           TEXT NOT NULL,
    last_complete_at      TIMESTAMPTZ,
    last_complete_run_id  BIGINT REFERENCES inventory_sync_runs (id),
    item_count            INTEGER,
    latest_outcome        TEXT,
    latest_attempt_at     TIMESTAMPTZ,
    latest_run_id         BIGINT REFERENCES inventory_sync_runs (id),
    age_seconds           BIGINT,
    computed_at           TIMESTAMPTZ NOT NULL,
    PRIMARY KEY (tenant_id, policy_type)
);

-- Tenant isolation as in 0002: visible and writable only under the transaction's tenant.
ALTER TABLE inventory_coverage ENABLE ROW LEVEL SECURITY;
ALTER TABLE inventory_coverage FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON inventory_coverage
    USING (tenant_id = current_setting('inventory.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('inventory.tenant_id', true));
