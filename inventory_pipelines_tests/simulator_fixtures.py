"""Pytest plugin: one real Graph simulator on loopback per session, reset before each test.

Registered through `pytest_plugins` in the root conftest. Identity-class throttling is off
(`identity_requests_per_second=0`) so tests are fast; tests that need it turn it on with
`sim.control.set_options(identity_requests_per_second=...)` (undone by the next reset).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.settings import GraphSettings
from inventory_pipelines.simulator import (
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    SimulatorServer,
)


@pytest.fixture(scope="session")
def simulator() -> Iterator[SimulatorServer]:
    """The session's simulator; prefer `sim`, which also resets it."""
    with SimulatorServer(identity_requests_per_second=0) as server:
        yield server


@pytest.fixture
def sim(simulator: SimulatorServer) -> SimulatorServer:
    """The simulator with no tenants configured, no faults, no tokens and zeroed counters."""
    simulator.control.reset()
    return simulator


FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_total_wait=2.0)
"""Retries quick enough for tests; the simulator's faults decide how many are needed."""


def simulator_settings(sim: SimulatorServer, **overrides: Any) -> GraphSettings:
    """Graph settings pointing at the simulator (authority and Graph alike), its credentials."""
    values: dict[str, Any] = {
        "client_id": SIMULATOR_CLIENT_ID,
        "client_secret": SIMULATOR_CLIENT_SECRET,
        "base_url": sim.base_url,
        "authority_url": sim.base_url,
    }
    values.update(overrides)
    return GraphSettings(**values)


def simulator_client(sim: SimulatorServer, retry: RetryPolicy = FAST_RETRY) -> GraphClient:
    """A Graph client for the simulator with the test credentials, identity pacing off."""
    return GraphClient(simulator_settings(sim), retry=retry, identity_requests_per_second=0)


@pytest.fixture
def sim_graph(sim: SimulatorServer) -> Iterator[GraphClient]:
    """A Graph client talking to the reset simulator (fast retries, no identity pacing)."""
    with simulator_client(sim) as client:
        yield client
