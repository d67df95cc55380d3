-- Tenant keys (SQLite). Logical twin of sql/postgresql/0003_tenant_key.sql.
-- tenant_key is the tenant's readable, unique, immutable handle and its Dagster partition key.
-- Existing tenants get a slug of their display name: ASCII letters and digits (common Latin
-- accents folded, as in core/tenant_keys.py), every other run of characters one '-', at most
-- 63 characters; 'tenant-' and the first 8 hex digits of the id when nothing is left. When
-- slugs collide, the earliest registered tenant keeps it, the others get '-' and the first
-- 8 hex digits of their id.
-- SQLite cannot add a NOT NULL UNIQUE column in place: the table is rebuilt (the migration
-- runner switches foreign-key enforcement off for this and checks the references after).

CREATE TABLE tenants_rebuilt (
    tenant_id     TEXT PRIMARY KEY CHECK (tenant_id = lower(tenant_id) AND length(tenant_id) = 36),
    display_name  TEXT NOT NULL,
    active        BOOLEAN NOT NULL DEFAULT 1,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL,
    tenant_key    TEXT NOT NULL UNIQUE,
    CONSTRAINT tenants_tenant_key_shape CHECK (
        length(tenant_key) BETWEEN 1 AND 63
        AND tenant_key GLOB '[a-z0-9]*'
        AND tenant_key NOT GLOB '*[^a-z0-9-]*'
    )
);

INSERT INTO tenants_rebuilt (tenant_id, display_name, active, created_at, updated_at, tenant_key)
WITH RECURSIVE
fold (accented, plain) AS (
    SELECT
        'ÀÁÂÃÄÅàáâãäåÇçÈÉÊËèéêëÌÍÎÏìíîïÑñÒÓÔÕÖØòóôõöøÙÚÛÜùúûüÝýÿĀāĂăĄąĆćČčĎďĐđĒēĘęĚěĞğĪīİıŁłŃńŇňŌōŐőŘřŚśŞşŠšŢţŤťŪūŮůŰűŹźŻżŽž',
        'aaaaaaaaaaaacceeeeeeeeiiiiiiiinnoooooooooooouuuuuuuuyyyaaaaaaccccddddeeeeeeggiiiillnnnnoooorrssssssttttuuuuuuzzzzzz'
),
-- One character per step: keep [a-z0-9], fold accents, turn anything else into one '-'.
walk (tenant_id, rest, slug) AS (
    SELECT
        tenant_id,
        lower(
            replace(replace(replace(replace(replace(
                display_name, 'ß', 'ss'), 'Æ', 'ae'), 'æ', 'ae'), 'Œ', 'oe'), 'œ', 'oe')
        ),
        ''
    FROM tenants
    UNION ALL
    SELECT
        walk.tenant_id,
        substr(walk.rest, 2),
        CASE
            WHEN substr(walk.rest, 1, 1) BETWEEN 'a' AND 'z'
                OR substr(walk.rest, 1, 1) BETWEEN '0' AND '9'
                THEN walk.slug || substr(walk.rest, 1, 1)
            WHEN instr(fold.accented, substr(walk.rest, 1, 1)) > 0
                THEN walk.slug
                    || substr(fold.plain, instr(fold.accented, substr(walk.rest, 1, 1)), 1)
            WHEN walk.slug = '' OR substr(walk.slug, -1) = '-' THEN walk.slug
            ELSE walk.slug || '-'
        END
    FROM walk, fold
    WHERE walk.rest <> ''
),
base AS (
    SELECT
        t.tenant_id,
        t.created_at,
        coalesce(
            nullif(rtrim(substr(rtrim(w.slug, '-'), 1, 63), '-'), ''),
            'tenant-' || substr(t.tenant_id, 1, 8)
        ) AS slug
    FROM tenants AS t
    JOIN walk AS w ON w.tenant_id = t.tenant_id AND w.rest = ''
),
ranked AS (
    SELECT
        tenant_id,
        slug,
        row_number() OVER (PARTITION BY slug ORDER BY created_at, tenant_id) AS rank
    FROM base
)
SELECT
    t.tenant_id,
    t.display_name,
    t.active,
    t.created_at,
    t.updated_at,
    CASE
        WHEN r.rank = 1 THEN r.slug
        ELSE rtrim(substr(r.slug, 1, 54), '-') || '-' || substr(t.tenant_id, 1, 8)
    END
FROM tenants AS t
JOIN ranked AS r ON r.tenant_id = t.tenant_id;

DROP TABLE tenants;
ALTER TABLE tenants_rebuilt RENAME TO tenants;

-- Keys are immutable: the code never updates them, and the database refuses it too.
CREATE TRIGGER tenants_tenant_key_immutable
BEFORE UPDATE OF tenant_key ON tenants
WHEN NEW.tenant_key IS NOT OLD.tenant_key
BEGIN SELECT RAISE(ABORT, 'tenant_key is immutable'); END;
