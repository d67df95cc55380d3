"""Resources and instances for Dagster tests: real simulator, real database, real instance."""

from __future__ import annotations

from collections.abc import Iterator

import dagster as dg
import pytest

from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.resources import GraphResource, InventoryDatabase
from inventory_pipelines.simulator import (
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    SimulatorServer,
)

TENANT = "6e5d4c3b-2a19-4807-b6f5-e4d3c2b1a098"
TENANT_KEY = "contoso"  # the tenant partition key
TENANT_NAME = "Contoso Ltd."


def graph_resource(sim: SimulatorServer | str, **overrides: object) -> GraphResource:
    """A Graph resource for the simulator (a server or its base URL), with fast retries."""
    base_url = sim if isinstance(sim, str) else sim.base_url
    settings: dict[str, object] = {
        "client_id": SIMULATOR_CLIENT_ID,
        "client_secret": SIMULATOR_CLIENT_SECRET,
        "base_url": base_url,
        "authority_url": base_url,
        "retry_base_delay": 0.01,
        "identity_requests_per_second": 0,
    }
    settings.update(overrides)
    return GraphResource(**settings)  # type: ignore[arg-type]


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as test_instance:
        yield test_instance


@pytest.fixture
def resources(database_url: str, sim: SimulatorServer) -> dict[str, object]:
    database = InventoryDatabase(url=database_url)
    add_tenant(database.engine(), TENANT, TENANT_NAME, key=TENANT_KEY)
    sim.control.configure_tenant(TENANT, seed=11, default_size=6)
    return {"inventory_db": database, "graph": graph_resource(sim)}
