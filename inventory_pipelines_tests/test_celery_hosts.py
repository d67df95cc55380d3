"""Scale-out on Dagster's Celery run launcher (`dagster.celery.yaml`): runs execute on workers in
two other "hosts" that share one Dagster instance database, and the run queue's limits hold.

Each host is a network namespace with a veth pair; PostgreSQL, RabbitMQ and the Graph simulator
listen on the root namespace's loopback and are reached through a relay on the pair's address
(`inventory_pipelines.celery_stack`). The daemon, webserver and code server (`dg dev`) run
in the root namespace; one `dagster-celery worker` runs in each namespace with its own
DAGSTER_HOME. Each worker records what it ran, in which process and namespace
(`celery_journal`).

1. Syncs of 3 tenants × 2 selections are launched through GraphQL: every run succeeds, both
   namespaces executed runs, no two runs of one tenant overlapped (while runs of different
   tenants did: the simulator holds Graph requests until all three tenants' first syncs wait
   together, more than one worker can run), and the inventory in PostgreSQL equals the
   simulator's ground truth.
2. The process running a sync on one worker is killed (SIGKILL), then the rest of that worker:
   Celery reports the task lost, run monitoring marks the run failed, the sync lock it held is
   taken over once its lease expired, and a re-execution succeeds on the other worker.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster import DagsterRunStatus, RunRecord, RunsFilter
from dagster._core.events import ComputeLogsCaptureData
from sqlalchemy import Engine, create_engine, select, text
from sqlalchemy.engine import make_url

from inventory_pipelines.celery_stack import (
    CeleryDevStack,
    CeleryHosts,
    WorkerHost,
    namespace_of,
)
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.schema import sync_runs
from inventory_pipelines.core.selection import load_selections
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.devstack import CODE_LOCATION as LOCATION
from inventory_pipelines.devstack import REPOSITORY, free_port, graphql, launch_partition_run
from inventory_pipelines.partitions import SELECTION_DIMENSION, TENANT_DIMENSION
from inventory_pipelines.simulator import SimulatorControl
from inventory_pipelines_tests.celery_journal import (
    JOURNAL_DIR_SETTING,
    JournalEntry,
    read_journal,
)
from inventory_pipelines_tests.conftest import CELERY_HOSTS_PROBLEM_KEY, running_in_ci
from inventory_pipelines_tests.databases import admin_url, create_database, drop_database
from inventory_pipelines_tests.stack_helpers import inventory_engine
from inventory_pipelines_tests.test_end_to_end import max_overlap

__all__ = ["inventory_engine"]  # fixture

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.celery]

TENANT_TAG = f"dagster/partition/{TENANT_DIMENSION}"
TENANTS = {  # tenant id -> key; every key syncs every selection below
    "0ce10000-0000-4000-8000-00000000000a": "celery-adatum",
    "0ce10000-0000-4000-8000-00000000000b": "celery-bellows",
    "0ce10000-0000-4000-8000-00000000000c": "celery-contoso",
}
SELECTIONS = ("compliance", "configuration")
KILLED_TENANT = ("0ce10000-0000-4000-8000-00000000000d", "celery-dunmore")
KILLED_SELECTION = "compliance"
KILLED_LATENCY_MS = 3000
"""The run to kill is still syncing when it is killed: its 7 rounds of Graph requests behind
3 s each leave far more than the moments the kill takes."""
RENDEZVOUS_TIMEOUT_MS = 120_000
TEST_LEASE_SECONDS = 5
"""The sync lease of the run that is killed and of its re-execution (production: 10 minutes)."""
MONITORING_POLL_SECONDS = 2
"""Run monitoring's poll in this test (shipped: 30 s): how fast a lost run is marked failed."""
WORKER_CONCURRENCY = 2
"""Runs each worker executes at once: the three syncs the rendezvous holds together need both."""
PHASE_TIMEOUT = 150.0
TEST_TIMEOUT = 420.0

REEXECUTE = """
mutation($params: ReexecutionParams!) {
  launchRunReexecution(reexecutionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
ADD_PARTITION = """
mutation($name: String!, $key: String!, $location: String!, $repository: String!) {
  addDynamicPartition(partitionsDefName: $name, partitionKey: $key,
    repositorySelector: {repositoryLocationName: $location, repositoryName: $repository}) {
    __typename
  }
}
"""
SENSOR = """
query($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) { __typename ... on Sensor { id } }
}
"""
STOP_SENSOR = "mutation($id: String!) { stopSensor(id: $id) { __typename } }"


@pytest.fixture
def celery_prerequisites(request: pytest.FixtureRequest) -> None:
    """RabbitMQ and network namespaces: a failure under CI=true, a loud skip elsewhere."""
    problem = request.config.stash.get(CELERY_HOSTS_PROBLEM_KEY, None)
    if problem is None:
        return
    if running_in_ci():
        pytest.fail(f"CI=true but the Celery worker hosts cannot run: {problem} (see .ci/run)")
    pytest.skip(f"CELERY WORKER HOSTS NOT TESTED: {problem}")


def _scenario() -> str:
    """Small tenants (settings catalogs of several pages). The rendezvous holds Graph requests
    until the first syncs of all three tenants wait together: three runs at once, on workers of
    two processes each, so both workers run syncs and runs of different tenants overlap
    however loaded the machine is (if they cannot, the rendezvous times out and the test fails
    on it)."""
    lines = []
    for index, tenant_id in enumerate(TENANTS):
        lines += [
            f'[tenants."{tenant_id}"]',
            f"seed = {300 + index}",
            "default_size = 2",
            "sizes = { settings_catalog_policies = 300, settings_catalog_compliance = 150 }",
            "",
        ]
    lines += [
        f'[tenants."{KILLED_TENANT[0]}"]',
        "seed = 399",
        "default_size = 2",
        "sizes = { settings_catalog_compliance = 600 }",
        f'faults = [{{ kind = "latency", ms = {KILLED_LATENCY_MS} }}]',
        "",
        '[tenants."*"]',
        f'faults = [{{ kind = "rendezvous", tenants = {len(TENANTS)}, '
        f"timeout_ms = {RENDEZVOUS_TIMEOUT_MS} }}]",
        "",
    ]
    return "\n".join(lines)


class Clock:
    """Bounded waits: each phase at most PHASE_TIMEOUT, never past the test's deadline."""

    def __init__(self, checks: Iterable[Callable[[], None]]) -> None:
        self.deadline = time.monotonic() + TEST_TIMEOUT
        self.checks = list(checks)

    def wait(self, condition: Callable[[], bool], what: str, interval: float = 0.5) -> None:
        timeout = min(PHASE_TIMEOUT, self.deadline - time.monotonic())
        deadline = time.monotonic() + timeout
        while not condition():
            for check in self.checks:
                check()
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
            time.sleep(interval)


def _stop_sensors(url: str) -> None:
    """Only the runs this test launches use the queue (no first syncs, no automation)."""
    for name in ("new_tenant_sensor", "inventory_automation_sensor"):
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": name,
        }
        sensor = graphql(url, SENSOR, {"selector": selector})["sensorOrError"]
        assert sensor["__typename"] == "Sensor", sensor
        graphql(url, STOP_SENSOR, {"id": sensor["id"]})


def _add_partitions(url: str, dimension: str, keys: Iterable[str]) -> None:
    for key in keys:
        graphql(
            url,
            ADD_PARTITION,
            {"name": dimension, "key": key, "location": LOCATION, "repository": REPOSITORY},
        )


def _records(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> list[RunRecord]:
    return list(instance.get_run_records(filters=RunsFilter(run_ids=list(run_ids))))


def _finished(instance: dg.DagsterInstance, run_ids: Iterable[str]) -> bool:
    ids = list(run_ids)
    records = _records(instance, ids)
    return len(records) == len(ids) and all(r.dagster_run.is_finished for r in records)


def _starts(journal: Path) -> dict[str, JournalEntry]:
    """Where each run's task started, by run id (the worker's own record)."""
    return {e.run_id: e for e in read_journal(journal) if e.event == "start" and e.run_id}


def _sync_rows(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        return list(
            conn.execute(
                select(
                    sync_runs.c.tenant_id,
                    sync_runs.c.selection_name,
                    sync_runs.c.status,
                    sync_runs.c.error_codes,
                    sync_runs.c.correlation_id,
                    sync_runs.c.started_at,
                    sync_runs.c.finished_at,
                ).order_by(sync_runs.c.id)
            ).all()
        )


def _heartbeat_age(engine: Engine, correlation_id: str) -> float:
    """Seconds since the sync run of a Dagster run last heartbeat, by the database's clock
    (the clock the lease is judged by)."""
    with engine.connect() as conn:
        age = conn.execute(
            select(text("EXTRACT(EPOCH FROM (now() - heartbeat_at))"))
            .select_from(sync_runs)
            .where(sync_runs.c.correlation_id == correlation_id)
        ).scalar_one()
    return float(age)


def _database_exists(url: str) -> bool:
    admin = create_engine(admin_url())
    try:
        with admin.connect() as conn:
            return bool(
                conn.execute(
                    text("SELECT 1 FROM pg_database WHERE datname = :name"),
                    {"name": make_url(url).database},
                ).first()
            )
    finally:
        admin.dispose()


def _namespaces() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _vhosts() -> set[str]:
    out = subprocess.run(
        ["rabbitmqctl", "-q", "list_vhosts", "name"], capture_output=True, text=True
    ).stdout
    return {line.strip() for line in out.splitlines() if line.strip()}


@contextlib.contextmanager
def _environment(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, str]) -> Iterator[None]:
    """The root namespace's settings in this process too, to read the instance."""
    with monkeypatch.context() as patch:
        for key, value in env.items():
            patch.setenv(key, value)
        yield


def test_runs_on_celery_workers_in_two_network_namespaces(
    celery_prerequisites: None,
    tmp_path: Path,
    postgres_url: str,
    inventory_engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    began = time.monotonic()
    journal = tmp_path / "journal"
    journal.mkdir()
    scenario = tmp_path / "scenario.toml"
    scenario.write_text(_scenario())
    instance_database = create_database("dagster_celery")
    started: list[Any] = []  # every service, to prove afterwards that none is left
    hosts = CeleryHosts(
        state_dir=tmp_path,
        instance_database_url=instance_database,
        inventory_database_url=postgres_url,
        simulator_port=free_port(),
        host_count=2,
        worker_concurrency=WORKER_CONCURRENCY,
        instance_overrides={"run_monitoring": {"poll_interval_seconds": MONITORING_POLL_SECONDS}},
        worker_includes=("inventory_pipelines_tests.celery_journal",),
        worker_environment={JOURNAL_DIR_SETTING: str(journal)},
    )
    timings: dict[str, float] = {}
    with contextlib.ExitStack() as cleanup:
        cleanup.callback(drop_database, instance_database)  # runs last
        cleanup.callback(hosts.stop)
        hosts.start()
        names = {h.name for h in hosts.hosts}
        vhost = hosts.vhost
        inodes = {h.name: h.inode() for h in hosts.hosts}
        stack = CeleryDevStack(
            state_dir=tmp_path,
            database_url=postgres_url,
            scenario=scenario,
            identity_rps=0,
            simulator_port=hosts.simulator_port,
            dagster_yaml=hosts.root_instance_yaml(),
            extra_environment=hosts.root_environment(),
        )
        cleanup.callback(stack.stop)  # runs before hosts.stop: Dagster first
        cleanup.enter_context(_environment(monkeypatch, hosts.root_environment()))
        stack.start_simulator()
        for host in hosts.hosts:
            hosts.start_worker(host)
        stack.start_dagster()
        clock = Clock([stack.check_alive, hosts.check_alive])
        hosts.wait_for_workers(timeout=PHASE_TIMEOUT)
        started = [*stack.services, *(w.service for w in hosts.workers), *hosts.relays]
        instance = cleanup.enter_context(dg.DagsterInstance.from_config(str(stack.home)))
        assert type(instance.run_launcher).__name__ == "CeleryRunLauncher"
        url = stack.dagster_url
        _stop_sensors(url)
        all_tenants = {**TENANTS, KILLED_TENANT[0]: KILLED_TENANT[1]}
        for tenant_id, key in all_tenants.items():
            add_tenant(inventory_engine, tenant_id, key.title(), key=key)
        _add_partitions(url, TENANT_DIMENSION, all_tenants.values())
        _add_partitions(url, SELECTION_DIMENSION, SELECTIONS)
        timings["stack_ready"] = time.monotonic() - began

        # 1. Six syncs through the run queue, onto the two workers.
        run_ids = [
            launch_partition_run(url, key, selection, {})
            for key in TENANTS.values()
            for selection in SELECTIONS
        ]
        clock.wait(lambda: _finished(instance, run_ids), "the syncs of 3 tenants × 2 selections")
        records = _records(instance, run_ids)
        timings["syncs"] = time.monotonic() - began
        with SimulatorControl(stack.simulator_url) as control:
            (rendezvous,) = [f for f in control.faults("*") if f["kind"] == "rendezvous"]
        assert rendezvous["met"], f"the three tenants' syncs never ran at once: {rendezvous}"
        _assert_runs_succeeded(records)
        _assert_ran_on_both_hosts(records, journal, hosts.hosts, inodes)
        _assert_tenant_limit_held(records, inventory_engine)
        _assert_compute_logs_shared(instance, hosts, run_ids[0])

        # 2. Kill the worker running a sync: first the run's process, then the rest of it.
        lease = {"resources": {"inventory_db": {"config": {"lease_seconds": TEST_LEASE_SECONDS}}}}
        killed_run = launch_partition_run(url, KILLED_TENANT[1], KILLED_SELECTION, lease)

        def syncing() -> bool:
            rows = [r for r in _sync_rows(inventory_engine) if r.correlation_id == killed_run]
            return killed_run in _starts(journal) and [r.status for r in rows] == ["running"]

        clock.wait(syncing, f"run {killed_run} to hold its sync lock on a worker")
        entry = _starts(journal)[killed_run]
        [victim] = [w for w in hosts.workers if w.node_name == entry.node]
        [survivor] = [w for w in hosts.workers if w is not victim]
        assert namespace_of(entry.pid) == inodes[victim.host.name] == entry.netns
        os.kill(entry.pid, signal.SIGKILL)
        clock.wait(
            lambda: _finished(instance, [killed_run]), f"run monitoring to end run {killed_run}"
        )
        [killed] = _records(instance, [killed_run])
        assert killed.dagster_run.status == DagsterRunStatus.FAILURE
        task_id = killed.dagster_run.tags["dagster-celery/task_id"]
        task = instance.run_launcher.celery.AsyncResult(task_id)  # type: ignore[attr-defined]
        assert (task.state, type(task.result).__name__) == ("FAILURE", "WorkerLostError"), (
            task.state,
            repr(task.result),
            [e.message for e in instance.all_logs(killed_run)][-5:],
        )
        assert any(
            "Detected run worker status FAILED" in (e.message or "")
            for e in instance.all_logs(killed_run, of_type=dg.DagsterEventType.RUN_FAILURE)
        )
        victim.kill()  # and the rest of that host's worker: nothing of it is left
        assert victim.processes() == []
        # The lock is still held by the dead run: only the lease can release it.
        rows = [r for r in _sync_rows(inventory_engine) if r.correlation_id == killed_run]
        assert [r.status for r in rows] == ["running"]
        timings["killed"] = time.monotonic() - began
        clock.wait(
            lambda: _heartbeat_age(inventory_engine, killed_run) > TEST_LEASE_SECONDS,
            "the dead run's heartbeat to be older than the lease",
        )

        # 3. Re-execute the failed run (as the UI's "Re-execute"): it runs on the other worker
        # and takes the lock over once the dead run's heartbeat is older than the lease.
        with SimulatorControl(stack.simulator_url) as control:
            control.set_faults(KILLED_TENANT[0], [])  # Graph answers quickly again
        relaunched = graphql(
            url, REEXECUTE, {"params": {"parentRunId": killed_run, "strategy": "FROM_FAILURE"}}
        )["launchRunReexecution"]
        assert relaunched["__typename"] == "LaunchRunSuccess", relaunched
        retry_run = str(relaunched["run"]["runId"])
        clock.wait(lambda: _finished(instance, [retry_run]), f"re-execution {retry_run}")
        [retry] = _records(instance, [retry_run])
        assert retry.dagster_run.status == DagsterRunStatus.SUCCESS
        retry_entry = _starts(journal)[retry_run]
        assert retry_entry.node == survivor.node_name
        assert retry_entry.netns == inodes[survivor.host.name]
        by_run = {r.correlation_id: r for r in _sync_rows(inventory_engine)}
        assert by_run[retry_run].status == "success", by_run[retry_run]
        assert by_run[killed_run].status == "failed", by_run[killed_run]
        assert by_run[killed_run].error_codes == ["run_abandoned"]
        timings["relaunched"] = time.monotonic() - began

        # 4. The inventory equals Graph's ground truth, whichever host wrote it.
        with SimulatorControl(stack.simulator_url) as control:
            expected = {(t, s) for t in TENANTS for s in SELECTIONS}
            expected.add((KILLED_TENANT[0], KILLED_SELECTION))
            _assert_inventory_matches_ground_truth(inventory_engine, control, expected)
    timings["total"] = time.monotonic() - began
    print("celery hosts: " + ", ".join(f"{k} {v:.0f}s" for k, v in timings.items()))

    # Nothing is left behind: processes, namespaces, the virtual host, the instance database.
    assert [pid for service in started for pid in service.members()] == []
    assert not names & _namespaces()
    assert vhost not in _vhosts()
    assert not _database_exists(instance_database)


def _assert_runs_succeeded(records: list[RunRecord]) -> None:
    bad = [
        f"{r.dagster_run.run_id} {r.dagster_run.tags.get('dagster/partition')}: "
        f"{r.dagster_run.status.value}"
        for r in records
        if r.dagster_run.status != DagsterRunStatus.SUCCESS
    ]
    assert not bad, bad
    assert all("dagster-celery/task_id" in r.dagster_run.tags for r in records)


def _assert_ran_on_both_hosts(
    records: list[RunRecord], journal: Path, hosts: list[WorkerHost], inodes: Mapping[str, int]
) -> None:
    """Each run was executed by the worker whose task the launcher sent, inside that worker's
    namespace, and both namespaces executed runs."""
    entries = list(read_journal(journal))
    starts = {e.run_id: e for e in entries if e.event == "start"}
    ends = {e.run_id: e for e in entries if e.event == "end"}
    by_host: dict[str, list[str]] = defaultdict(list)
    for record in records:
        run = record.dagster_run
        start, end = starts[run.run_id], ends[run.run_id]
        assert start.task_id == run.tags["dagster-celery/task_id"]
        assert start.netns == inodes[start.node] and end.state == "SUCCESS"
        # The run's own start and end (written by Dagster in that process) lie within the task.
        assert record.start_time is not None and record.end_time is not None
        assert start.time <= record.start_time <= record.end_time <= end.time
        by_host[start.node].append(run.run_id)
    assert set(by_host) == {h.name for h in hosts}, dict(by_host)
    assert len({e.netns for e in entries if e.event == "ready"}) == len(hosts)


def _assert_tenant_limit_held(records: list[RunRecord], engine: Engine) -> None:
    """No two runs of one tenant overlapped, by Dagster's run records and by the sync runs'
    database times, while runs of different tenants did overlap."""
    now = time.time()
    by_tenant: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for record in records:
        assert record.start_time is not None
        interval = (record.start_time, record.end_time or now)
        by_tenant[record.dagster_run.tags[TENANT_TAG]].append(interval)
    assert set(by_tenant) == set(TENANTS.values())
    assert all(max_overlap(spans) == 1 for spans in by_tenant.values()), by_tenant
    everything = [span for spans in by_tenant.values() for span in spans]
    assert max_overlap(everything) >= 2, "runs never overlapped: the limit was not exercised"
    synced: dict[str, list[tuple[float, float]]] = defaultdict(list)
    run_ids = {r.dagster_run.run_id for r in records}
    for row in _sync_rows(engine):
        if row.correlation_id in run_ids:
            assert row.status == "success", row
            synced[row.tenant_id].append((row.started_at.timestamp(), row.finished_at.timestamp()))
    assert set(synced) == set(TENANTS)
    assert all(max_overlap(spans) == 1 for spans in synced.values()), synced


def _assert_compute_logs_shared(
    instance: dg.DagsterInstance, hosts: CeleryHosts, run_id: str
) -> None:
    """A worker's captured output is where the root namespace's instance reads it (the shared
    DAGSTER_COMPUTE_LOGS_DIR)."""
    [captured] = instance.all_logs(run_id, of_type=dg.DagsterEventType.LOGS_CAPTURED)
    assert captured.dagster_event is not None
    data = captured.dagster_event.event_specific_data
    assert isinstance(data, ComputeLogsCaptureData)
    manager = instance.compute_log_manager
    log_key = manager.build_log_key_for_run(run_id, data.file_key)
    assert manager.is_capture_complete(log_key)
    assert manager.get_log_data(log_key).stderr
    assert any((hosts.compute_logs_dir / run_id).rglob("*.err"))


def _assert_inventory_matches_ground_truth(
    engine: Engine, control: SimulatorControl, synced: set[tuple[str, str]]
) -> None:
    loaded = load_selections()
    with engine.connect() as conn:
        rows = conn.execute(
            select(items_table.c.tenant_id, items_table.c.policy_type, items_table.c.external_id)
        ).all()
    stored: dict[tuple[str, str], set[str]] = defaultdict(set)
    for tenant_id, policy_type, external_id in rows:
        stored[(tenant_id, policy_type)].add(external_id)
    expected_pairs = {
        (tenant_id, policy_type)
        for tenant_id, selection in synced
        for policy_type in loaded[selection].policy_types
    }
    for tenant_id, policy_type in sorted(expected_pairs):
        truth = {item["id"] for item in control.items(tenant_id, policy_type)}
        assert stored.get((tenant_id, policy_type), set()) == truth, (tenant_id, policy_type)
    assert set(stored) <= expected_pairs
