"""PostgreSQL instance storage (dagster-postgres) with the shipped `dagster.postgres.yaml`:
its limits are those of `dagster.yaml`, and a partition materializes with runs, events and
asset records stored in PostgreSQL."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
import yaml
from sqlalchemy import create_engine, select, text
from sqlalchemy.engine import make_url

from inventory_pipelines.assets import inventory_items, inventory_missing
from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.core.selection import get_selection
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.partitions import (
    SELECTION_DIMENSION,
    TENANT_DIMENSION,
    partition_key,
)
from inventory_pipelines.resources import GraphResource, InventoryDatabase
from inventory_pipelines.run_tags import TENANT_ID_TAG
from inventory_pipelines.simulator import SimulatorServer
from inventory_pipelines_tests.databases import TRUNCATE, create_database, drop_database

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "dagster.yaml"
SHIPPED_POSTGRES = REPO / "dagster.postgres.yaml"
TENANT = "0d000000-0000-4000-8000-0000000000d1"
TENANT_KEY = "postgres-instance"
SELECTION = "compliance"


def test_postgres_config_has_exactly_the_limits_of_the_default_config() -> None:
    default = yaml.safe_load(SHIPPED.read_text())
    postgres = yaml.safe_load(SHIPPED_POSTGRES.read_text())
    storage = postgres.pop("storage")
    assert postgres == default
    assert set(storage["postgres"]["postgres_db"]) >= {"hostname", "username", "db_name"}


@pytest.fixture
def instance_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for Dagster's instance storage."""
    url = create_database("dagster_instance")
    yield url
    drop_database(url)


@pytest.fixture
def postgres_instance(
    tmp_path: Path, instance_database: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """DAGSTER_HOME holding the shipped dagster.postgres.yaml, its env vars pointing at the
    fresh database."""
    parsed = make_url(instance_database)
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copyfile(SHIPPED_POSTGRES, home / "dagster.yaml")
    if parsed.port not in (None, 5432):
        # The shipped file pins the standard port; follow a test server elsewhere.
        config = yaml.safe_load((home / "dagster.yaml").read_text())
        config["storage"]["postgres"]["postgres_db"]["port"] = parsed.port
        (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    monkeypatch.setenv("DAGSTER_PG_HOST", parsed.host or "127.0.0.1")
    monkeypatch.setenv("DAGSTER_PG_USER", parsed.username or "postgres")
    monkeypatch.setenv("DAGSTER_PG_PASSWORD", parsed.password or "")
    monkeypatch.setenv("DAGSTER_PG_DB", parsed.database or "")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    instance = dg.DagsterInstance.get()
    try:
        yield instance
    finally:
        instance.dispose()


@pytest.mark.postgres
def test_materialize_stores_runs_and_events_in_postgres(
    postgres_instance: dg.DagsterInstance,
    instance_database: str,
    postgres_url: str,
    sim: SimulatorServer,
) -> None:
    instance = postgres_instance
    storage_data = instance.get_ref().storage_data
    assert storage_data is not None and storage_data.class_name == "DagsterPostgresStorage"
    limits = yaml.safe_load(SHIPPED.read_text())["concurrency"]
    concurrency = instance.get_concurrency_config()
    assert concurrency.run_queue_config is not None
    assert concurrency.run_queue_config.max_concurrent_runs == limits["runs"]["max_concurrent_runs"]
    assert [
        {"key": t["key"], "value": t.get("value"), "limit": t["limit"]}
        for t in concurrency.run_queue_config.tag_concurrency_limits
    ] == limits["runs"]["tag_concurrency_limits"]
    assert concurrency.pool_config.default_pool_limit == limits["pools"]["default_limit"]
    assert instance.event_log_storage.supports_global_concurrency_limits

    inventory = create_inventory_engine(postgres_url)
    with inventory.begin() as conn:
        conn.execute(text(TRUNCATE))
    add_tenant(inventory, TENANT, "Postgres instance test tenant", key=TENANT_KEY)
    sim.control.configure_tenant(TENANT, default_size=3)
    instance.add_dynamic_partitions(TENANT_DIMENSION, [TENANT_KEY])
    instance.add_dynamic_partitions(SELECTION_DIMENSION, [SELECTION])
    key = partition_key(TENANT_KEY, SELECTION)

    result = dg.materialize(
        [inventory_items, inventory_missing],
        partition_key=key,
        instance=instance,
        resources={
            "inventory_db": InventoryDatabase(url=postgres_url),
            "graph": GraphResource(
                client_id=sim.client_id,
                client_secret=sim.client_secret,
                base_url=sim.base_url,
                authority_url=sim.authority_url,
            ),
        },
    )

    assert result.success
    run_id = result.run_id
    materialized = {
        (event.asset_key.to_user_string(), event.partition)
        for event in (e.materialization for e in result.get_asset_materialization_events())
    }
    assert materialized == {("inventory_items", str(key)), ("inventory_missing", str(key))}

    # The events and asset records are rows in the PostgreSQL instance database.
    storage = create_engine(instance_database)
    with storage.connect() as conn:
        stored = conn.execute(
            text(
                "SELECT asset_key, partition FROM event_logs "
                "WHERE run_id = :run_id AND dagster_event_type = 'ASSET_MATERIALIZATION'"
            ),
            {"run_id": run_id},
        ).all()
        run_status = conn.execute(
            text("SELECT status FROM runs WHERE run_id = :run_id"), {"run_id": run_id}
        ).scalar_one()
        partitions = conn.execute(
            text("SELECT partitions_def_name, partition FROM dynamic_partitions")
        ).all()
    storage.dispose()
    assert sorted((k, p) for k, p in stored) == [
        ('["inventory_items"]', str(key)),
        ('["inventory_missing"]', str(key)),
    ]
    assert run_status == "SUCCESS"
    assert set(partitions) == {(TENANT_DIMENSION, TENANT_KEY), (SELECTION_DIMENSION, SELECTION)}

    # A second instance on the same configuration sees the same history.
    with dg.DagsterInstance.from_config(str(Path(instance.root_directory))) as reopened:
        run = reopened.get_run_by_id(run_id)
        assert run is not None and run.tags[TENANT_ID_TAG] == TENANT  # tagged at run start
        for asset in ("inventory_items", "inventory_missing"):
            assert reopened.get_materialized_partitions(dg.AssetKey(asset)) == {str(key)}
        assert reopened.get_dynamic_partitions(TENANT_DIMENSION) == [TENANT_KEY]

    # And the sync itself landed in the inventory, linked to the Dagster run.
    with inventory.connect() as conn:
        correlation = conn.execute(select(sync_runs.c.correlation_id)).scalars().all()
        item_count = conn.execute(
            select(text("count(*)"))
            .select_from(items_table)
            .where(items_table.c.tenant_id == TENANT)
        ).scalar_one()
    inventory.dispose()
    assert correlation == [run_id]
    assert item_count == sum(
        sim.control.item_count(TENANT, t) for t in get_selection(SELECTION).policy_types
    )
