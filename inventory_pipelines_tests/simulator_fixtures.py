"""Pytest plugin: one real Graph simulator on loopback per session, reset before each test.

Registered through `pytest_plugins` in the root conftest. Identity-class throttling is off
(`identity_requests_per_second=0`) so tests are fast; tests that need it turn it on with
`sim.control.set_options(identity_requests_per_second=...)` (undone by the next reset).
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from inventory_pipelines.simulator import SimulatorServer


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
