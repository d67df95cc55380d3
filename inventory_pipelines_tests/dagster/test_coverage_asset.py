"""The coverage asset on a real instance, its freshness check, its settings, and the automation
throttle that keeps a wave of syncs from launching a coverage run each."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.test_utils import freeze_time  # the pinned release's own test clock
from sqlalchemy import Engine

from inventory_pipelines.assets import inventory_items, inventory_missing
from inventory_pipelines.core.errors import ConfigurationError
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.coverage_asset import (
    COVERAGE_FRESH_CHECK,
    CoverageSettings,
    build_coverage_asset,
    interval_cron,
)
from inventory_pipelines.partitions import partition_key
from inventory_pipelines.resources import GraphResource, InventoryDatabase
from inventory_pipelines_tests.core.helpers import (
    TENANT_A,
    TENANT_B,
    items,
    register,
    selection,
    sync,
)
from inventory_pipelines_tests.dagster.fixtures import instance

__all__ = ["instance"]  # fixtures

COVERAGE = dg.AssetKey("inventory_coverage")


def test_materialize_refreshes_the_table_and_warns_about_gaps(
    instance: dg.DagsterInstance, engine: Engine, database_url: str
) -> None:
    register(engine, TENANT_A, TENANT_B)
    store = InventoryStore(engine)
    compliance = selection("compliance", "compliance_policies", "compliance_scripts")
    sync(
        store,
        TENANT_A,
        compliance,
        {"compliance_policies": items("p1", "p2")},
        failed={"compliance_scripts": "forbidden"},
    )
    # Tenant B: authentication failed, nothing fetched.
    sync(
        store,
        TENANT_B,
        compliance,
        {},
        failed={t: "authentication_failed" for t in compliance.policy_types},
    )

    result = dg.materialize(
        [build_coverage_asset(CoverageSettings(max_age=timedelta(hours=1)))],
        instance=instance,
        resources={"inventory_db": InventoryDatabase(url=database_url)},
    )
    assert result.success
    [event] = result.asset_materializations_for_node("inventory_coverage")
    metadata = {k: v.value for k, v in event.metadata.items()}
    types = metadata["pairs"] // 2  # type: ignore[operator]
    assert metadata["tenants"] == 2 and types >= 40  # every type of the configured selections
    assert metadata["pairs_latest_complete"] == 1
    assert metadata["pairs_latest_failed"] == 3
    assert metadata["pairs_never_complete"] == 2 * types - 1
    assert metadata["tenants_needing_attention"] == 2
    table = event.metadata["needs_attention"]
    assert isinstance(table, dg.TableMetadataValue)
    assert {c.name for c in table.schema.columns} >= {"tenant_key", "policy_type", "latest_outcome"}
    outcomes = {
        (r.data["tenant_key"], r.data["policy_type"]): r.data["latest_outcome"]
        for r in table.records
    }
    assert outcomes[("tenant-1111", "compliance_scripts")] == "forbidden"
    assert outcomes[("tenant-2222", "compliance_policies")] == "authentication_failed"
    assert ("tenant-1111", "compliance_policies") not in outcomes
    assert "| tenant-2222 |" in str(metadata["matrix"])

    [check] = result.get_asset_check_evaluations()
    assert check.check_name == COVERAGE_FRESH_CHECK and check.passed is False
    assert check.severity == dg.AssetCheckSeverity.WARN
    details = str(check.metadata["details"].value)
    assert "tenant `tenant-2222`: no complete fetch of any type" in details
    assert "`tenant-1111` × `compliance_scripts`: never complete, latest forbidden" in details


def definitions(interval_minutes: int) -> dg.Definitions:
    coverage = build_coverage_asset(CoverageSettings(interval_minutes=interval_minutes))
    return dg.Definitions(
        assets=[inventory_items, inventory_missing, coverage],
        resources={
            "inventory_db": InventoryDatabase(url="sqlite://"),
            "graph": GraphResource(client_id="unused", client_secret="unused"),
        },
    )


class Daemon:
    """Automation ticks at chosen times, with materializations recorded at chosen times."""

    def __init__(self, instance: dg.DagsterInstance, defs: dg.Definitions) -> None:
        self.instance = instance
        self.defs = defs
        self.cursor: object = None
        instance.add_dynamic_partitions("tenant", ["contoso", "fabrikam"])
        instance.add_dynamic_partitions("selection", ["all", "compliance"])

    def sync(self, at: datetime, tenant: str, selection_name: str = "all") -> None:
        with freeze_time(at):
            self.instance.report_runless_asset_event(
                dg.AssetMaterialization(
                    "inventory_items", partition=str(partition_key(tenant, selection_name))
                )
            )

    def tick(self, at: datetime) -> int:
        with freeze_time(at):
            result = dg.evaluate_automation_conditions(
                defs=self.defs,
                instance=self.instance,
                asset_selection=dg.AssetSelection.assets(COVERAGE),
                evaluation_time=at,
                cursor=self.cursor,  # type: ignore[arg-type]
            )
        self.cursor = result.cursor
        return result.get_num_requested(COVERAGE)


def at(minute: int, second: int = 0) -> datetime:
    return datetime(2026, 3, 2, 2, 0, tzinfo=UTC) + timedelta(minutes=minute, seconds=second)


def test_syncs_within_the_interval_give_one_coverage_request(instance: dg.DagsterInstance) -> None:
    daemon = Daemon(instance, definitions(interval_minutes=5))
    assert daemon.tick(at(4, 50)) == 0  # first evaluation: nothing has happened yet
    daemon.sync(at(4, 55), "contoso")  # any partition of the syncs counts
    assert daemon.tick(at(5, 10)) == 1  # a 5-minute tick passed since coverage last ran
    daemon.sync(at(5, 20), "fabrikam")
    daemon.sync(at(5, 30), "contoso", "compliance")
    assert daemon.tick(at(5, 40)) == 0  # within the interval: held back
    assert daemon.tick(at(7, 0)) == 0
    assert daemon.tick(at(9, 59)) == 0
    assert daemon.tick(at(10, 5)) == 1  # after the interval: one run for all three syncs
    assert daemon.tick(at(15, 5)) == 0  # nothing synced since: nothing to do


def test_a_sync_seen_on_the_tick_after_a_request_is_not_lost(
    instance: dg.DagsterInstance,
) -> None:
    daemon = Daemon(instance, definitions(interval_minutes=5))
    daemon.tick(at(4, 50))
    daemon.sync(at(4, 55), "contoso")
    assert daemon.tick(at(5, 10)) == 1
    daemon.sync(at(5, 15), "fabrikam")  # may finish after the coverage run read its tenant
    assert daemon.tick(at(5, 25)) == 0
    assert daemon.tick(at(10, 5)) == 1


def test_the_interval_is_configurable(instance: dg.DagsterInstance) -> None:
    daemon = Daemon(instance, definitions(interval_minutes=15))
    daemon.tick(at(14, 50))
    daemon.sync(at(14, 55), "contoso")
    assert daemon.tick(at(15, 10)) == 1
    daemon.sync(at(16, 0), "contoso")
    assert daemon.tick(at(20, 5)) == 0  # a 5-minute tick is not enough
    assert daemon.tick(at(30, 5)) == 1


@pytest.mark.parametrize(
    "minutes, cron",
    [(1, "*/1 * * * *"), (5, "*/5 * * * *"), (60, "0 * * * *"), (120, "0 */2 * * *")],
)
def test_interval_crons(minutes: int, cron: str) -> None:
    assert interval_cron(minutes) == cron


def test_settings_from_the_environment() -> None:
    assert CoverageSettings.from_env({}) == CoverageSettings(5, timedelta(hours=26))
    custom = {
        "INVENTORY_COVERAGE_INTERVAL_MINUTES": "10",
        "INVENTORY_COVERAGE_MAX_AGE_HOURS": "49.5",
    }
    assert CoverageSettings.from_env(custom) == CoverageSettings(10, timedelta(hours=49.5))


@pytest.mark.parametrize(
    "env, message",
    [
        ({"INVENTORY_COVERAGE_INTERVAL_MINUTES": "7"}, "INVENTORY_COVERAGE_INTERVAL_MINUTES=7"),
        ({"INVENTORY_COVERAGE_INTERVAL_MINUTES": "0"}, "INVENTORY_COVERAGE_INTERVAL_MINUTES=0"),
        ({"INVENTORY_COVERAGE_INTERVAL_MINUTES": "5m"}, "is not a number"),
        ({"INVENTORY_COVERAGE_MAX_AGE_HOURS": "-1"}, "must be a positive number"),
        ({"INVENTORY_COVERAGE_MAX_AGE_HOURS": "a day"}, "INVENTORY_COVERAGE_MAX_AGE_HOURS"),
    ],
)
def test_bad_settings_fail_fast_naming_the_setting(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        CoverageSettings.from_env(env)
