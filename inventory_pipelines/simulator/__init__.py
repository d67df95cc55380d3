"""A Microsoft Graph simulator: token endpoint, paged Intune/Entra collections, switchable faults.

Plain Python (no Dagster). Tests and benchmarks start a `SimulatorServer` and drive it with
its `control` (a `SimulatorControl`); the CLI runs `serve`.
"""

from inventory_pipelines.simulator.control import SimulatorControl, SimulatorControlError
from inventory_pipelines.simulator.faults import FAULT_KINDS
from inventory_pipelines.simulator.server import (
    DEFAULT_PORT,
    SimulatorServer,
    SimulatorStartError,
    serve,
)
from inventory_pipelines.simulator.tokens import (
    GRAPH_SCOPE,
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
)

__all__ = [
    "DEFAULT_PORT",
    "FAULT_KINDS",
    "GRAPH_SCOPE",
    "SIMULATOR_CLIENT_ID",
    "SIMULATOR_CLIENT_SECRET",
    "SimulatorControl",
    "SimulatorControlError",
    "SimulatorServer",
    "SimulatorStartError",
    "serve",
]
