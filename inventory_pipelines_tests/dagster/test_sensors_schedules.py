"""Sensor and schedule evaluated with build_*_context against a real instance and database."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import dagster as dg
from sqlalchemy import Engine

from inventory_pipelines.core.selection import load_selections
from inventory_pipelines.core.tenants import add_tenant, deactivate_tenant
from inventory_pipelines.definitions import defs
from inventory_pipelines.partitions import partition_key
from inventory_pipelines.resources import InventoryDatabase
from inventory_pipelines.run_tags import TENANT_ID_TAG, TENANT_KEY_TAG, TENANT_NAME_TAG
from inventory_pipelines.schedules import build_nightly_schedule
from inventory_pipelines.sensors import new_tenant_sensor
from inventory_pipelines_tests.dagster.fixtures import instance

__all__ = ["instance"]

A = "aaaaaaaa-1111-4111-8111-aaaaaaaaaaaa"
B = "bbbbbbbb-2222-4222-8222-bbbbbbbbbbbb"
A_KEY = "contoso"  # partitions are named by tenant key, a slug of the name by default
B_KEY = "fabrikam"
SELECTIONS = sorted(load_selections())


def tick(instance: dg.DagsterInstance, database_url: str, cursor: str | None) -> dg.SensorResult:
    with dg.build_sensor_context(
        instance=instance,
        cursor=cursor,
        resources={"inventory_db": InventoryDatabase(url=database_url)},
    ) as context:
        result = new_tenant_sensor(context)
    assert isinstance(result, dg.SensorResult)
    for request in result.dynamic_partitions_requests or []:  # what the daemon would apply
        assert isinstance(request, dg.AddDynamicPartitionsRequest)
        instance.add_dynamic_partitions(request.partitions_def_name, list(request.partition_keys))
    return result


def requested(result: dg.SensorResult) -> set[tuple[str, str]]:
    pairs = set()
    for request in result.run_requests or []:
        key = request.partition_key
        assert isinstance(key, dg.MultiPartitionKey)
        pairs.add((key.keys_by_dimension["tenant"], key.keys_by_dimension["selection"]))
    return pairs


def test_new_tenant_gets_partitions_and_first_syncs_exactly_once(
    instance: dg.DagsterInstance, engine: Engine, database_url: str
) -> None:
    add_tenant(engine, A, "Contoso")
    first = tick(instance, database_url, None)
    assert requested(first) == {(A_KEY, s) for s in SELECTIONS}
    assert instance.get_dynamic_partitions("tenant") == [A_KEY]
    assert sorted(instance.get_dynamic_partitions("selection")) == SELECTIONS
    run_keys = [r.run_key for r in first.run_requests or []]
    assert len(set(run_keys)) == len(run_keys) == len(SELECTIONS)

    second = tick(instance, database_url, first.cursor)
    assert requested(second) == set()

    add_tenant(engine, B, "Fabrikam")
    third = tick(instance, database_url, second.cursor)
    assert requested(third) == {(B_KEY, s) for s in SELECTIONS}
    assert sorted(instance.get_dynamic_partitions("tenant")) == [A_KEY, B_KEY]


def test_sensor_runs_are_tagged_with_key_name_and_id(
    instance: dg.DagsterInstance, engine: Engine, database_url: str
) -> None:
    add_tenant(engine, A, "Contoso Ltd.", key=A_KEY)
    result = tick(instance, database_url, None)
    assert result.run_requests
    for request in result.run_requests:
        assert request.tags[TENANT_KEY_TAG] == A_KEY
        assert request.tags[TENANT_NAME_TAG] == "Contoso Ltd."
        assert request.tags[TENANT_ID_TAG] == A
        assert A in (request.run_key or "")  # run keys stay on the GUID


def test_tenants_known_before_keys_get_their_key_partition_without_a_new_sync(
    instance: dg.DagsterInstance, engine: Engine, database_url: str
) -> None:
    add_tenant(engine, A, "Contoso")
    first = tick(instance, database_url, None)
    # An instance whose partitions were GUIDs: the cursor knows the tenant, the key is new.
    instance.delete_dynamic_partition("tenant", A_KEY)
    instance.add_dynamic_partitions("tenant", [A])
    again = tick(instance, database_url, first.cursor)
    assert requested(again) == set()
    assert sorted(instance.get_dynamic_partitions("tenant")) == sorted([A, A_KEY])


def test_deactivated_tenant_gets_nothing_and_reactivation_syncs_again(
    instance: dg.DagsterInstance, engine: Engine, database_url: str
) -> None:
    add_tenant(engine, A, "Contoso")
    add_tenant(engine, B, "Fabrikam")
    deactivate_tenant(engine, B)
    first = tick(instance, database_url, None)
    assert {t for t, _ in requested(first)} == {A_KEY}
    time.sleep(0.01)
    add_tenant(engine, B, "Fabrikam")  # re-activated
    second = tick(instance, database_url, first.cursor)
    assert requested(second) == {(B_KEY, s) for s in SELECTIONS}
    assert not (
        {r.run_key for r in second.run_requests or []}
        & {r.run_key for r in first.run_requests or []}
    )


def test_lost_cursor_still_requests_with_the_same_run_keys(
    instance: dg.DagsterInstance, engine: Engine, database_url: str
) -> None:
    add_tenant(engine, A, "Contoso")
    first = tick(instance, database_url, None)
    again = tick(instance, database_url, None)
    # The daemon drops requests whose run key it already launched: no duplicate first syncs.
    assert {r.run_key for r in again.run_requests or []} == {
        r.run_key for r in first.run_requests or []
    }


def test_nightly_schedule_requests_every_active_pair_once_per_tick(
    instance: dg.DagsterInstance, engine: Engine, database_url: str
) -> None:
    add_tenant(engine, A, "Contoso")
    add_tenant(engine, B, "Fabrikam")
    deactivate_tenant(engine, B)
    schedule = build_nightly_schedule("0 2 * * *")
    when = datetime(2026, 11, 27, 2, 0, tzinfo=UTC)

    def evaluate(at: datetime) -> list[dg.RunRequest]:
        with dg.build_schedule_context(
            instance=instance,
            scheduled_execution_time=at,
            repository_def=defs.get_repository_def(),
            resources={"inventory_db": InventoryDatabase(url=database_url)},
        ) as context:
            result = schedule.evaluate_tick(context)
        return list(result.run_requests or [])

    tonight = evaluate(when)
    # Registered even without the sensor.
    assert instance.get_dynamic_partitions("tenant") == [A_KEY]
    assert {r.partition_key for r in tonight} == {partition_key(A_KEY, s) for s in SELECTIONS}
    assert len({r.run_key for r in tonight}) == len(SELECTIONS)
    assert all(A in (r.run_key or "") for r in tonight)
    for request in tonight:
        assert request.tags["dagster/partition/tenant"] == A_KEY  # the run-queue limit's key
        assert request.tags[TENANT_KEY_TAG] == A_KEY and request.tags[TENANT_ID_TAG] == A
        assert request.tags[TENANT_NAME_TAG] == "Contoso"
    assert {r.run_key for r in evaluate(when)} == {r.run_key for r in tonight}  # idempotent tick
    tomorrow = evaluate(datetime(2026, 11, 28, 2, 0, tzinfo=UTC))
    assert not ({r.run_key for r in tomorrow} & {r.run_key for r in tonight})
    assert schedule.cron_schedule == "0 2 * * *" and schedule.execution_timezone == "UTC"
