"""The change feed's retention job: settings, schedule, and a real run against a database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from sqlalchemy import Engine, update

from inventory_pipelines.core.changes import read_changes
from inventory_pipelines.core.errors import ConfigurationError
from inventory_pipelines.core.schema import changes
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenancy import tenant_transaction
from inventory_pipelines.resources import InventoryDatabase
from inventory_pipelines.retention import (
    RETENTION_CRON,
    RETENTION_SETTING,
    RetentionSettings,
    build_retention_job,
)
from inventory_pipelines_tests.core.helpers import (
    TENANT_A,
    TENANT_B,
    items,
    register,
    selection,
    sync,
)

SEL = selection("compliance", "compliance_policies")


def test_retention_defaults_to_400_days_and_reads_the_setting() -> None:
    assert RetentionSettings.from_env({}).days == 400
    assert RetentionSettings.from_env({RETENTION_SETTING: " 30 "}).days == 30


@pytest.mark.parametrize("raw", ["0", "-5", "two weeks", "1.5"])
def test_bad_retention_fails_fast_naming_the_setting(raw: str) -> None:
    with pytest.raises(ConfigurationError, match=RETENTION_SETTING):
        RetentionSettings.from_env({RETENTION_SETTING: raw})


def test_schedule_runs_the_job_daily_in_utc() -> None:
    job, schedule = build_retention_job(RetentionSettings(days=10))
    assert schedule.cron_schedule == RETENTION_CRON and schedule.execution_timezone == "UTC"
    assert schedule.job_name == job.name == "inventory_changes_retention"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING


def _age(engine: Engine, tenant_id: str, days: int) -> None:
    with tenant_transaction(engine, tenant_id) as conn:
        conn.execute(
            update(changes)
            .where(changes.c.tenant_id == tenant_id)
            .values(occurred_at=datetime.now(UTC) - timedelta(days=days))
        )


def test_the_job_prunes_old_events_of_every_tenant(database_url: str, engine: Engine) -> None:
    register(engine, TENANT_A, TENANT_B)
    store = InventoryStore(engine)
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a1", "a2", "a3")})
    sync(store, TENANT_B, SEL, {"compliance_policies": items("b1")})
    _age(engine, TENANT_A, 31)
    _age(engine, TENANT_B, 29)
    sync(store, TENANT_A, SEL, {"compliance_policies": items("a1", "a4")})  # a4: recent
    job, _ = build_retention_job(RetentionSettings(days=30))
    result = job.execute_in_process(
        run_config={"ops": {"prune_inventory_changes": {"config": {"batch_size": 2}}}},
        resources={"inventory_db": InventoryDatabase(url=database_url)},
    )
    assert result.success
    [output] = [e for e in result.all_node_events if e.event_type_value == "STEP_OUTPUT"]
    metadata = {k: v.value for k, v in output.step_output_data.metadata.items()}
    assert metadata == {
        "events_deleted": 3,
        "tenants": 2,
        "retention_days": 30,
        "batch_size": 2,
    }
    assert [r["external_id"] for r in read_changes(engine, TENANT_A)] == ["a4"]
    assert [r["external_id"] for r in read_changes(engine, TENANT_B)] == ["b1"]
