"""Tenant-scoped transactions: on PostgreSQL every statement runs under row-level security
keyed on the transaction's tenant, so even a query that forgets its WHERE sees one tenant."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine, text

TENANT_SETTING = "inventory.tenant_id"
_SET_TENANT = text(f"SELECT set_config('{TENANT_SETTING}', :tenant_id, true)")


@contextmanager
def tenant_transaction(engine: Engine, tenant_id: str) -> Iterator[Connection]:
    """A transaction whose row-level-security tenant is `tenant_id` (no-op on SQLite)."""
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(_SET_TENANT, {"tenant_id": tenant_id})
        yield conn
