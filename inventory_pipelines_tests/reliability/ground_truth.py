"""Inventory versus the simulator's ground truth, and small builders the reliability tests share."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Engine, func, select

from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.policy_types import get_policy_type
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.settings import GraphSettings
from inventory_pipelines.simulator import (
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    SimulatorServer,
)

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_total_wait=2.0)

Row = tuple[str | None, dict[str, Any]]  # display name, whitelisted metadata


def graph_client(sim: SimulatorServer) -> GraphClient:
    settings = GraphSettings(
        client_id=SIMULATOR_CLIENT_ID,
        client_secret=SIMULATOR_CLIENT_SECRET,
        base_url=sim.base_url,
        authority_url=sim.base_url,
    )
    return GraphClient(settings, retry=FAST_RETRY, identity_requests_per_second=0)


def expected_rows(
    sim: SimulatorServer, tenant_id: str, policy_types: Iterable[str]
) -> dict[tuple[str, str], Row]:
    """What a complete sync must store right now: (type, id) -> (name, metadata)."""
    expected: dict[tuple[str, str], Row] = {}
    for policy_type in policy_types:
        name_field = get_policy_type(policy_type).name_field
        for item in sim.control.items(tenant_id, policy_type):
            observed = ObservedItem.from_graph(item, name_field)
            expected[(policy_type, observed.external_id)] = (observed.display_name, observed.meta)
    return expected


def stored_rows(engine: Engine, tenant_id: str, run_id: int | None = None) -> dict[Any, Row]:
    """The tenant's inventory rows (only those last seen by `run_id` when given)."""
    query = select(
        items_table.c.policy_type,
        items_table.c.external_id,
        items_table.c.display_name,
        items_table.c.meta_jsonb,
    ).where(items_table.c.tenant_id == tenant_id)
    if run_id is not None:
        query = query.where(items_table.c.last_seen_run_id == run_id)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    found = {(r.policy_type, r.external_id): (r.display_name, r.meta_jsonb) for r in rows}
    assert len(found) == len(rows), "duplicate inventory rows"
    return found


def duplicate_rows(engine: Engine) -> int:
    """Rows beyond one per (tenant, type, external id) in the whole table."""
    with engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(items_table)).scalar_one()
        key = (items_table.c.tenant_id, items_table.c.policy_type, items_table.c.external_id)
        keys = conn.execute(
            select(func.count()).select_from(select(*key).distinct().subquery())
        ).scalar_one()
    return int(total - keys)


def runs_of(engine: Engine, tenant_id: str) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(sync_runs).where(sync_runs.c.tenant_id == tenant_id).order_by(sync_runs.c.id)
            )
        )


def running_runs(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(conn.execute(select(sync_runs).where(sync_runs.c.status == "running")))
