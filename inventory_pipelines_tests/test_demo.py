"""`make demo`: its story against the real simulator and database, its throttled tenant under
the client's real retry policy, and a clean stop when its process group gets SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.migrations import upgrade
from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.selection import get_selection
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.demo import SCENARIO, DemoError, _check_scenario, _reset_state_dir
from inventory_pipelines.demo_story import (
    DEMO_TENANTS,
    POLICY_READ_ALL_TYPES,
    DemoStory,
    DemoTenant,
)
from inventory_pipelines.devstack import REPO_ROOT, _group_members, free_port
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.retry import RetryPolicy
from inventory_pipelines.graph.sync import SyncSummary, sync_partition
from inventory_pipelines.simulator import (
    SimulatorControl,
    SimulatorServer,
)
from inventory_pipelines.simulator.scenario import load_scenario
from inventory_pipelines_tests.simulator_fixtures import simulator_settings

FAST_RETRY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.05, max_total_wait=2.0)
BY_KEY = {tenant.key: tenant for tenant in DEMO_TENANTS}


def configure_demo_tenants(control: SimulatorControl) -> None:
    """The demo scenario's data and faults, applied to the test simulator."""
    for tenant_id, settings in load_scenario(SCENARIO)["tenants"].items():
        control.configure_tenant(
            tenant_id,
            seed=settings.get("seed"),
            default_size=settings.get("default_size"),
            sizes=settings.get("sizes"),
        )
        control.set_faults(tenant_id, settings.get("faults", []))


@pytest.fixture
def client(sim: SimulatorServer) -> Iterator[GraphClient]:
    configure_demo_tenants(sim.control)
    with GraphClient(
        simulator_settings(sim), retry=FAST_RETRY, identity_requests_per_second=0
    ) as graph:
        yield graph


def register(engine: Engine, *tenants: DemoTenant) -> InventoryStore:
    for tenant in tenants:
        add_tenant(engine, tenant.tenant_id, tenant.name)
    return InventoryStore(engine)


def ids(sim: SimulatorServer, tenant: DemoTenant, policy_type: str) -> set[str]:
    return {item["id"] for item in sim.control.items(tenant.tenant_id, policy_type)}


def test_scenario_and_tenants_agree() -> None:
    _check_scenario()
    keys = [tenant.key for tenant in DEMO_TENANTS]
    assert keys == ["contoso", "fabrikam", "northwind", "litware"]
    assert len({tenant.tenant_id for tenant in DEMO_TENANTS}) == len(DEMO_TENANTS)


def test_state_dir_is_emptied_but_a_foreign_one_is_refused(tmp_path: Path) -> None:
    former = tmp_path / "demo"
    (former / "logs").mkdir(parents=True)
    (former / "inventory.db").write_text("old")
    _reset_state_dir(former)
    assert former.is_dir() and not any(former.iterdir())

    foreign = tmp_path / "home"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("keep me")
    with pytest.raises(DemoError, match=r"thesis\.tex"):
        _reset_state_dir(foreign)
    assert (foreign / "thesis.tex").read_text() == "keep me"


def test_deletions_wait_for_every_first_sync_and_show_as_high_confidence_missing(
    engine: Engine, sim: SimulatorServer, client: GraphClient
) -> None:
    contoso = BY_KEY["contoso"]
    store = register(engine, contoso)
    lines: list[str] = []
    story = DemoStory(
        engine, sim.control, [contoso], ["compliance", "configuration"], say=lines.append
    )
    catalog_before = ids(sim, contoso, "settings_catalog_policies")
    compliance_before = ids(sim, contoso, "compliance_policies")

    assert story.poll() == []  # nothing synced yet
    sync_partition(store, client, contoso.tenant_id, get_selection("compliance"))
    assert story.poll() == []  # configuration has not synced yet
    during: list[list[DemoTenant]] = []
    sync_partition(
        store,
        client,
        contoso.tenant_id,
        get_selection("configuration"),
        on_type_done=lambda _: during.append(story.poll()),
    )
    assert during and all(applied == [] for applied in during)  # never in the middle of a sync
    assert story.poll() == [contoso] and story.done
    assert len(lines) == 1
    assert "deleted 5 settings catalog policies and 3 compliance policies" in lines[0]
    assert "edited 4 device configuration profiles" in lines[0]
    assert story.poll() == []  # once only

    gone_catalog = catalog_before - ids(sim, contoso, "settings_catalog_policies")
    gone_compliance = compliance_before - ids(sim, contoso, "compliance_policies")
    assert (len(gone_catalog), len(gone_compliance)) == (5, 3)
    for name, expected, edited in (("configuration", 5, 4), ("compliance", 3, 0)):
        selection = get_selection(name)
        summary = sync_partition(store, client, contoso.tenant_id, selection)
        assert summary.status == "success"
        assert summary.changes == {"added": 0, "changed": edited, "returned": 0}
        result = compute_missing(engine, contoso.tenant_id, selection)
        assert (result.missing_count, result.confidence) == (expected, "high")
        assert result.by_reason == {"not_observed": expected}
        assert result.went_missing == expected


def test_lost_permission_and_revoked_consent_mark_missing_low(
    engine: Engine, sim: SimulatorServer, client: GraphClient
) -> None:
    northwind, litware = BY_KEY["northwind"], BY_KEY["litware"]
    store = register(engine, northwind, litware)
    names = ["compliance", "conditional_access"]
    lines: list[str] = []
    story = DemoStory(engine, sim.control, [northwind, litware], names, say=lines.append)
    for tenant in (northwind, litware):
        for name in names:
            first = sync_partition(store, client, tenant.tenant_id, get_selection(name))
            assert first.status == "success"
    assert {t.key for t in story.poll()} == {"northwind", "litware"} and len(lines) == 2

    conditional_access = get_selection("conditional_access")
    after = sync_partition(store, client, northwind.tenant_id, conditional_access)
    assert after.status == "partial"
    result = compute_missing(engine, northwind.tenant_id, conditional_access)
    forbidden = sum(len(ids(sim, northwind, t)) for t in POLICY_READ_ALL_TYPES)
    assert forbidden > 0
    assert result.confidence == "low"
    assert result.by_reason == {"type_not_fetched": forbidden}
    assert set(result.by_policy_type) <= set(POLICY_READ_ALL_TYPES)
    compliance = get_selection("compliance")
    assert sync_partition(store, client, northwind.tenant_id, compliance).status == "success"
    assert compute_missing(engine, northwind.tenant_id, compliance).missing_count == 0

    failed = sync_partition(store, client, litware.tenant_id, compliance)
    assert failed.status == "failed" and "authentication_failed" in failed.error_codes
    result = compute_missing(engine, litware.tenant_id, compliance)
    assert result.confidence == "low"
    assert result.by_reason == {"type_not_fetched": result.missing_count}
    assert result.missing_count == sum(len(ids(sim, litware, t)) for t in compliance.policy_types)


def throttling(summary: SyncSummary) -> tuple[int, float]:
    types = summary.types.values()
    return sum(t.retries for t in types), sum(t.throttle_wait_seconds for t in types)


@pytest.mark.slow
def test_fabrikam_is_throttled_on_every_sync_and_every_sync_succeeds(
    sim: SimulatorServer, tmp_path: Path
) -> None:
    """With the client's real retry policy and identity pacing, as in the demo."""
    configure_demo_tenants(sim.control)
    sim.control.set_options(identity_requests_per_second=1)
    fabrikam = BY_KEY["fabrikam"]
    url = f"sqlite:///{tmp_path / 'inventory.db'}"
    engine = create_inventory_engine(url)
    upgrade(engine)
    store = register(engine, fabrikam)
    names = ["all", "apps", "compliance", "conditional_access", "configuration", "all"]
    # conditional_access holds none of Fabrikam's rate-limited types (only identity pacing).
    throttled = {"all", "apps", "compliance", "configuration"}
    try:
        for name in names:
            with GraphClient(simulator_settings(sim), retry=RetryPolicy()) as graph:
                summary = sync_partition(store, graph, fabrikam.tenant_id, get_selection(name))
            retries, waited = throttling(summary)
            assert summary.status == "success", (name, summary.error_codes)
            assert (retries > 0 and waited > 0) is (name in throttled), name
            assert summary.duration_seconds < 60, name
    finally:
        engine.dispose()


# -- the demo process --------------------------------------------------------------------


def processes_with(marker: str) -> list[int]:
    """Live processes whose environment holds `marker` (this test's own state directory)."""
    found = []
    needle = marker.encode()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for(probe: Callable[[], bool], timeout: float, what: str, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while not probe():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}; demo output:\n{log.read_text()}")
        time.sleep(0.5)


def ui_answers(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/server_info", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds leftover processes in /proc")
@pytest.mark.parametrize("moment", ["running", "starting"])
def test_sigterm_to_the_process_group_stops_the_demo_cleanly(tmp_path: Path, moment: str) -> None:
    """`kill -TERM -<pgid>` (a supervisor, or Ctrl-C's SIGINT from a terminal) while the
    demo runs or while Dagster is still starting: exit 0, no traceback, nothing left."""
    state_dir = tmp_path / "demo"
    ui_port = free_port()
    env = {
        **os.environ,
        "DEMO_PORT": str(ui_port),
        "DEMO_SIMULATOR_PORT": str(free_port()),
        "DEMO_STATE_DIR": str(state_dir),
    }
    marker = f"DEMO_STATE_DIR={state_dir}"
    log = tmp_path / "demo.out"
    with log.open("wb") as out:
        demo = subprocess.Popen(
            [sys.executable, "-m", "inventory_pipelines.demo"],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        if moment == "running":
            wait_for(
                lambda: "Ctrl-C stops everything" in log.read_text() and ui_answers(ui_port),
                240,
                "the demo's UI",
                log,
            )
        else:
            wait_for(lambda: "starting Dagster" in log.read_text(), 120, "Dagster to start", log)
        assert demo.poll() is None, log.read_text()
        assert len(processes_with(marker)) > 1  # the services are up (or coming up)

        os.killpg(demo.pid, signal.SIGTERM)
        os.kill(demo.pid, signal.SIGTERM)  # `make demo` forwards one of its own
        returncode = demo.wait(timeout=120)
        output = log.read_text()
        assert returncode == 0, output
        assert "Traceback" not in output, output
        assert "stopped; state kept in" in output, output
        if moment == "running":
            # Started with Dagster's current command line, and nothing of ours warns.
            dagster_log = (state_dir / "logs" / "dagster.log").read_text()
            for noise in (
                "SupersessionWarning",
                "DeprecationWarning",
                "dagster dev",
                "Found a dagster instance configuration value",
                "virtual environment does not match",
            ):
                assert noise not in output + dagster_log, noise
        assert _group_members(demo.pid) == []
        wait_for(lambda: not processes_with(marker), 10, "every demo process to exit", log)
    finally:
        if demo.poll() is None:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait()
        for pid in processes_with(marker):
            os.kill(pid, signal.SIGKILL)
