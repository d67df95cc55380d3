"""The change feed and coverage through the real stack (simulator, `dg dev`, daemon).

The sensor's first syncs record every item as `added`. Then, between backfills launched as
the UI does: policies are deleted, one edited and one re-created (deleted, and a new one made),
so the next sync records `changed` and `added` and the missing computation `went_missing`
(high); a type turns forbidden, so its items go missing as `type_not_fetched` (low) while the
deleted ones do not repeat, and coverage shows the type's failed attempt next to its last
complete fetch; the permission comes back, and its items are `returned`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster import DagsterRunStatus, RunsFilter
from sqlalchemy import Engine

from inventory_pipelines.core.changes import read_changes
from inventory_pipelines.core.coverage import read_coverage
from inventory_pipelines.core.selection import get_selection, load_selections
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.devstack import DevStack
from inventory_pipelines.partitions import partition_key
from inventory_pipelines.simulator import SimulatorControl
from inventory_pipelines_tests.stack_helpers import inventory_engine, launch_backfill, wait_for

__all__ = ["inventory_engine"]  # fixture

pytestmark = [pytest.mark.slow, pytest.mark.postgres]

TENANT = ("0e2e0000-0000-4000-8000-0000000000d1", "Changing Co")
PHASE_TIMEOUT = 300.0  # load-dependent: up to ~150 s beside the rest of the suite
FORBIDDEN = "scope_tags"


def _wait(condition: Callable[[], Any], what: str, stack: DevStack) -> Any:
    return wait_for(condition, what, stack, PHASE_TIMEOUT)


def test_backfills_after_edits_deletions_and_a_lost_permission_record_the_change_feed(
    tmp_path: Path, postgres_url: str, inventory_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    tenant_id = TENANT[0]
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(f'[tenants."{tenant_id}"]\nseed = 401\ndefault_size = 2\n')
    monkeypatch.setenv("INVENTORY_COVERAGE_INTERVAL_MINUTES", "1")  # coverage follows fast
    all_types = get_selection("all").policy_types
    stack = DevStack(
        state_dir=tmp_path,
        database_url=postgres_url,
        scenario=scenario,
        identity_rps=0,
        dequeue_interval_seconds=1,
    )
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(stack.stop)
        stack.start_simulator()
        control = cleanup.enter_context(SimulatorControl(stack.simulator_url))
        key = add_tenant(inventory_engine, tenant_id, TENANT[1])[0].tenant_key
        stack.start_dagster()
        instance = cleanup.enter_context(dg.DagsterInstance.from_config(str(stack.home)))
        partitions = {str(partition_key(key, s)) for s in load_selections()}
        everything = str(partition_key(key, "all"))

        def materialized(asset: str, key: str | None, after: float) -> bool:
            records = instance.fetch_materializations(dg.AssetKey(asset), limit=100).records
            return any(r.partition_key == key and r.timestamp > after for r in records)

        def truth() -> set[tuple[str, str]]:
            return {(t, i["id"]) for t in all_types for i in control.items(tenant_id, t)}

        def events(kind: str, run_id: int | None = None) -> set[tuple[str, str]]:
            rows = read_changes(inventory_engine, tenant_id, run_id=run_id)
            return {(r["policy_type"], r["external_id"]) for r in rows if r["event"] == kind}

        def backfill(title: str, complete: bool = True) -> tuple[int, float]:
            """One sync of (tenant, all) as the UI launches it; waits for it and for
            inventory_missing to follow; returns the sync run id and when the run ended.
            An incomplete sync fails its run and is observed, not materialized."""
            backfill_id = launch_backfill(stack, [everything], title)

            def done() -> dg.RunRecord | None:
                runs = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
                finished = [r for r in runs if r.dagster_run.is_finished]
                return finished[0] if finished else None

            run = _wait(done, f"the sync {title}", stack)
            expected = DagsterRunStatus.SUCCESS if complete else DagsterRunStatus.FAILURE
            assert run.dagster_run.status == expected, title
            assert run.start_time is not None and run.end_time is not None
            _wait(
                lambda: materialized("inventory_missing", everything, run.start_time),
                f"inventory_missing after the sync {title}",
                stack,
            )
            fetch = instance.fetch_materializations if complete else instance.fetch_observations
            [record] = [
                r
                for r in fetch(dg.AssetKey("inventory_items"), limit=100).records
                if r.run_id == run.dagster_run.run_id
            ]
            event = record.asset_materialization or record.asset_observation
            assert event is not None
            return int(event.metadata["sync_run_id"].value), run.end_time  # type: ignore[arg-type]

        # 1. First syncs by the sensor: every item is added, once, whatever selections saw it.
        _wait(
            lambda: all(materialized("inventory_missing", p, 0.0) for p in partitions),
            "first syncs and inventory_missing for every partition",
            stack,
        )
        first = truth()
        assert events("added") == first
        assert len(read_changes(inventory_engine, tenant_id)) == len(first)

        # 2. Deleted, edited and re-created policies: changed, added, went_missing (high).
        deleted = sorted(i["id"] for i in control.items(tenant_id, "compliance_policies"))[:1]
        control.delete_items(tenant_id, "compliance_policies", deleted)
        edited = sorted(i["id"] for i in control.items(tenant_id, "settings_catalog_policies"))[:1]
        control.modify_items(tenant_id, "settings_catalog_policies", edited)
        recreated = sorted(i["id"] for i in control.items(tenant_id, "device_configurations"))[:1]
        control.delete_items(tenant_id, "device_configurations", recreated)
        [new_id] = control.add_items(tenant_id, "device_configurations", 1)
        second, _ = backfill("after edits and deletions")
        assert events("changed", second) == {("settings_catalog_policies", edited[0])}
        assert events("added", second) == {("device_configurations", new_id)}
        went = [
            r for r in read_changes(inventory_engine, tenant_id) if r["event"] == "went_missing"
        ]
        assert {
            (r["policy_type"], r["external_id"], r["reason"], r["confidence"], r["sync_run_id"])
            for r in went
        } == {
            ("compliance_policies", deleted[0], "not_observed", "high", second),
            ("device_configurations", recreated[0], "not_observed", "high", second),
        }
        assert {r["selection_hash"] for r in went} == {get_selection("all").hash}

        # 3. Scope tags forbidden: their items go missing, low; the deleted do not repeat.
        control.set_faults(
            tenant_id,
            [{"kind": "status", "status": 403, "code": "Forbidden", "policy_type": FORBIDDEN}],
        )
        tags = {(FORBIDDEN, i["id"]) for i in control.items(tenant_id, FORBIDDEN)}
        assert tags
        third, ended = backfill("after scope tags were forbidden", complete=False)
        went = [
            r for r in read_changes(inventory_engine, tenant_id) if r["event"] == "went_missing"
        ]
        assert len(went) == 2 + len(tags)
        assert {
            (r["policy_type"], r["external_id"], r["reason"], r["confidence"])
            for r in went
            if r["sync_run_id"] == third
        } == {(t, i, "type_not_fetched", "low") for t, i in tags}
        _wait(
            lambda: materialized("inventory_coverage", None, ended),
            "inventory_coverage after the partial sync",
            stack,
        )
        coverage = {r["policy_type"]: r for r in read_coverage(inventory_engine)}
        assert coverage[FORBIDDEN]["latest_outcome"] == "forbidden"
        assert coverage[FORBIDDEN]["latest_run_id"] == third
        assert coverage[FORBIDDEN]["last_complete_run_id"] == second
        assert coverage["compliance_policies"]["latest_outcome"] == "complete"
        assert coverage["compliance_policies"]["last_complete_run_id"] == third
        assert coverage["compliance_policies"]["item_count"] == control.item_count(
            tenant_id, "compliance_policies"
        )

        # 4. The permission is back: the scope tags return, and nothing else happens.
        control.clear_faults(tenant_id)
        fourth, _ = backfill("after the permission came back")
        assert {
            (r["event"], r["policy_type"], r["external_id"])
            for r in read_changes(inventory_engine, tenant_id, run_id=fourth)
        } == {("returned", t, i) for t, i in tags}
