"""The definitions load, and the shipped dagster.yaml is a valid instance config with the limits."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import yaml

from inventory_pipelines.assets import GRAPH_POOL, MISSING_SHARE_CHECK, SYNC_CHECK
from inventory_pipelines.coverage_asset import COVERAGE_FRESH_CHECK
from inventory_pipelines.definitions import defs
from inventory_pipelines.partitions import tenant_selection_partitions

REPO = Path(__file__).resolve().parents[2]


def test_definitions_load() -> None:
    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == {
        "inventory_items",
        "inventory_missing",
        "inventory_coverage",
    }
    assert repo.get_sensor_def("new_tenant_sensor").default_status == dg.DefaultSensorStatus.RUNNING
    automation = repo.get_sensor_def("inventory_automation_sensor")
    assert automation.default_status == dg.DefaultSensorStatus.RUNNING
    schedule = repo.get_schedule_def("nightly_inventory_refresh")
    assert schedule.execution_timezone == "UTC"
    assert repo.has_job("inventory_sync_job")
    assert repo.has_job("inventory_changes_retention")
    retention = repo.get_schedule_def("inventory_changes_retention_daily")
    assert retention.default_status == dg.DefaultScheduleStatus.RUNNING
    assert retention.execution_timezone == "UTC" and retention.job_name == (
        "inventory_changes_retention"
    )


def test_assets_share_the_partitions_and_declare_checks() -> None:
    items = defs.get_assets_def("inventory_items")
    missing = defs.get_assets_def("inventory_missing")
    assert items.partitions_def == missing.partitions_def == tenant_selection_partitions
    assert {c.name for c in items.check_specs} == {SYNC_CHECK}
    assert {c.name for c in missing.check_specs} == {MISSING_SHARE_CHECK}
    assert missing.automation_conditions_by_key[missing.key] is not None
    assert items.key in missing.asset_deps[missing.key]
    assert items.node_def.pool == GRAPH_POOL  # type: ignore[union-attr]


def test_coverage_is_unpartitioned_follows_every_sync_and_declares_its_check() -> None:
    items = defs.get_assets_def("inventory_items")
    coverage = defs.get_assets_def("inventory_coverage")
    assert coverage.partitions_def is None
    missing = defs.get_assets_def("inventory_missing")
    # Complete syncs materialize items; every sync, partial and failed too, brings missing.
    assert coverage.asset_deps[coverage.key] == {items.key, missing.key}
    assert {c.name for c in coverage.check_specs} == {COVERAGE_FRESH_CHECK}
    condition = coverage.automation_conditions_by_key[coverage.key]
    assert condition is not None and "at most every 5 min" in (condition.get_label() or "")


def test_shipped_dagster_yaml_is_a_valid_instance_config_with_the_limits() -> None:
    config = yaml.safe_load((REPO / "dagster.yaml").read_text())
    with dg.instance_for_test(overrides=config) as instance:
        concurrency = instance.get_concurrency_config()
    runs = config["concurrency"]["runs"]
    assert concurrency.run_queue_config.max_concurrent_runs == runs["max_concurrent_runs"]
    tenant_limit = {
        "key": "dagster/partition/tenant",
        "value": {"applyLimitPerUniqueValue": True},
        "limit": 1,
    }
    assert tenant_limit in concurrency.run_queue_config.tag_concurrency_limits
    assert concurrency.pool_config.pool_granularity.value == "run"
    assert (
        concurrency.pool_config.default_pool_limit
        == config["concurrency"]["pools"]["default_limit"]
    )


def test_workspace_points_at_the_definitions_module() -> None:
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    modules = [entry["python_module"]["module_name"] for entry in workspace["load_from"]]
    assert modules == ["inventory_pipelines.definitions"]


def test_dg_check_defs_loads_the_project(tmp_path: Path) -> None:
    """`dg check defs` (Dagster's current command line, `[tool.dg]` in pyproject.toml) finds
    the project and loads the same definitions, with no warning raised by our code."""
    dg_command = Path(sys.executable).with_name("dg")
    completed = subprocess.run(
        [str(dg_command), "check", "defs"],
        cwd=REPO,
        env={**os.environ, "DAGSTER_HOME": str(tmp_path), "PYTHONWARNINGS": "default"},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    output = completed.stdout + completed.stderr
    assert completed.returncode == 0, output
    assert "All definitions loaded successfully." in output
    ours = [
        line for line in output.splitlines() if "Warning" in line and "inventory_pipelines" in line
    ]
    assert ours == [], ours
