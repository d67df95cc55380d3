"""Several worker hosts on one machine, for Dagster's Celery run launcher (`dagster.celery.yaml`).

Each host is a Linux network namespace joined to the root namespace by a veth pair: it has its
own loopback and its own address, and reaches the machine's PostgreSQL, RabbitMQ and Graph
simulator (which listen on the root namespace's loopback) only through a relay listening on
the pair's root-side address (`tcp_relay`). In it runs one `dagster-celery worker` with its own
DAGSTER_HOME and the settings a real worker host needs. Used by the scale-out test and
benchmark; nothing here imports Celery. Needs root and `ip` (iproute2), plus `rabbitmqctl` for
the RabbitMQ virtual host that keeps one stack's queue apart from any other's.

Every process is started as the leader of its own process group and stopped by PID; the
namespaces, the virtual host and the relays are removed on stop (and, for namespaces and
virtual hosts, also those a crashed earlier run of this module left behind).
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml
from dagster import DagsterInstance
from sqlalchemy.engine import URL, make_url

from inventory_pipelines.devstack import (
    HOST,
    REPO_ROOT,
    DevStack,
    DevStackError,
    ServiceProcess,
    free_port,
    port_is_free,
    start_service,
    wait_until,
)
from inventory_pipelines.simulator import SIMULATOR_CLIENT_ID, SIMULATOR_CLIENT_SECRET

CELERY_DAGSTER_YAML = REPO_ROOT / "dagster.celery.yaml"
CELERY_WORKER_YAML = REPO_ROOT / "deploy" / "celery" / "worker.yaml"
BROKER_HOST = "127.0.0.1"
BROKER_PORT = 5672
BROKER_USER = "guest"
BROKER_PASSWORD = "guest"
POSTGRES_PORT = 5432
"""The port `dagster.celery.yaml` names; a host's copy follows a relay listening elsewhere."""
NAME_PREFIX = "invc"
"""Namespaces are `invc<pid>-<index>`, virtual hosts `invc<pid>-<random>`: a leftover whose
creating process is gone can be recognized and removed."""
SUBNET = ipaddress.IPv4Network("10.213.0.0/16")
"""Each host gets one /30 of this range: .1 the root side, .2 the host."""
ENV_BROKER_URL = "DAGSTER_CELERY_BROKER_URL"
ENV_BACKEND_URL = "DAGSTER_CELERY_BACKEND_URL"
ENV_COMPUTE_LOGS_DIR = "DAGSTER_COMPUTE_LOGS_DIR"
PASSED_THROUGH = ("PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "TMPDIR", "TZ")
"""The only variables a worker inherits from the process that starts it; everything else it
needs is set explicitly, so the list of what a worker host needs is the code below."""


class HostSetupError(DevStackError):
    """A namespace, relay, virtual host or worker could not be set up."""


def _run(argv: Sequence[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and result.returncode != 0:
        raise HostSetupError(f"{' '.join(argv)} failed ({result.returncode}): {result.stderr}")
    return result


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _leftover(name: str) -> bool:
    """True for a name this module made in a process that no longer exists."""
    match = re.fullmatch(rf"{NAME_PREFIX}(\d+)-\w+", name)
    return match is not None and not _pid_alive(int(match.group(1)))


# -- what the machine offers ---------------------------------------------------------------


def netns_problem() -> str | None:
    """None when network namespaces can be made here (root, iproute2), else why not."""
    if sys.platform != "linux":
        return f"network namespaces need Linux, this is {sys.platform}"
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "`ip` (iproute2) is not installed"
    result = _run(["ip", "netns", "list"], check=False)
    if result.returncode != 0:
        return f"`ip netns list` failed: {result.stderr.strip()}"
    return None


def broker_problem(host: str = BROKER_HOST, port: int = BROKER_PORT) -> str | None:
    """None when RabbitMQ answers on host:port and `rabbitmqctl` is there, else why not."""
    try:
        with socket.create_connection((host, port), timeout=3):
            pass
    except OSError as exc:
        return f"RabbitMQ does not answer on {host}:{port} ({exc})"
    if shutil.which("rabbitmqctl") is None:
        return "`rabbitmqctl` is not installed (it creates the test's virtual host)"
    return None


# -- network namespaces ----------------------------------------------------------------------


@dataclass(frozen=True)
class WorkerHost:
    """A network namespace with a veth pair: `gateway` is the root side, `address` its own."""

    name: str
    gateway: str
    address: str
    root_link: str

    def wrap(self, argv: Sequence[str]) -> list[str]:
        """`argv` run inside the namespace."""
        return ["ip", "netns", "exec", self.name, *argv]

    def inode(self) -> int:
        """The namespace's identity, as /proc/<pid>/ns/net of its processes names it."""
        return os.stat(f"/run/netns/{self.name}").st_ino


def _used_networks() -> list[ipaddress.IPv4Network]:
    out = _run(["ip", "-o", "-4", "addr", "show"]).stdout
    return [ipaddress.IPv4Interface(m.group(1)).network for m in re.finditer(r"inet (\S+)", out)]


def _free_subnet(taken: Iterable[ipaddress.IPv4Network]) -> ipaddress.IPv4Network:
    used = list(taken)
    rng = random.Random(os.getpid() ^ time.monotonic_ns())
    for _ in range(200):
        index = rng.randrange(SUBNET.num_addresses // 4)
        candidate = ipaddress.IPv4Network(f"{SUBNET.network_address + index * 4}/30")
        if not any(candidate.overlaps(n) for n in used):
            return candidate
    raise HostSetupError(f"no free /30 in {SUBNET}")


def remove_leftover_hosts() -> list[str]:
    """Delete namespaces an earlier process of this module created and did not remove."""
    removed = []
    for line in _run(["ip", "netns", "list"]).stdout.splitlines():
        name = line.split()[0] if line.strip() else ""
        if name and _leftover(name):
            _run(["ip", "netns", "delete", name], check=False)
            removed.append(name)
    return removed


def create_host(index: int, taken: list[ipaddress.IPv4Network]) -> WorkerHost:
    """A namespace `invc<pid>-<index>` with its veth pair up and addressed."""
    subnet = _free_subnet(taken)
    taken.append(subnet)
    gateway, address = (str(a) for a in list(subnet.hosts())[:2])
    tag = f"{os.getpid() % 100000:05d}{index}"
    host = WorkerHost(
        name=f"{NAME_PREFIX}{os.getpid()}-{index}",
        gateway=gateway,
        address=address,
        root_link=f"ivr{tag}",
    )
    inner = f"ivn{tag}"
    _run(["ip", "netns", "add", host.name])
    try:
        _run(["ip", "link", "add", host.root_link, "type", "veth", "peer", "name", inner])
        _run(["ip", "link", "set", inner, "netns", host.name])
        _run(["ip", "addr", "add", f"{gateway}/30", "dev", host.root_link])
        _run(["ip", "link", "set", host.root_link, "up"])
        _run(["ip", "-n", host.name, "addr", "add", f"{address}/30", "dev", inner])
        _run(["ip", "-n", host.name, "link", "set", inner, "up"])
        _run(["ip", "-n", host.name, "link", "set", "lo", "up"])
    except BaseException:
        delete_host(host)
        raise
    return host


def delete_host(host: WorkerHost) -> None:
    """Remove the namespace; its end of the veth pair, and with it the root end, go too."""
    _run(["ip", "netns", "delete", host.name], check=False)
    _run(["ip", "link", "delete", host.root_link], check=False)


def namespace_of(pid: int) -> int | None:
    """The network namespace inode of a live process, None when it is gone."""
    try:
        return os.stat(f"/proc/{pid}/ns/net").st_ino
    except OSError:
        return None


# -- RabbitMQ virtual host ------------------------------------------------------------------


def remove_leftover_vhosts() -> list[str]:
    out = _run(["rabbitmqctl", "-q", "list_vhosts", "name"]).stdout
    removed = []
    for name in (line.strip() for line in out.splitlines()):
        if name and _leftover(name):
            _run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)
            removed.append(name)
    return removed


def create_vhost() -> str:
    """A fresh virtual host the broker user may use: this stack's queues and nobody else's."""
    name = f"{NAME_PREFIX}{os.getpid()}-{os.urandom(3).hex()}"
    _run(["rabbitmqctl", "-q", "add_vhost", name])
    _run(["rabbitmqctl", "-q", "set_permissions", "-p", name, BROKER_USER, ".*", ".*", ".*"])
    return name


def delete_vhost(name: str) -> None:
    _run(["rabbitmqctl", "-q", "delete_vhost", name], check=False)


def broker_url(host: str, port: int, vhost: str) -> str:
    return f"amqp://{BROKER_USER}:{BROKER_PASSWORD}@{host}:{port}/{quote(vhost, safe='')}"


def backend_url(instance_url: URL, host: str, port: int) -> str:
    """Celery's SQLAlchemy result backend in the instance database, reached at host:port."""
    return "db+" + instance_url.set(
        drivername="postgresql+psycopg2", host=host, port=port
    ).render_as_string(hide_password=False)


# -- instance configuration -----------------------------------------------------------------


def _merge(base: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value
    return base


def write_instance_yaml(
    target: Path,
    *,
    source: Path = CELERY_DAGSTER_YAML,
    postgres_port: int = POSTGRES_PORT,
    overrides: Mapping[str, Any] | None = None,
) -> Path:
    """`source` as a host's dagster.yaml: the storage port follows a server (or relay) that is
    not on the standard one, and `overrides` (e.g. a faster run-monitoring poll) are merged
    in. Never touch the limits with `overrides`: they are what the scale-out test proves."""
    config = yaml.safe_load(source.read_text(encoding="utf-8"))
    if postgres_port != POSTGRES_PORT:
        config["storage"]["postgres"]["postgres_db"]["port"] = postgres_port
    _merge(config, overrides or {})
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(
        f"# Generated by inventory_pipelines.celery_stack from {source.name}\n"
        + yaml.safe_dump(config, sort_keys=False),
        encoding="utf-8",
    )
    return target


def postgres_environment(url: URL, host: str) -> dict[str, str]:
    """The DAGSTER_PG_* settings of dagster.celery.yaml for the instance database."""
    return {
        "DAGSTER_PG_HOST": host,
        "DAGSTER_PG_USER": url.username or "postgres",
        "DAGSTER_PG_PASSWORD": url.password or "",
        "DAGSTER_PG_DB": url.database or "",
    }


# -- the stack -----------------------------------------------------------------------------


@dataclass
class CeleryDevStack(DevStack):
    """DevStack (simulator, webserver, daemon, code server in the root namespace) whose
    services also get `extra_environment` (the instance database and the broker)."""

    extra_environment: dict[str, str] = field(default_factory=dict)

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env.update(self.extra_environment)
        return env


@dataclass
class Worker:
    """One `dagster-celery worker` in its host's namespace."""

    host: WorkerHost
    node_name: str
    service: ServiceProcess
    dagster_home: Path

    def ready(self) -> bool:
        """Celery logs `<node>@<hostname> ready.` once it consumes from the queue."""
        self.service.check_alive()
        return (
            re.search(rf"{re.escape(self.node_name)}@\S+ ready\.", self.service.log_tail(400))
            is not None
        )

    def processes(self) -> list[int]:
        return self.service.members()

    def kill(self, timeout: float = 10.0) -> None:
        """SIGKILL to every process of the worker at once, as when its host dies; returns once
        none is left (or after `timeout`)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.service.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.service.popen.wait(timeout=timeout)
        deadline = time.monotonic() + timeout
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.1)


@dataclass
class CeleryHosts:
    """Worker hosts sharing one Dagster instance database and one RabbitMQ virtual host.

    `instance_database_url` is the instance's PostgreSQL database (as reached from the root
    namespace), `inventory_database_url` the inventory's; `simulator_port` the Graph
    simulator's port on loopback. `start()` makes the virtual host, the namespaces and their
    relays; `start_worker()` starts one worker per call; `stop()` undoes all of it.
    """

    state_dir: Path
    instance_database_url: str
    inventory_database_url: str
    simulator_port: int
    host_count: int = 2
    worker_concurrency: int = 2
    instance_yaml: Path = CELERY_DAGSTER_YAML
    instance_overrides: Mapping[str, Any] = field(default_factory=dict)
    worker_includes: Sequence[str] = ()
    worker_environment: Mapping[str, str] = field(default_factory=dict)
    vhost: str = ""
    hosts: list[WorkerHost] = field(default_factory=list)
    workers: list[Worker] = field(default_factory=list)
    relays: list[ServiceProcess] = field(default_factory=list)
    relay_ports: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def instance_url(self) -> URL:
        return make_url(self.instance_database_url)

    @property
    def compute_logs_dir(self) -> Path:
        """Stands for the mount every host shares (all hosts here see one file system)."""
        return self.state_dir / "compute_logs"

    # -- the root namespace: daemon, webserver ---------------------------------------------

    def root_environment(self) -> dict[str, str]:
        """What the daemon and webserver need besides DevStack's settings."""
        url = self.instance_url
        return {
            **postgres_environment(url, url.host or HOST),
            ENV_BROKER_URL: broker_url(BROKER_HOST, BROKER_PORT, self.vhost),
            ENV_BACKEND_URL: backend_url(url, url.host or HOST, url.port or POSTGRES_PORT),
            ENV_COMPUTE_LOGS_DIR: str(self.compute_logs_dir),
        }

    def create_instance_schema(self) -> None:
        """Create the instance database's tables once, before the daemon and the workers open
        it at the same time (dagster-postgres creates missing tables on open, and two processes
        doing so at once collide)."""
        home = self.state_dir / "schema"
        home.mkdir(parents=True, exist_ok=True)
        url = self.instance_url.set(drivername="postgresql+psycopg2")
        (home / "dagster.yaml").write_text(
            yaml.safe_dump(
                {
                    "storage": {
                        "postgres": {"postgres_url": url.render_as_string(hide_password=False)}
                    },
                    "telemetry": {"enabled": False},
                }
            ),
            encoding="utf-8",
        )
        with DagsterInstance.from_config(str(home)):
            pass

    def root_instance_yaml(self) -> Path:
        """The instance configuration of the root namespace (for DevStack's dagster_yaml)."""
        return write_instance_yaml(
            self.state_dir / "root" / "dagster.celery.yaml",
            source=self.instance_yaml,
            postgres_port=self.instance_url.port or POSTGRES_PORT,
            overrides=self.instance_overrides,
        )

    # -- hosts -------------------------------------------------------------------------------

    def start(self) -> CeleryHosts:
        try:
            remove_leftover_hosts()
            remove_leftover_vhosts()
            self.create_instance_schema()
            self.vhost = create_vhost()
            taken = _used_networks()
            for index in range(self.host_count):
                self.hosts.append(create_host(index, taken))
            self._start_relays()
        except BaseException:
            self.stop()
            raise
        return self

    def _start_relays(self) -> None:
        """One relay in the root namespace for all hosts (gateway → loopback), and one in each
        namespace for the OAuth authority, which must be https or loopback."""
        inventory = make_url(self.inventory_database_url)
        instance = self.instance_url
        targets = {
            "postgres": (instance.host or HOST, instance.port or POSTGRES_PORT),
            "broker": (BROKER_HOST, BROKER_PORT),
            "graph": (HOST, self.simulator_port),
        }
        if (inventory.host, inventory.port) != (instance.host, instance.port):
            targets["inventory"] = (inventory.host or HOST, inventory.port or POSTGRES_PORT)
        routes = []
        for host in self.hosts:
            ports: dict[str, int] = {}
            for name, (target_host, target_port) in targets.items():
                port = target_port if port_is_free(target_port, host.gateway) else 0
                ports[name] = port or free_port(host.gateway)
                routes.append(f"{host.gateway}:{ports[name]}={target_host}:{target_port}")
            self.relay_ports[host.name] = ports
        self.relays.append(self._start_relay("relay (root namespace)", routes, None))
        for host in self.hosts:
            authority = f"{HOST}:{self.simulator_port}"
            route = f"{authority}={host.gateway}:{self.relay_ports[host.name]['graph']}"
            self.relays.append(self._start_relay(f"relay ({host.name})", [route], host))

    def _start_relay(
        self, name: str, routes: Sequence[str], host: WorkerHost | None
    ) -> ServiceProcess:
        argv = [sys.executable, "-m", "inventory_pipelines.tcp_relay", *routes]
        log = self.state_dir / "logs" / f"relay-{host.name if host else 'root'}.log"
        service = start_service(
            name, host.wrap(argv) if host else argv, env=self._base_environment(), log_path=log
        )
        try:
            wait_until(
                lambda: "ready" in service.log_tail(5),
                timeout=30,
                what=f"the {name} to listen",
                services=[service],
                interval=0.1,
            )
        except BaseException:
            service.stop()
            raise
        return service

    # -- workers -----------------------------------------------------------------------------

    def _base_environment(self) -> dict[str, str]:
        env = {k: os.environ[k] for k in PASSED_THROUGH if k in os.environ}
        # `dagster-celery worker start` runs `celery` from PATH: this interpreter's.
        env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def host_environment(self, host: WorkerHost, dagster_home: Path) -> dict[str, str]:
        """Everything a worker host needs: its own DAGSTER_HOME, the instance database, the
        broker and result backend, the inventory database and the Graph settings, all as
        reached from that host."""
        ports = self.relay_ports[host.name]
        instance = self.instance_url
        inventory = make_url(self.inventory_database_url)
        inventory_port = ports.get("inventory", ports["postgres"])
        env = self._base_environment()
        env.update(
            {
                "DAGSTER_HOME": str(dagster_home),
                **postgres_environment(instance, host.gateway),
                ENV_BROKER_URL: broker_url(host.gateway, ports["broker"], self.vhost),
                ENV_BACKEND_URL: backend_url(instance, host.gateway, ports["postgres"]),
                ENV_COMPUTE_LOGS_DIR: str(self.compute_logs_dir),
                "INVENTORY_DATABASE_URL": inventory.set(
                    host=host.gateway, port=inventory_port
                ).render_as_string(hide_password=False),
                "GRAPH_BASE_URL": f"http://{host.gateway}:{ports['graph']}",
                # Credentials go to the authority only over https or loopback: the host's own
                # loopback, relayed over the veth pair.
                "GRAPH_AUTHORITY_URL": f"http://{HOST}:{self.simulator_port}",
                "GRAPH_CLIENT_ID": SIMULATOR_CLIENT_ID,
                "GRAPH_CLIENT_SECRET": SIMULATOR_CLIENT_SECRET,
                # The code location is imported by module name, as on the code server.
                "PYTHONPATH": str(REPO_ROOT),
            }
        )
        env.update(self.worker_environment)
        return env

    def start_worker(self, host: WorkerHost, *, node_name: str | None = None) -> Worker:
        """`dagster-celery worker start` in the host's namespace, with the host's own
        DAGSTER_HOME holding its copy of the instance configuration."""
        node = node_name or host.name
        home = self.state_dir / "hosts" / host.name / "dagster_home"
        write_instance_yaml(
            home / "dagster.yaml",
            source=self.instance_yaml,
            postgres_port=self.relay_ports[host.name]["postgres"],
            overrides=self.instance_overrides,
        )
        argv = [
            str(Path(sys.executable).parent / "dagster-celery"),
            "worker",
            "start",
            "-A",
            "dagster_celery.app",
            "-y",
            str(CELERY_WORKER_YAML),
            "-n",
            node,
        ]
        for module in self.worker_includes:
            argv += ["-i", module]
        argv += ["--", f"--concurrency={self.worker_concurrency}"]
        service = start_service(
            f"celery worker {node}",
            host.wrap(argv),
            env=self.host_environment(host, home),
            log_path=self.state_dir / "logs" / f"worker-{node}.log",
        )
        worker = Worker(host, node, service, home)
        self.workers.append(worker)
        return worker

    def wait_for_workers(self, timeout: float = 120.0) -> None:
        for worker in self.workers:
            wait_until(
                worker.ready,
                timeout=timeout,
                what=f"celery worker {worker.node_name} to be ready",
                services=[worker.service],
            )

    def check_alive(self) -> None:
        for relay in self.relays:
            relay.check_alive()

    def processes(self) -> list[int]:
        """Every live process this stack started (workers and relays, with their children)."""
        services = [w.service for w in self.workers] + self.relays
        return sorted({pid for s in services for pid in s.members()})

    def stop(self, timeout: float = 10.0) -> None:
        """Stop workers, relays, namespaces and the virtual host. Idempotent."""
        while self.workers:
            self.workers.pop().service.stop(timeout)
        while self.relays:
            self.relays.pop().stop(timeout)
        while self.hosts:
            delete_host(self.hosts.pop())
        if self.vhost:
            delete_vhost(self.vhost)
            self.vhost = ""

    def __enter__(self) -> CeleryHosts:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
