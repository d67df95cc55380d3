"""The ASGI application: one server is both the authority (token endpoint) and Graph."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import BaseRoute, Route
from starlette.types import Receive, Scope, Send

from inventory_pipelines.simulator.control_api import PREFIX, control_routes
from inventory_pipelines.simulator.graph_endpoint import GraphEndpoint
from inventory_pipelines.simulator.resets import install_reset_log_filter
from inventory_pipelines.simulator.state import SimulatorOptions, SimulatorState
from inventory_pipelines.simulator.token_endpoint import TokenEndpoint

TOKEN_PATH_SUFFIX = "/oauth2/v2.0/token"
DISCOVERY_PATH_SUFFIX = "/v2.0/.well-known/openid-configuration"


class SimulatorApp:
    """Dispatch by path: Graph requests skip Starlette's router, which would cost more than
    the page itself; the token endpoint and control API go through it.

    Any method reaches the Graph endpoint so that writes get Graph's 405, and are counted.
    """

    def __init__(self, state: SimulatorState) -> None:
        install_reset_log_filter()
        self.state = state
        self.graph = GraphEndpoint(state)
        tokens = TokenEndpoint(state)
        routes: list[BaseRoute] = [
            *control_routes(state),
            Route(f"/{{tenant}}{TOKEN_PATH_SUFFIX}", tokens.handle, methods=["POST"]),
            Route(
                f"/{{tenant}}{DISCOVERY_PATH_SUFFIX}", tokens.openid_configuration, methods=["GET"]
            ),
        ]
        self.router = Starlette(routes=routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path: str = scope["path"]
            if not path.startswith(PREFIX + "/") and not path.endswith(
                (TOKEN_PATH_SUFFIX, DISCOVERY_PATH_SUFFIX)
            ):
                await self.graph(scope, receive, send)
                return
        await self.router(scope, receive, send)


def create_app(state: SimulatorState | None = None) -> SimulatorApp:
    """Routes: `/_simulator/*` control API, `POST /{tenant}/oauth2/v2.0/token`, the tenant's
    OpenID configuration, Graph paths."""
    return SimulatorApp(state if state is not None else SimulatorState(SimulatorOptions()))
