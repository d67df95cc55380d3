-- Tenant isolation as a database guarantee: rows of the tenant-scoped tables are visible and
-- writable only when the transaction's `inventory.tenant_id` setting names their tenant (the
-- application sets it per transaction). A statement without it sees and changes nothing.
-- FORCE applies the policies to the table owner too; only superusers and BYPASSRLS roles
-- are exempt, and `inventory-pipelines db grant-app-role` refuses to grant to those.

ALTER TABLE inventory_items ENABLE ROW LEVEL SECURITY;
ALTER TABLE inventory_items FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON inventory_items
    USING (tenant_id = current_setting('inventory.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('inventory.tenant_id', true));

ALTER TABLE inventory_sync_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE inventory_sync_runs FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON inventory_sync_runs
    USING (tenant_id = current_setting('inventory.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('inventory.tenant_id', true));

ALTER TABLE inventory_missing ENABLE ROW LEVEL SECURITY;
ALTER TABLE inventory_missing FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON inventory_missing
    USING (tenant_id = current_setting('inventory.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('inventory.tenant_id', true));
