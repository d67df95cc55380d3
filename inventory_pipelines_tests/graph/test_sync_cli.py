"""`inventory-pipelines sync` and `missing` as operators run them, against the simulator."""

from __future__ import annotations

import json

import pytest

from inventory_pipelines.simulator import (
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    SimulatorServer,
)
from inventory_pipelines_tests.test_cli import cli

TENANT = "5b6c7d8e-9f0a-4b1c-8d2e-3f4a5b6c7d8e"


@pytest.fixture
def env(database_url: str, sim: SimulatorServer) -> dict[str, str]:
    sim.control.configure_tenant(TENANT, seed=3, default_size=4)
    return {
        "INVENTORY_DATABASE_URL": database_url,
        "GRAPH_BASE_URL": sim.base_url,
        "GRAPH_AUTHORITY_URL": sim.base_url,
        "GRAPH_CLIENT_ID": SIMULATOR_CLIENT_ID,
        "GRAPH_CLIENT_SECRET": SIMULATOR_CLIENT_SECRET,
    }


def test_sync_then_missing(env: dict[str, str], sim: SimulatorServer) -> None:
    assert cli("tenants", "add", TENANT, "--name", "Contoso", env=env).returncode == 0
    first = cli("sync", "--tenant", TENANT, "--selection", "compliance", "--json", env=env)
    assert first.returncode == 0, first.stderr
    summary = json.loads(first.stdout)
    assert summary["status"] == "success"
    expected = sum(sim.control.item_count(TENANT, t) for t in summary["policy_types"])
    assert summary["items_observed"] == summary["items_inserted"] == expected

    gone = sim.control.items(TENANT, "compliance_policies")[0]["id"]
    sim.control.delete_items(TENANT, "compliance_policies", [gone])
    text = cli("sync", "--tenant", TENANT, "--selection", "compliance", env=env)
    assert text.returncode == 0 and "success" in text.stdout
    missing = cli("missing", "--tenant", TENANT, "--selection", "compliance", env=env)
    assert missing.returncode == 0
    assert "1 missing, confidence high" in missing.stdout and gone in missing.stdout
    assert SIMULATOR_CLIENT_SECRET not in first.stdout + first.stderr + text.stdout


def test_failed_sync_exits_non_zero(env: dict[str, str]) -> None:
    cli("tenants", "add", TENANT, "--name", "Contoso", env=env)
    result = cli(
        "sync",
        "--tenant",
        TENANT,
        "--selection",
        "compliance",
        env={**env, "GRAPH_CLIENT_SECRET": "not-the-secret"},
    )
    assert result.returncode == 1
    assert "failed" in result.stdout and "authentication_failed" in result.stdout
    assert "not-the-secret" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    "args, env_change, message",
    [
        (["--tenant", "nope", "--selection", "all"], {}, "not a GUID"),
        (["--tenant", TENANT, "--selection", "nightly"], {}, "unknown selection"),
        (
            ["--tenant", TENANT, "--selection", "all"],
            {"GRAPH_CLIENT_SECRET": ""},
            "GRAPH_CLIENT_SECRET",
        ),
        (
            ["--tenant", TENANT, "--selection", "all"],
            {"GRAPH_BASE_URL": "ftp://x"},
            "GRAPH_BASE_URL",
        ),
    ],
)
def test_bad_input_is_one_clear_line(
    env: dict[str, str], args: list[str], env_change: dict[str, str], message: str
) -> None:
    cli("tenants", "add", TENANT, "--name", "Contoso", env=env)
    result = cli("sync", *args, env={**env, **env_change})
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_unregistered_tenant_is_refused(env: dict[str, str]) -> None:
    result = cli("sync", "--tenant", TENANT, "--selection", "all", env=env)
    assert result.returncode == 2 and "not registered" in result.stderr
