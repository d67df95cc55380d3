-- Tenant keys (PostgreSQL). Logical twin of sql/sqlite/0003_tenant_key.sql.
-- tenant_key is the tenant's readable, unique, immutable handle and its Dagster partition key.
-- Existing tenants get a slug of their display name: ASCII letters and digits (common Latin
-- accents folded, as in core/tenant_keys.py), every other run of characters one '-', at most
-- 63 characters; 'tenant-' and the first 8 hex digits of the id when nothing is left. When
-- slugs collide, the earliest registered tenant keeps it, the others get '-' and the first
-- 8 hex digits of their id.

ALTER TABLE tenants ADD COLUMN tenant_key TEXT;

WITH base AS (
    SELECT
        tenant_id,
        created_at,
        coalesce(
            nullif(
                rtrim(
                    left(
                        btrim(
                            lower(
                                regexp_replace(
                                    translate(
                                        replace(replace(replace(replace(replace(
                                            display_name, 'ß', 'ss'), 'Æ', 'ae'), 'æ', 'ae'),
                                            'Œ', 'oe'), 'œ', 'oe'),
                                        'ÀÁÂÃÄÅàáâãäåÇçÈÉÊËèéêëÌÍÎÏìíîïÑñÒÓÔÕÖØòóôõöøÙÚÛÜùúûüÝýÿĀāĂăĄąĆćČčĎďĐđĒēĘęĚěĞğĪīİıŁłŃńŇňŌōŐőŘřŚśŞşŠšŢţŤťŪūŮůŰűŹźŻżŽž',
                                        'aaaaaaaaaaaacceeeeeeeeiiiiiiiinnoooooooooooouuuuuuuuyyyaaaaaaccccddddeeeeeeggiiiillnnnnoooorrssssssttttuuuuuuzzzzzz'
                                    ),
                                    '[^A-Za-z0-9]+',
                                    '-',
                                    'g'
                                )
                            ),
                            '-'
                        ),
                        63
                    ),
                    '-'
                ),
                ''
            ),
            'tenant-' || left(tenant_id, 8)
        ) AS slug
    FROM tenants
),
ranked AS (
    SELECT
        tenant_id,
        slug,
        row_number() OVER (PARTITION BY slug ORDER BY created_at, tenant_id) AS rank
    FROM base
)
UPDATE tenants AS t
SET tenant_key = CASE
    WHEN r.rank = 1 THEN r.slug
    ELSE rtrim(left(r.slug, 54), '-') || '-' || left(t.tenant_id, 8)
END
FROM ranked AS r
WHERE r.tenant_id = t.tenant_id;

ALTER TABLE tenants ALTER COLUMN tenant_key SET NOT NULL;
ALTER TABLE tenants ADD CONSTRAINT tenants_tenant_key_key UNIQUE (tenant_key);
ALTER TABLE tenants ADD CONSTRAINT tenants_tenant_key_shape
    CHECK (tenant_key ~ '^[a-z0-9][a-z0-9-]{0,62}$');

-- Keys are immutable: the code never updates them, and the database refuses it too.
CREATE FUNCTION tenants_tenant_key_immutable() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        ERRCODE = 'integrity_constraint_violation',
        MESSAGE = 'tenant_key is immutable (tenant ' || OLD.tenant_id || ' keeps '
            || OLD.tenant_key || ')';
END
$$;

CREATE TRIGGER tenants_tenant_key_immutable
    BEFORE UPDATE OF tenant_key ON tenants
    FOR EACH ROW
    WHEN (NEW.tenant_key IS DISTINCT FROM OLD.tenant_key)
    EXECUTE FUNCTION tenants_tenant_key_immutable();
