"""Start and stop the local stack: the Graph simulator and Dagster (webserver + daemon).

Used by `make demo` and the end-to-end test. Every service is a subprocess in its own process
group, so stopping it stops everything it spawned (code server, run workers): SIGINT to the
leader for a graceful shutdown, then SIGTERM and finally SIGKILL to the whole group. Plain
Python; no product logic lives here.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import httpx
import yaml

from inventory_pipelines.partitions import SELECTION_DIMENSION, TENANT_DIMENSION, partition_key
from inventory_pipelines.simulator import SIMULATOR_CLIENT_ID, SIMULATOR_CLIENT_SECRET

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED_DAGSTER_YAML = REPO_ROOT / "dagster.yaml"
WORKSPACE_YAML = REPO_ROOT / "workspace.yaml"
HOST = "127.0.0.1"

_PR_SET_PDEATHSIG = 1

_WORKSPACE_QUERY = """
query {
  workspaceOrError {
    __typename
    ... on Workspace {
      locationEntries {
        name
        loadStatus
        locationOrLoadError {
          __typename
          ... on PythonError { message }
        }
      }
    }
  }
}
"""

_DAEMON_HEALTH_QUERY = """
query {
  instance {
    daemonHealth {
      allDaemonStatuses { daemonType required healthy }
    }
  }
}
"""


class DevStackError(RuntimeError):
    """A service did not start or stopped unexpectedly; the message ends with its log tail."""


def free_port(host: str = HOST) -> int:
    """A TCP port on `host` that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int, host: str = HOST) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
        return True


def _die_with_parent() -> Callable[[], None] | None:
    """A preexec hook asking Linux to SIGTERM the child if this process dies without cleanup."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None

    def hook() -> None:
        prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)

    return hook


def _group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    proc = Path("/proc")
    if not proc.is_dir():
        try:
            os.killpg(pgid, 0)
        except (ProcessLookupError, PermissionError):
            return []
        return [pgid]
    members: list[int] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # Fields after the parenthesised command: state ppid pgrp ...
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) > 2 and fields[0] != "Z" and fields[2] == str(pgid):
            members.append(int(entry.name))
    return members


@dataclass
class ServiceProcess:
    """One service: the leader process of its own process group, logging to a file."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    interrupt_first: bool = False

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def members(self) -> list[int]:
        """Live processes of the service's group (the leader and everything it spawned)."""
        return _group_members(self.popen.pid)

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def check_alive(self) -> None:
        if not self.alive():
            raise DevStackError(
                f"{self.name} exited with code {self.popen.returncode}; "
                f"last lines of {self.log_path}:\n{self.log_tail()}"
            )

    def _signal_group(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, sig)

    def _wait_group(self, timeout: float, *, leader_only: bool = False) -> bool:
        """Wait until the group (or just its leader) is gone; False after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.popen.wait(timeout=0.1)
                if leader_only:
                    return True
            except subprocess.TimeoutExpired:
                pass
            else:
                time.sleep(0.1)
            if not self.members():
                return True
            if time.monotonic() > deadline:
                return False

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the whole group: graceful first, SIGKILL after `timeout`. Idempotent."""
        if self.interrupt_first and self.alive():
            # `dg dev` shuts its webserver, daemon and code server down on SIGINT; run
            # workers and code servers still going are left to the SIGTERM below.
            with contextlib.suppress(ProcessLookupError):
                self.popen.send_signal(signal.SIGINT)
            self._wait_group(timeout, leader_only=True)
        if self.members():
            self._signal_group(signal.SIGTERM)
            if self._wait_group(timeout):
                return
            self._signal_group(signal.SIGKILL)
            self._wait_group(timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(timeout=timeout)


def start_service(
    name: str,
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    log_path: Path,
    cwd: Path = REPO_ROOT,
    interrupt_first: bool = False,
) -> ServiceProcess:
    """Start `argv` as the leader of a new process group, output appended to `log_path`."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        popen = subprocess.Popen(
            list(argv),
            cwd=cwd,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent(),
        )
    return ServiceProcess(name, popen, log_path, interrupt_first)


def wait_until(
    probe: Callable[[], bool],
    *,
    timeout: float,
    what: str,
    services: Sequence[ServiceProcess] = (),
    interval: float = 0.5,
) -> None:
    """Poll `probe` until it is true; fail early if a service died, and after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        for service in services:
            service.check_alive()
        try:
            if probe():
                return
        except (httpx.HTTPError, OSError):
            pass
        if time.monotonic() > deadline:
            tails = "".join(
                f"\n--- last lines of {s.log_path} ---\n{s.log_tail()}" for s in services
            )
            raise DevStackError(f"timed out after {timeout:.0f}s waiting for {what}{tails}")
        time.sleep(interval)


def prepare_dagster_home(
    path: Path,
    *,
    source: Path = SHIPPED_DAGSTER_YAML,
    postgres_url: str | None = None,
    dequeue_interval_seconds: int | None = None,
) -> Path:
    """Create DAGSTER_HOME with a copy of the shipped `dagster.yaml` (the limits), optionally
    with PostgreSQL instance storage (dagster-postgres) and a shorter run-queue polling
    interval appended; the limits themselves are never changed."""
    path.mkdir(parents=True, exist_ok=True)
    target = path / "dagster.yaml"
    shutil.copyfile(source, target)
    if postgres_url is None and dequeue_interval_seconds is None:
        return path
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    if postgres_url is not None:
        config["storage"] = {"postgres": {"postgres_url": postgres_url}}
    if dequeue_interval_seconds is not None:
        # How often the queue is polled, never the limits (those live under `concurrency:`).
        coordinator = config.setdefault(
            "run_coordinator",
            {"module": "dagster._core.run_coordinator", "class": "QueuedRunCoordinator"},
        )
        coordinator.setdefault("config", {}).update(
            {"dequeue_interval_seconds": dequeue_interval_seconds, "dequeue_use_threads": True}
        )
    target.write_text(
        "# Generated by inventory_pipelines.devstack from "
        + source.name
        + "\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    return path


def stack_environment(
    *,
    dagster_home: Path,
    database_url: str,
    graph_url: str,
    client_id: str = SIMULATOR_CLIENT_ID,
    client_secret: str = SIMULATOR_CLIENT_SECRET,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of every service: this one plus the project's settings (section 9 of
    the spec) pointing at the local stack."""
    env = dict(os.environ if base is None else base)
    env.update(
        {
            "DAGSTER_HOME": str(dagster_home),
            "INVENTORY_DATABASE_URL": database_url,
            "GRAPH_BASE_URL": graph_url,
            "GRAPH_AUTHORITY_URL": graph_url,
            "GRAPH_CLIENT_ID": client_id,
            "GRAPH_CLIENT_SECRET": client_secret,
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


def start_simulator(
    *,
    port: int,
    log_path: Path,
    scenario: Path | None = None,
    identity_rps: float | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 30.0,
) -> ServiceProcess:
    """`inventory-pipelines simulator` as a subprocess; returns once `/health` answers."""
    argv = [sys.executable, "-m", "inventory_pipelines.cli", "simulator", "--port", str(port)]
    if scenario is not None:
        argv += ["--scenario", str(scenario)]
    if identity_rps is not None:
        argv += ["--identity-rps", str(identity_rps)]
    service = start_service("graph simulator", argv, env=env or dict(os.environ), log_path=log_path)
    url = f"http://{HOST}:{port}/_simulator/health"
    try:
        wait_until(
            lambda: httpx.get(url, timeout=2).status_code == 200,
            timeout=timeout,
            what=f"the simulator at {url}",
            services=[service],
            interval=0.2,
        )
    except BaseException:
        service.stop()
        raise
    return service


def start_dagster(
    *,
    port: int,
    env: Mapping[str, str],
    log_path: Path,
    workspace: Path = WORKSPACE_YAML,
) -> ServiceProcess:
    """`dg dev` (webserver, daemon and one shared code server) as a subprocess.

    Dagster's current command line (`dagster dev` is superseded by it); given the workspace
    file it starts exactly what `dagster dev` did. It runs in DAGSTER_HOME so the repository's
    own `dagster.yaml` beside the workspace is not mistaken for a stray instance file."""
    argv = [
        sys.executable,
        "-m",
        "dagster_dg_cli.cli",
        "dev",
        "-w",
        str(workspace.resolve()),
        "--host",
        HOST,
        "--port",
        str(port),
    ]
    return start_service(
        "dg dev",
        argv,
        env=env,
        log_path=log_path,
        cwd=Path(env["DAGSTER_HOME"]),
        interrupt_first=True,
    )


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """POST a GraphQL query to the webserver; returns `data`, raising on GraphQL errors."""
    response = httpx.post(
        f"{url}/graphql", json={"query": query, "variables": dict(variables or {})}, timeout=30
    )
    response.raise_for_status()
    body = response.json()
    if body.get("errors"):
        raise DevStackError(f"GraphQL errors: {body['errors']}")
    data: dict[str, Any] = body["data"]
    return data


_LAUNCH_RUN = """
mutation($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PythonError { message }
  }
}
"""
CODE_LOCATION = "inventory_pipelines.definitions"
"""The workspace's code location (workspace.yaml) and its one repository."""
REPOSITORY = "__repository__"


def launch_partition_run(
    url: str,
    tenant_key: str,
    selection: str,
    run_config: Mapping[str, Any] | None = None,
) -> str:
    """One sync run of a tenant × selection partition into the run queue, tagged as the UI's
    Materialize tags it; returns the run id."""
    tags = {
        "dagster/partition": str(partition_key(tenant_key, selection)),
        f"dagster/partition/{TENANT_DIMENSION}": tenant_key,
        f"dagster/partition/{SELECTION_DIMENSION}": selection,
    }
    params = {
        "selector": {
            "repositoryLocationName": CODE_LOCATION,
            "repositoryName": REPOSITORY,
            "jobName": "inventory_sync_job",
        },
        "runConfigData": dict(run_config or {}),
        "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
    }
    launched = graphql(url, _LAUNCH_RUN, {"params": params})["launchRun"]
    if launched["__typename"] != "LaunchRunSuccess":
        raise DevStackError(f"run of {tags['dagster/partition']} not launched: {launched}")
    return str(launched["run"]["runId"])


def code_location_loaded(url: str) -> bool:
    """True once the webserver answers and every code location loaded without error."""
    if httpx.get(f"{url}/server_info", timeout=2).status_code != 200:
        return False
    workspace = graphql(url, _WORKSPACE_QUERY)["workspaceOrError"]
    entries = workspace.get("locationEntries") or []
    if not entries or any(e["loadStatus"] != "LOADED" for e in entries):
        return False
    errors = [e for e in entries if e["locationOrLoadError"]["__typename"] == "PythonError"]
    if errors:
        raise DevStackError(
            "code location failed to load: "
            + "; ".join(e["locationOrLoadError"]["message"] for e in errors)
        )
    return True


def daemons_healthy(url: str) -> bool:
    """True once every required daemon (sensors, run queue, backfills…) has heartbeated."""
    statuses = graphql(url, _DAEMON_HEALTH_QUERY)["instance"]["daemonHealth"]["allDaemonStatuses"]
    required = [s for s in statuses if s["required"]]
    return bool(required) and all(s["healthy"] for s in required)


@dataclass
class DevStack:
    """Simulator + Dagster for one state directory; `with DevStack(...) as stack:`.

    `state_dir` receives the logs (and DAGSTER_HOME unless one is given). The inventory
    database must already be migrated.
    """

    state_dir: Path
    database_url: str
    scenario: Path | None = None
    dagster_port: int = 0
    simulator_port: int = 0
    dagster_home: Path | None = None
    instance_postgres_url: str | None = None
    identity_rps: float | None = None
    dequeue_interval_seconds: int | None = None
    dagster_yaml: Path = SHIPPED_DAGSTER_YAML
    start_timeout: float = 120.0
    wait_for_daemons: bool = True
    services: list[ServiceProcess] = field(default_factory=list)

    @property
    def simulator_url(self) -> str:
        return f"http://{HOST}:{self.simulator_port}"

    @property
    def dagster_url(self) -> str:
        return f"http://{HOST}:{self.dagster_port}"

    @property
    def home(self) -> Path:
        return self.dagster_home or self.state_dir / "dagster_home"

    def environment(self) -> dict[str, str]:
        return stack_environment(
            dagster_home=self.home, database_url=self.database_url, graph_url=self.simulator_url
        )

    def start_simulator(self) -> ServiceProcess:
        self.simulator_port = self.simulator_port or free_port()
        service = start_simulator(
            port=self.simulator_port,
            log_path=self.state_dir / "logs" / "simulator.log",
            scenario=self.scenario,
            identity_rps=self.identity_rps,
            env=self.environment(),
        )
        self.services.append(service)
        return service

    def start_dagster(self) -> ServiceProcess:
        self.dagster_port = self.dagster_port or free_port()
        if not port_is_free(self.dagster_port):
            raise DevStackError(f"port {self.dagster_port} on {HOST} is already in use")
        prepare_dagster_home(
            self.home,
            source=self.dagster_yaml,
            postgres_url=self.instance_postgres_url,
            dequeue_interval_seconds=self.dequeue_interval_seconds,
        )
        service = start_dagster(
            port=self.dagster_port,
            env=self.environment(),
            log_path=self.state_dir / "logs" / "dagster.log",
        )
        self.services.append(service)
        url = self.dagster_url
        wait_until(
            lambda: code_location_loaded(url),
            timeout=self.start_timeout,
            what=f"the Dagster webserver at {url} to load the code location",
            services=[service],
        )
        if self.wait_for_daemons:
            wait_until(
                lambda: daemons_healthy(url),
                timeout=self.start_timeout,
                what="the Dagster daemons to report healthy",
                services=[service],
                interval=1.0,
            )
        return service

    def start(self) -> DevStack:
        try:
            if not any(s.name == "graph simulator" for s in self.services):
                self.start_simulator()
            self.start_dagster()
        except BaseException:
            self.stop()
            raise
        return self

    def check_alive(self) -> None:
        for service in self.services:
            service.check_alive()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop every service, Dagster first (its runs still talk to the simulator)."""
        while self.services:
            self.services.pop().stop(timeout)

    def __enter__(self) -> DevStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
