"""Server lifecycle: background thread for tests, scenario files, and the blocking `serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from inventory_pipelines.simulator import SimulatorControl, SimulatorServer, SimulatorStartError
from inventory_pipelines_tests.simulator.graph_http import (
    TENANT_A,
    TENANT_B,
    graph_client,
    raw_get,
    url_of,
)

SCENARIO_TOML = f"""
[options]
expires_in = 600
identity_requests_per_second = 0

[tenants."{TENANT_A}"]
seed = 3
default_size = 2
sizes = {{ mobile_apps = 12 }}
faults = [ {{ kind = "status", status = 503, policy_type = "vpp_tokens" }} ]

[tenants."*"]
faults = [ {{ kind = "latency", ms = 1 }} ]
"""


def _port_open(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_start_and_stop() -> None:
    server = SimulatorServer()
    with pytest.raises(SimulatorStartError):
        _ = server.base_url
    with server:
        assert server.port > 0
        assert server.base_url == f"http://127.0.0.1:{server.port}"
        assert server.authority_url == server.base_url
        assert server.control.health()
        port = server.port
    assert not _port_open(port)


def test_binding_a_taken_port_fails_clearly(simulator: SimulatorServer) -> None:
    with pytest.raises(SimulatorStartError, match="cannot bind"):
        SimulatorServer(port=simulator.port).start()


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "example.com"])
def test_refuses_non_loopback_hosts(host: str) -> None:
    with pytest.raises(ValueError, match="loopback"):
        SimulatorServer(host=host)


def test_scenario_file_configures_tenants_faults_and_options(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(SCENARIO_TOML, encoding="utf-8")
    with SimulatorServer(scenario_path=scenario) as server:
        control = server.control
        assert control.item_count(TENANT_A, "mobile_apps") == 12
        assert control.item_count(TENANT_A, "vpp_tokens") == 2
        assert control.options()["expires_in"] == 600
        with graph_client(server, TENANT_A) as a, graph_client(server, TENANT_B) as b:
            assert a.get(url_of("vpp_tokens")).status_code == 503
            assert b.get(url_of("vpp_tokens")).status_code == 200
        control.reset()  # back to the scenario, not to nothing
        assert control.item_count(TENANT_A, "mobile_apps") == 12
        assert [f["kind"] for f in control.faults(TENANT_A)] == ["status"]
        assert [f["kind"] for f in control.faults("*")] == ["latency"]


def test_bad_scenario_is_rejected(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"tenants": {TENANT_A: {"faults": [{"kind": "x"}]}}}))
    with pytest.raises(ValueError, match="unknown fault kind"):
        SimulatorServer(scenario_path=scenario)


def test_serve_runs_in_the_foreground_until_interrupted(tmp_path: Path) -> None:
    scenario = tmp_path / "scenario.json"
    scenario.write_text(json.dumps({"tenants": {TENANT_A: {"sizes": {"mobile_apps": 4}}}}))
    code = (
        "from inventory_pipelines.simulator import serve; "
        f"serve('127.0.0.1', 0, scenario_path={str(scenario)!r})"
    )
    with subprocess.Popen(
        [sys.executable, "-c", code],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    ) as process:
        try:
            assert process.stdout is not None
            banner = process.stdout.readline()
            base_url = banner.split(" on ", 1)[1].split(" ", 1)[0]
            with SimulatorControl(base_url) as control:
                assert control.item_count(TENANT_A, "mobile_apps") == 4
            assert raw_get(base_url + url_of("mobile_apps")).status_code == 401
        finally:
            os.kill(process.pid, signal.SIGINT)
            assert process.wait(timeout=10) == 0
