"""Run the simulator: in a background thread for tests (`SimulatorServer`) or blocking (`serve`).

The server binds loopback only: its control API has no authentication by design.
"""

from __future__ import annotations

import contextlib
import importlib.util
import ipaddress
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

import uvicorn

from inventory_pipelines.simulator.app import create_app
from inventory_pipelines.simulator.control import SimulatorControl
from inventory_pipelines.simulator.paging import DEFAULT_SETTINGS_CATALOG_MAX_TOP
from inventory_pipelines.simulator.scenario import apply_options, apply_tenants, load_scenario
from inventory_pipelines.simulator.state import SimulatorOptions, SimulatorState
from inventory_pipelines.simulator.tokens import SIMULATOR_CLIENT_ID, SIMULATOR_CLIENT_SECRET

DEFAULT_PORT = 8765
_START_TIMEOUT = 15.0


class SimulatorStartError(RuntimeError):
    """The simulator did not come up (port taken, bad host, crashed thread)."""


def _check_loopback(host: str) -> None:
    if host == "localhost":
        return
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise ValueError(
            f"refusing to bind {host!r}: the simulator's control API has no authentication; "
            "use a loopback address such as 127.0.0.1"
        )


def _bind(host: str, port: int) -> socket.socket:
    """Bind (and listen) before starting uvicorn so port 0 resolves to a known free port, and
    a client that reads the announced URL before uvicorn runs is queued, not refused."""
    _check_loopback(host)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise SimulatorStartError(f"cannot bind {host}:{port}: {exc}") from exc
    return sock


def _uvicorn_config(app: Any, host: str, port: int) -> uvicorn.Config:
    fast_loop = importlib.util.find_spec("uvloop") is not None
    fast_http = importlib.util.find_spec("httptools") is not None
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop" if fast_loop else "asyncio",
        http="httptools" if fast_http else "h11",
        ws="none",
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
        # uvicorn closes idle keep-alive connections after 5 s by default; a client reusing
        # one at that instant gets "Server disconnected without sending a response". Graph's
        # front ends keep idle connections far longer.
        timeout_keep_alive=120,
    )


def build_state(
    *,
    client_id: str = SIMULATOR_CLIENT_ID,
    client_secret: str = SIMULATOR_CLIENT_SECRET,
    identity_requests_per_second: float = 1.0,
    settings_catalog_max_top: int = DEFAULT_SETTINGS_CATALOG_MAX_TOP,
    token_expires_in: int = 3599,
    tenants: Mapping[str, Mapping[str, Any]] | None = None,
    scenario_path: str | Path | None = None,
) -> SimulatorState:
    """State with options, then the scenario file, then explicit tenants applied."""
    state = SimulatorState(
        SimulatorOptions(
            client_id=client_id,
            client_secret=client_secret,
            token_expires_in=token_expires_in,
            identity_requests_per_second=identity_requests_per_second,
            settings_catalog_max_top=settings_catalog_max_top,
        )
    )
    scenario = load_scenario(scenario_path) if scenario_path is not None else None
    if scenario is not None:
        apply_options(state, scenario)
        # The scenario's options are what `reset()` returns to.
        state.initial_options = state.options

    def setup(target: SimulatorState) -> None:
        if scenario is not None:
            apply_tenants(target, scenario.get("tenants") or {})
        if tenants:
            apply_tenants(target, tenants)

    setup(state)
    state.initial_setup = setup
    return state


class SimulatorServer:
    """A simulator on a background thread; `with SimulatorServer() as sim: sim.base_url`.

    The same URL is the authority (`{base_url}/{tenant}/oauth2/v2.0/token`) and the Graph
    base URL (`{base_url}/beta/...`). `control` drives it over HTTP.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        client_id: str = SIMULATOR_CLIENT_ID,
        client_secret: str = SIMULATOR_CLIENT_SECRET,
        identity_requests_per_second: float = 1.0,
        settings_catalog_max_top: int = DEFAULT_SETTINGS_CATALOG_MAX_TOP,
        token_expires_in: int = 3599,
        tenants: Mapping[str, Mapping[str, Any]] | None = None,
        scenario_path: str | Path | None = None,
    ) -> None:
        _check_loopback(host)
        self.host = host
        self.port = port
        self.client_id = client_id
        self.client_secret = client_secret
        self._state = build_state(
            client_id=client_id,
            client_secret=client_secret,
            identity_requests_per_second=identity_requests_per_second,
            settings_catalog_max_top=settings_catalog_max_top,
            token_expires_in=token_expires_in,
            tenants=tenants,
            scenario_path=scenario_path,
        )
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._control: SimulatorControl | None = None

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:PORT`: Graph base URL and authority URL alike."""
        if self._server is None:
            raise SimulatorStartError("the simulator is not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def authority_url(self) -> str:
        return self.base_url

    def token_url(self, tenant_id: str) -> str:
        return f"{self.base_url}/{tenant_id}/oauth2/v2.0/token"

    @property
    def control(self) -> SimulatorControl:
        if self._control is None:
            raise SimulatorStartError("the simulator is not started")
        return self._control

    def start(self) -> SimulatorServer:
        """Start serving; returns once the port accepts connections."""
        if self._server is not None:
            return self
        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(create_app(self._state), self.host, self.port))
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name="graph-simulator", daemon=True
        )
        self._server, self._thread = server, thread
        thread.start()
        deadline = time.monotonic() + _START_TIMEOUT
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                self._server = self._thread = None
                sock.close()
                raise SimulatorStartError("the simulator did not start (see the log above)")
            time.sleep(0.01)
        with socket.create_connection((self.host, self.port), timeout=5):
            pass
        self._control = SimulatorControl(self.base_url)
        return self

    def stop(self) -> None:
        """Stop serving and wait for the thread (in-flight requests get ~2 s to finish)."""
        server, thread = self._server, self._thread
        if self._control is not None:
            self._control.close()
            self._control = None
        if server is None or thread is None:
            return
        server.should_exit = True
        thread.join(timeout=5)
        if thread.is_alive():
            server.force_exit = True
            thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = DEFAULT_PORT,
    *,
    client_id: str = SIMULATOR_CLIENT_ID,
    client_secret: str = SIMULATOR_CLIENT_SECRET,
    identity_requests_per_second: float = 1.0,
    settings_catalog_max_top: int = DEFAULT_SETTINGS_CATALOG_MAX_TOP,
    token_expires_in: int = 3599,
    tenants: Mapping[str, Mapping[str, Any]] | None = None,
    scenario_path: str | Path | None = None,
    announce: Callable[[str], None] | None = print,
) -> None:
    """Serve in the foreground until Ctrl-C (for `inventory-pipelines simulator`)."""
    state = build_state(
        client_id=client_id,
        client_secret=client_secret,
        identity_requests_per_second=identity_requests_per_second,
        settings_catalog_max_top=settings_catalog_max_top,
        token_expires_in=token_expires_in,
        tenants=tenants,
        scenario_path=scenario_path,
    )
    sock = _bind(host, port)
    bound_port = sock.getsockname()[1]
    if announce is not None:
        url = f"http://{host}:{bound_port}"
        announce(
            f"Graph simulator on {url} (authority and Graph base URL); client id {client_id}; "
            "control API under /_simulator/. Ctrl-C stops it."
        )
    server = uvicorn.Server(_uvicorn_config(create_app(state), host, bound_port))
    # uvicorn re-raises Ctrl-C after its graceful shutdown; for a CLI that is a clean stop.
    with contextlib.suppress(KeyboardInterrupt):
        server.run(sockets=[sock])
