"""The naive baseline: what an ORM `update_or_create` loop does with the same items.

Deliberately simple, as a first implementation would be: policy types one after another, and
for every item one SELECT, then one INSERT or UPDATE, and a commit, each in its own
transaction. Same tables (SQLAlchemy Core), same client, same whitelisted metadata, and the
same run bookkeeping as the real sync, so only the write strategy differs (and the fetching
is sequential, as in such a loop).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select, update

from inventory_pipelines.core.errors import GraphError
from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.core.schema import items
from inventory_pipelines.core.selection import Selection
from inventory_pipelines.core.store import (
    COMPLETE,
    InventoryStore,
    RunResult,
    RunSkipped,
)
from inventory_pipelines.graph.client import GraphClient

Transaction = Callable[[Engine, str], AbstractContextManager[Connection]]


def _tenant_transaction() -> Transaction:
    """The product's tenant-scoped transaction (row-level security needs it on PostgreSQL)."""
    try:
        from inventory_pipelines.core.tenancy import tenant_transaction
    except ImportError:  # a schema without row-level security: a plain transaction will do

        def plain(engine: Engine, _tenant_id: str) -> AbstractContextManager[Connection]:
            return engine.begin()

        return plain
    return tenant_transaction


def update_or_create(
    conn: Connection,
    tenant_id: str,
    policy_type: str,
    item: ObservedItem,
    run_id: int,
    seen_at: datetime,
) -> str:
    """One item: look it up, then insert it or update it; returns what happened."""
    found = conn.execute(
        select(items.c.id, items.c.display_name, items.c.meta_jsonb).where(
            items.c.tenant_id == tenant_id,
            items.c.policy_type == policy_type,
            items.c.external_id == item.external_id,
        )
    ).first()
    meta = item.meta
    if found is None:
        conn.execute(
            items.insert().values(
                tenant_id=tenant_id,
                policy_type=policy_type,
                external_id=item.external_id,
                display_name=item.display_name,
                meta_jsonb=meta,
                first_seen_at=seen_at,
                first_seen_run_id=run_id,
                last_seen_at=seen_at,
                last_seen_run_id=run_id,
                last_changed_at=seen_at,
                last_changed_run_id=run_id,
            )
        )
        return "inserted"
    values: dict[str, Any] = {"last_seen_at": seen_at, "last_seen_run_id": run_id}
    changed = (found.display_name, found.meta_jsonb) != (item.display_name, meta)
    if changed:
        values.update(
            display_name=item.display_name,
            meta_jsonb=meta,
            last_changed_at=seen_at,
            last_changed_run_id=run_id,
        )
    conn.execute(update(items).where(items.c.id == found.id).values(**values))
    return "updated" if changed else "unchanged"


def _items_of(client: GraphClient, tenant_id: str, key: str) -> Iterator[ObservedItem]:
    policy_type = get_policy_type(key)
    for page in client.fetch(tenant_id, policy_type):
        for raw in page.items:
            yield ObservedItem.from_graph(raw, policy_type.name_field)


def naive_sync(
    engine: Engine, client: GraphClient, tenant_id: str, selection: Selection
) -> dict[str, Any]:
    """Sync the selection item by item, committing each; returns counts and the status."""
    store = InventoryStore(engine)
    started = store.start_sync_run(tenant_id, selection)
    if isinstance(started, RunSkipped):
        raise RuntimeError("the naive baseline found the run lock held")
    transaction = _tenant_transaction()
    result = RunResult()
    for key in selection.policy_types:
        observed = 0
        try:
            for item in _items_of(client, tenant_id, key):
                with transaction(engine, tenant_id) as conn:
                    outcome = update_or_create(
                        conn, tenant_id, key, item, started.run_id, started.started_at
                    )
                setattr(result.counts, outcome, getattr(result.counts, outcome) + 1)
                observed += 1
            result.policy_type_outcomes[key] = COMPLETE
        except GraphError as exc:
            result.policy_type_outcomes[key] = exc.code.value
        result.policy_type_counts[key] = observed
    status = store.finish_sync_run(tenant_id, started.run_id, result)
    return {
        "status": status,
        "items": result.counts.observed,
        "inserted": result.counts.inserted,
        "updated": result.counts.updated,
        "error_codes": result.error_codes,
    }
