"""What happens to a Dagster run whose worker process is SIGKILLed in the middle of a sync.

A real instance built from the shipped `dagster.yaml` (poll interval shortened), a real code
server (`dagster api grpc` on loopback) and the DefaultRunLauncher start `inventory_sync_job`
for one partition against the simulator; the test kills the run worker once its sync holds
the lock, and runs the monitoring daemon's iteration itself.

- Worker killed, code server alive: the run is marked FAILURE within seconds. The
  DefaultRunLauncher cannot report worker health to run monitoring; it is the code server
  that notices its child died. The sync's lock stays until the inventory lease expires.
- Worker and code server killed together (host crash, OOM killer on the process group):
  nothing notices a dead worker, so only run monitoring's `max_runtime_seconds` can end the
  run; without it the run stays STARTED and holds its tenant's only run slot (and a global
  and a pool slot) for good. The shipped `dagster.yaml` sets it (hours); the test shows the
  mechanism with a limit of seconds.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster._core.storage.dagster_run import DagsterRunStatus
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import GrpcServerTarget
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
from dagster._grpc.client import DagsterGrpcClient
from sqlalchemy import Engine, func, select

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.migrations import upgrade
from inventory_pipelines.core.schema import items
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.devstack import SHIPPED_DAGSTER_YAML, free_port
from inventory_pipelines.partitions import (
    SELECTION_DIMENSION,
    TENANT_DIMENSION,
    partition_key,
    tenant_selection_partitions,
)
from inventory_pipelines.simulator import (
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    SimulatorServer,
)
from inventory_pipelines_tests.reliability.ground_truth import runs_of

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HOST = "127.0.0.1"
LOCATION = "inventory"
JOB = "inventory_sync_job"
TENANT = "9a8b7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d"
TENANT_KEY = "killed"
POLL_SECONDS = 1
MAX_RUNTIME_SECONDS = 2
STARTED_PROCESS = re.compile(r"Started process for run \(pid: (\d+)\)")
logger = logging.getLogger("inventory_pipelines_tests.run_monitoring")


def _wait(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f}s waiting for {what}"
        time.sleep(0.2)


def _write_instance_config(home: Path, **monitoring: int) -> dict[str, Any]:
    """The shipped dagster.yaml with run-monitoring settings overridden for a fast test."""
    config = yaml.safe_load(SHIPPED_DAGSTER_YAML.read_text())
    config["run_monitoring"].update(monitoring)
    (home / "dagster.yaml").write_text(yaml.safe_dump(config))
    return config


class CodeServer:
    """`dagster api grpc` serving the project's definitions; this test owns the process."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self._log = log.open("w")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dagster",
                "api",
                "grpc",
                "--module-name",
                "inventory_pipelines.definitions",
                "--working-directory",
                str(REPO),
                "--host",
                HOST,
                "--port",
                str(self.port),
            ],
            env=env,
            cwd=REPO,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        client = DagsterGrpcClient(host=HOST, port=self.port)

        def answers() -> bool:
            assert self.proc.poll() is None, log.read_text()[-3000:]
            try:
                client.ping("ping")
            except Exception:
                return False
            return True

        _wait(answers, 120, "the code server")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)
        self._log.close()


@pytest.fixture
def stack(
    tmp_path: Path, sim: SimulatorServer, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, Any]]:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shipped = _write_instance_config(home, poll_interval_seconds=POLL_SECONDS)
    database_url = f"sqlite:///{tmp_path / 'inventory.db'}"
    engine = create_inventory_engine(database_url)
    upgrade(engine)
    add_tenant(engine, TENANT, "Killed", key=TENANT_KEY)
    # Slow pages: each sync holds its lock for many seconds, so the kill lands mid-sync.
    sim.control.configure_tenant(
        TENANT,
        seed=3,
        default_size=3,
        sizes={"settings_catalog_compliance": 300, "settings_catalog_policies": 300},
    )
    sim.control.set_faults(TENANT, [{"kind": "latency", "ms": 700}])
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "INVENTORY_DATABASE_URL": database_url,
        "GRAPH_CLIENT_ID": SIMULATOR_CLIENT_ID,
        "GRAPH_CLIENT_SECRET": SIMULATOR_CLIENT_SECRET,
        "GRAPH_BASE_URL": sim.base_url,
        "GRAPH_AUTHORITY_URL": sim.base_url,
    }
    for name in (
        "DAGSTER_HOME",
        "INVENTORY_DATABASE_URL",
        "GRAPH_CLIENT_ID",
        "GRAPH_CLIENT_SECRET",
        "GRAPH_BASE_URL",
        "GRAPH_AUTHORITY_URL",
    ):  # the run is created (and its config resolved) in this process too
        monkeypatch.setenv(name, env[name])
    server = CodeServer(env, tmp_path / "code_server.log")
    workers: list[int] = []
    try:
        yield {
            "home": home,
            "shipped": shipped,
            "engine": engine,
            "server": server,
            "workers": workers,
        }
    finally:
        server.kill()
        for pid in workers:  # run workers our code server started, should a test fail early
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        engine.dispose()


def _launch(
    instance: dg.DagsterInstance, context: WorkspaceProcessContext, selection_name: str
) -> str:
    from inventory_pipelines.definitions import defs

    instance.add_dynamic_partitions(TENANT_DIMENSION, [TENANT_KEY])
    instance.add_dynamic_partitions(SELECTION_DIMENSION, [selection_name])
    workspace = context.create_request_context()
    remote_job = (
        workspace.get_code_location(LOCATION).get_repository("__repository__").get_full_job(JOB)
    )
    key = partition_key(TENANT_KEY, selection_name)
    run = instance.create_run_for_job(
        job_def=defs.resolve_job_def(JOB),
        tags=tenant_selection_partitions.get_tags_for_partition_key(key),
        remote_job_origin=remote_job.get_remote_origin(),
        job_code_origin=remote_job.get_python_origin(),
    )
    instance.launch_run(run.run_id, workspace)
    return run.run_id


def _worker_pid(instance: dg.DagsterInstance, run_id: str) -> int:
    def pid() -> int | None:
        for record in instance.all_logs(run_id):
            found = STARTED_PROCESS.search(record.message or "")
            if found:
                return int(found.group(1))
        return None

    return int(_wait(pid, 60, "the run worker's pid"))


def _sync_row_of(engine: Engine, run_id: str) -> Any:
    """The inventory sync run the Dagster run started, once it holds the lock and wrote."""
    rows = [r for r in runs_of(engine, TENANT) if r.correlation_id == run_id]
    if rows and rows[0].status == "running":
        with engine.connect() as conn:
            written = conn.execute(
                select(func.count())
                .select_from(items)
                .where(items.c.last_seen_run_id == rows[0].id)
            ).scalar_one()
        if written:
            return rows[0]
    return None


def _status(instance: dg.DagsterInstance, run_id: str) -> DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None
    return run.status


def _monitor_until(
    context: WorkspaceProcessContext, run_id: str, seconds: float
) -> DagsterRunStatus:
    """Run the monitoring daemon's iteration every poll interval for up to `seconds`."""
    instance = context.instance
    deadline = time.monotonic() + seconds
    while True:
        list(execute_run_monitoring_iteration(context, logger))
        status = _status(instance, run_id)
        if status in (DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED):
            return status
        if time.monotonic() > deadline:
            return status
        time.sleep(POLL_SECONDS)


# The second workspace loads while the code server is dead, which Dagster warns about.
@pytest.mark.filterwarnings("ignore:Error loading repository location:UserWarning")
def test_a_killed_run_worker_ends_failed_and_an_orphan_needs_max_runtime(
    stack: dict[str, Any],
) -> None:
    home, engine, server = stack["home"], stack["engine"], stack["server"]
    began = time.monotonic()
    instance = dg.DagsterInstance.from_config(str(home))
    assert instance.run_monitoring_enabled
    # Run monitoring cannot ask this launcher whether a worker lives (it can on Kubernetes).
    assert not instance.run_launcher.supports_check_run_worker_health
    target = GrpcServerTarget(host=HOST, port=server.port, socket=None, location_name=LOCATION)
    with WorkspaceProcessContext(instance, target) as context:
        # 1. The worker dies, its code server lives on.
        first = _launch(instance, context, "compliance")
        pid = _worker_pid(instance, first)
        stack["workers"].append(pid)
        sync_row = _wait(lambda: _sync_row_of(engine, first), 90, "the first sync to write")
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        assert _monitor_until(context, first, 30) == DagsterRunStatus.FAILURE
        first_failed_after = time.monotonic() - killed
        messages = [r.message for r in instance.all_logs(first)]
        assert any(
            f"Run execution process for {first} was terminated by signal 9 (SIGKILL)" in m
            for m in messages
        ), messages[-5:]
        # The inventory lock of the killed sync is left to the lease (10 minutes by default).
        (row,) = [r for r in runs_of(engine, TENANT) if r.id == sync_row.id]
        assert row.status == "running" and row.correlation_id == first

        # 2. Worker and code server die together: nothing notices with the shipped settings.
        second = _launch(instance, context, "configuration")
        pid = _worker_pid(instance, second)
        stack["workers"].append(pid)
        _wait(lambda: _sync_row_of(engine, second), 90, "the second sync to write")
        server.kill()
        os.kill(pid, signal.SIGKILL)
        status = _monitor_until(context, second, MAX_RUNTIME_SECONDS + 3 * POLL_SECONDS)
        assert status == DagsterRunStatus.STARTED, "only the runtime limit ends an orphan"
    instance.dispose()

    # The shipped limit (hours) is what ends such an orphan; a short one shows it working.
    shipped_limit = stack["shipped"]["run_monitoring"].get("max_runtime_seconds", 0)
    assert 3600 <= shipped_limit <= 86400, "dagster.yaml must bound a run's runtime"
    _write_instance_config(
        home, poll_interval_seconds=POLL_SECONDS, max_runtime_seconds=MAX_RUNTIME_SECONDS
    )
    instance = dg.DagsterInstance.from_config(str(home))
    with WorkspaceProcessContext(instance, target) as context:
        assert _monitor_until(context, second, 30) == DagsterRunStatus.FAILURE
    messages = [r.message for r in instance.all_logs(second)]
    assert any("maximum runtime" in m or "forcibly marked as failed" in m for m in messages)
    instance.dispose()
    print(
        f"\nkilled worker: FAILURE after {first_failed_after:.1f}s (code server); orphan: "
        f"still STARTED after {MAX_RUNTIME_SECONDS + 3 * POLL_SECONDS}s of monitoring below the "
        f"runtime limit, FAILURE with max_runtime_seconds={MAX_RUNTIME_SECONDS} "
        f"(shipped: {shipped_limit}); total {time.monotonic() - began:.0f}s"
    )
