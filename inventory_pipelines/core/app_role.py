"""The PostgreSQL role the application connects as: least privilege, subject to row-level
security. Migrations and admin commands run as the owner role instead."""

from __future__ import annotations

import re

from sqlalchemy import Engine, text

from inventory_pipelines.core.errors import ValidationError

_ROLE_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")

APP_ROLE_GRANTS = (
    "GRANT USAGE ON SCHEMA public TO {role}",
    "GRANT SELECT ON tenants, schema_migrations TO {role}",
    "GRANT SELECT, INSERT, UPDATE, DELETE"
    " ON inventory_items, inventory_sync_runs, inventory_missing, inventory_coverage,"
    " inventory_changes TO {role}",
    "GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {role}",
)


def grant_app_role(engine: Engine, role: str) -> None:
    """Grant the application's privileges to an existing role that cannot bypass RLS."""
    if engine.dialect.name != "postgresql":
        raise ValidationError("application roles exist only on PostgreSQL")
    if not _ROLE_NAME.match(role):
        raise ValidationError(f"role name {role!r} must be a lower-case SQL identifier")
    with engine.begin() as conn:
        found = conn.execute(
            text("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = :r"), {"r": role}
        ).first()
        if found is None:
            raise ValidationError(f"role {role!r} does not exist; create it with CREATE ROLE")
        if found.rolsuper or found.rolbypassrls:
            raise ValidationError(
                f"role {role!r} is a superuser or has BYPASSRLS; row-level security would not "
                "apply to it, so it cannot be the application role"
            )
        for grant in APP_ROLE_GRANTS:
            conn.exec_driver_sql(grant.format(role=f'"{role}"'))
