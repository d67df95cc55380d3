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


def test_sync_and_missing_by_tenant_key(env: dict[str, str]) -> None:
    added = cli("tenants", "add", TENANT, "--name", "Contoso", "--key", "contoso", env=env)
    assert added.returncode == 0, added.stderr
    synced = cli("sync", "--tenant", "contoso", "--selection", "compliance", "--json", env=env)
    assert synced.returncode == 0, synced.stderr
    assert json.loads(synced.stdout)["tenant_id"] == TENANT
    missing = cli("missing", "--tenant", "contoso", "--selection", "compliance", env=env)
    assert missing.returncode == 0 and "0 missing, confidence high" in missing.stdout


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
        (["--tenant", "nope", "--selection", "all"], {}, "'nope' is not registered"),
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


def stored_state(database_url: str) -> list[tuple[object, ...]]:
    from sqlalchemy import select

    from inventory_pipelines.core.database import create_inventory_engine
    from inventory_pipelines.core.schema import items, tenants

    engine = create_inventory_engine(database_url)
    with engine.connect() as conn:
        rows = conn.execute(select(items).order_by(items.c.id)).all()
        rows += conn.execute(select(tenants)).all()
    engine.dispose()
    return [tuple(r) for r in rows]


def test_unreachable_graph_fails_clearly_and_changes_no_inventory(
    env: dict[str, str], database_url: str
) -> None:
    cli("tenants", "add", TENANT, "--name", "Contoso", env=env)
    assert cli("sync", "--tenant", TENANT, "--selection", "compliance", env=env).returncode == 0
    before = stored_state(database_url)
    closed = "http://127.0.0.1:9"  # discard port: nothing listens
    result = cli(
        "sync",
        "--tenant",
        TENANT,
        "--selection",
        "compliance",
        env={**env, "GRAPH_BASE_URL": closed, "GRAPH_AUTHORITY_URL": closed},
    )
    assert result.returncode == 1
    assert "failed" in result.stdout and "network_error" in result.stdout
    assert stored_state(database_url) == before


@pytest.mark.parametrize(
    "args, message",
    [
        (["tenants", "add", "not-a-guid", "--name", "X"], "not a GUID"),
        (["tenants", "deactivate", "11111111-2222-4333-8444-555555555555"], "not registered"),
        (["selection-hash", '{"policy_types": ["compliance_policies", "nope"]}'], "nope"),
        (["selection-hash", "[]"], "JSON object"),
        (["missing", "--tenant", "bad", "--selection", "all"], "'bad' is not registered"),
        (["missing", "--tenant", TENANT, "--selection", "nope"], "unknown selection"),
    ],
)
def test_bad_input_changes_nothing_stored(
    env: dict[str, str], database_url: str, args: list[str], message: str
) -> None:
    from inventory_pipelines.core.database import create_inventory_engine
    from inventory_pipelines.core.tenants import add_tenant

    add_tenant(create_inventory_engine(database_url), TENANT, "Contoso")
    before = stored_state(database_url)
    result = cli(*args, env=env)
    assert result.returncode == 2 and message in result.stderr
    assert "Traceback" not in result.stderr
    assert stored_state(database_url) == before


def test_unreachable_database_is_named(env: dict[str, str]) -> None:
    bad = {**env, "INVENTORY_DATABASE_URL": "postgresql+psycopg2://nobody:pw@127.0.0.1:9/x"}
    result = cli("sync", "--tenant", TENANT, "--selection", "compliance", env=bad)
    assert result.returncode == 2
    assert "INVENTORY_DATABASE_URL" in result.stderr and "pw" not in result.stderr
