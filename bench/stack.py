"""What the benchmarks run against: the Graph simulator in its own process, and throwaway
databases (PostgreSQL `inventory_bench_*` databases, SQLite files) with their statistics.

The simulator runs as a subprocess so that, on a 2-core machine, it never shares a GIL with
the measured client. On PostgreSQL the measured code connects as a throwaway application role
(no superuser, no BYPASSRLS) because that is how production connects: row-level security
applies to it. Setup, CHECKPOINT, VACUUM and statistics use the admin URL.
"""

from __future__ import annotations

import contextlib
import os
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.pool import NullPool

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.migrations import upgrade
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.simulator import SimulatorControl

REPO_ROOT = Path(__file__).resolve().parents[1]
ADMIN_URL_SETTING = "INVENTORY_BENCH_POSTGRES_URL"
DEFAULT_ADMIN_URL = "postgresql+psycopg2://postgres@127.0.0.1:5432/postgres"
DATABASE_PREFIX = "inventory_bench_"
_ANNOUNCE = re.compile(r"Graph simulator on (http://127\.0\.0\.1:\d+)")
_START_TIMEOUT = 60.0


def admin_url() -> str:
    """Admin URL of the PostgreSQL server (may create databases and roles)."""
    return os.environ.get(ADMIN_URL_SETTING, DEFAULT_ADMIN_URL)


def autocommit_engine(url: str) -> Engine:
    """For statements that cannot run in a transaction (CHECKPOINT, VACUUM, CREATE DATABASE)."""
    return create_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)


class SimulatorProcess:
    """`inventory-pipelines simulator` on a free loopback port, in a child process we own.

    Identity throttling is off (`--identity-rps 0`): with it on, the five identity types of a
    100k-item tenant would take minutes at 1 request/s and hide everything else.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen[str] | None = None
        self._output: list[str] = []
        self._control: SimulatorControl | None = None
        self.base_url = ""

    def __enter__(self) -> SimulatorProcess:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def pid(self) -> int:
        assert self._process is not None
        return self._process.pid

    @property
    def control(self) -> SimulatorControl:
        if self._control is None:
            raise RuntimeError("the simulator is not running")
        return self._control

    def start(self) -> None:
        command = [
            sys.executable,
            "-u",
            "-m",
            "inventory_pipelines.cli",
            "simulator",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--identity-rps",
            "0",
        ]
        self._process = subprocess.Popen(
            command,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self._process.stdout is not None
        selector = selectors.DefaultSelector()
        selector.register(self._process.stdout, selectors.EVENT_READ)
        deadline = time.monotonic() + _START_TIMEOUT
        while not self.base_url:
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the simulator did not start: {''.join(self._output)[-2000:]}")
            if selector.select(timeout=0.5):
                line = self._process.stdout.readline()
                self._output.append(line)
                match = _ANNOUNCE.search(line)
                if match:
                    self.base_url = match.group(1)
        selector.close()
        # Keep draining its output so a chatty server never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        self._control = SimulatorControl(self.base_url, timeout=300.0)
        for _ in range(100):
            with contextlib.suppress(Exception):
                if self._control.health():
                    return
            time.sleep(0.05)
        raise RuntimeError("the simulator announced itself but does not answer")

    def _drain(self) -> None:
        process = self._process
        if process is not None and process.stdout is not None:
            for line in process.stdout:
                self._output.append(line)
                del self._output[:-200]

    def stop(self) -> None:
        """Stop our simulator process (by its PID, through the Popen handle)."""
        if self._control is not None:
            self._control.close()
            self._control = None
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)


@dataclass
class BenchDatabase:
    """One throwaway inventory database: `url` for measured code, `admin_url` for setup."""

    dialect: str
    url: str
    admin_url: str
    name: str
    role: str | None = None

    @property
    def is_postgresql(self) -> bool:
        return self.dialect == "postgresql"


@dataclass
class DatabaseFactory:
    """Creates migrated databases with registered tenants and drops them again.

    On PostgreSQL it also owns one application role for the whole run, dropped in `close`.
    """

    workdir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="inventory_bench_")))
    server_url: str = field(default_factory=admin_url)
    _created: list[BenchDatabase] = field(default_factory=list)
    _role: str | None = None
    _role_password: str = field(default_factory=lambda: uuid.uuid4().hex)
    _role_grantable: bool = True

    def __enter__(self) -> DatabaseFactory:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def create(self, dialect: str, tenants: list[str], *, label: str = "db") -> BenchDatabase:
        """An empty, migrated database with `tenants` registered (and active)."""
        if dialect == "sqlite":
            path = self.workdir / f"{label}_{uuid.uuid4().hex[:8]}.db"
            url = f"sqlite:///{path}"
            database = BenchDatabase("sqlite", url, url, str(path))
        elif dialect == "postgresql":
            database = self._create_postgresql(label)
        else:
            raise ValueError(f"unknown dialect {dialect!r}")
        self._created.append(database)
        engine = create_inventory_engine(database.admin_url)
        try:
            upgrade(engine)
            for tenant_id in tenants:
                add_tenant(engine, tenant_id, f"Bench tenant {tenant_id[:8]}")
            if database.is_postgresql:
                database.role = self._grant_role(engine)
                if database.role is not None:
                    database.url = (
                        make_url(database.admin_url)
                        .set(username=database.role, password=self._role_password)
                        .render_as_string(hide_password=False)
                    )
        finally:
            engine.dispose()
        return database

    def create_empty(self, label: str) -> BenchDatabase:
        """An empty PostgreSQL database (no migrations, no tenants) for a peer tool that
        creates its own tables; the measured tool connects with the admin URL."""
        database = self._create_postgresql(label)
        self._created.append(database)
        return database

    def _create_postgresql(self, label: str) -> BenchDatabase:
        name = f"{DATABASE_PREFIX}{label}_{uuid.uuid4().hex[:8]}"
        engine = autocommit_engine(self.server_url)
        try:
            with engine.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{name}"'))
        finally:
            engine.dispose()
        url = make_url(self.server_url).set(database=name).render_as_string(hide_password=False)
        return BenchDatabase("postgresql", url, url, name)

    def _grant_role(self, engine: Engine) -> str | None:
        """The run's application role with the app's grants in this database, if the product
        defines them; otherwise the measured code runs as the admin (said in the results)."""
        if not self._role_grantable:
            return None
        try:
            from inventory_pipelines.core.app_role import grant_app_role
        except ImportError:
            self._role_grantable = False
            return None
        if self._role is None:
            role = f"{DATABASE_PREFIX}app_{uuid.uuid4().hex[:8]}"
            server = autocommit_engine(self.server_url)
            try:
                with server.connect() as conn:
                    # A password too, for servers that do not trust loopback connections.
                    conn.execute(
                        text(
                            f'CREATE ROLE "{role}" LOGIN NOSUPERUSER NOBYPASSRLS '
                            f"PASSWORD '{self._role_password}'"
                        )
                    )
            finally:
                server.dispose()
            self._role = role
        grant_app_role(engine, self._role)
        return self._role

    def drop(self, database: BenchDatabase) -> None:
        if database in self._created:
            self._created.remove(database)
        if database.is_postgresql:
            engine = autocommit_engine(self.server_url)
            try:
                with engine.connect() as conn:
                    conn.execute(text(f'DROP DATABASE IF EXISTS "{database.name}" WITH (FORCE)'))
            finally:
                engine.dispose()
        else:
            for suffix in ("", "-wal", "-shm"):
                Path(database.name + suffix).unlink(missing_ok=True)

    def close(self) -> None:
        """Drop every database this factory created, then its role and work directory."""
        for database in list(self._created):
            with contextlib.suppress(Exception):
                self.drop(database)
        if self._role is not None:
            engine = autocommit_engine(self.server_url)
            try:
                with engine.connect() as conn:
                    conn.execute(text(f'DROP ROLE IF EXISTS "{self._role}"'))
            finally:
                engine.dispose()
            self._role = None
        shutil.rmtree(self.workdir, ignore_errors=True)


# -- CPU accounting --------------------------------------------------------------------------

_TICKS = os.sysconf("SC_CLK_TCK")


def _proc_stat(pid: int) -> list[str]:
    raw = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
    return raw[raw.rindex(")") + 2 :].split()  # fields from the state on (field 3)


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of a live process."""
    fields = _proc_stat(pid)
    return (int(fields[11]) + int(fields[12])) / _TICKS


def reaped_children_cpu_seconds(pid: int) -> float:
    """cutime + cstime: CPU of the process's children that have exited and been reaped."""
    fields = _proc_stat(pid)
    return (int(fields[13]) + int(fields[14])) / _TICKS


def postmaster_pid() -> int | None:
    """The PostgreSQL postmaster (parent of every backend), if it runs on this machine."""
    engine = autocommit_engine(admin_url())
    try:
        with engine.connect() as conn:
            backend = int(conn.execute(text("SELECT pg_backend_pid()")).scalar_one())
        return int(_proc_stat(backend)[1])
    except (OSError, ValueError, IndexError):
        return None
    finally:
        engine.dispose()


@dataclass
class CpuMeter:
    """CPU seconds of the simulator process and of PostgreSQL backends around one run.

    Backends count once they have exited (the postmaster's reaped-children time), so read it
    after the measured process closed its connections. Backends of other databases that exit
    in the same window are counted too: the figure is approximate on a shared server.
    """

    simulator_pid: int
    postmaster: int | None = None

    def snapshot(self) -> dict[str, float]:
        values = {"simulator": process_cpu_seconds(self.simulator_pid)}
        if self.postmaster is not None:
            try:
                values["postgres_backends"] = reaped_children_cpu_seconds(self.postmaster)
            except OSError:
                self.postmaster = None
        return values

    @staticmethod
    def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
        return {key: round(after[key] - before[key], 3) for key in after if key in before}


# -- PostgreSQL statistics -------------------------------------------------------------------


def checkpoint(database: BenchDatabase) -> None:
    """PostgreSQL CHECKPOINT; on SQLite a truncating WAL checkpoint (its nearest analogue)."""
    if database.is_postgresql:
        _admin_statement(database, "CHECKPOINT")
    else:
        _admin_statement(database, "PRAGMA wal_checkpoint(TRUNCATE)")


def vacuum_analyze(database: BenchDatabase, *, all_tables: bool = False) -> None:
    """What autovacuum would do between two nightly syncs (it is off on the bench server);
    `all_tables` for a peer's database, whose tables are its own."""
    if database.is_postgresql:
        _admin_statement(
            database, "VACUUM (ANALYZE)" if all_tables else "VACUUM (ANALYZE) inventory_items"
        )
    else:
        _admin_statement(database, "ANALYZE")


def _admin_statement(database: BenchDatabase, sql: str) -> None:
    engine = autocommit_engine(database.admin_url)
    try:
        with engine.connect() as conn:
            conn.exec_driver_sql(sql)
    finally:
        engine.dispose()


def write_stats(database: BenchDatabase) -> dict[str, Any]:
    """Counters around a measured run on PostgreSQL (empty on SQLite).

    Rows written to inventory_items; cluster-wide WAL records and full-page images; the
    position of the last checkpoint (to tell whether one happened inside the window); and
    commits in other databases (to tell whether the cluster-wide WAL figure is ours alone).
    Read after the measured process exited and its backends are gone, because backends
    publish their statistics when they exit.
    """
    if not database.is_postgresql:
        return {}
    engine = autocommit_engine(database.admin_url)
    try:
        with engine.connect() as conn:
            _wait_for_backends_gone(conn, database.name)
            conn.execute(text("SELECT pg_stat_clear_snapshot()"))
            tables = conn.execute(
                text(
                    "SELECT n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
                    "WHERE relname = 'inventory_items'"
                )
            ).one()
            wal = conn.execute(text("SELECT wal_records, wal_fpi FROM pg_stat_wal")).one()
            redo = conn.execute(
                text("SELECT pg_wal_lsn_diff(redo_lsn, '0/0') FROM pg_control_checkpoint()")
            ).scalar_one()
            foreign = conn.execute(
                text(
                    "SELECT datid, xact_commit FROM pg_stat_database "
                    "WHERE datname IS NOT NULL AND datname <> :name"
                ),
                {"name": database.name},
            ).all()
    finally:
        engine.dispose()
    return {
        "n_tup_ins": int(tables.n_tup_ins),
        "n_tup_upd": int(tables.n_tup_upd),
        "n_tup_hot_upd": int(tables.n_tup_hot_upd),
        "wal_records": int(wal.wal_records),
        "wal_fpi": int(wal.wal_fpi),
        "checkpoint_redo": int(redo),
        "foreign_commits": {int(datid): int(commits) for datid, commits in foreign},
    }


def _wait_for_backends_gone(conn: Any, name: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    query = text(
        "SELECT count(*) FROM pg_stat_activity WHERE datname = :name AND pid <> pg_backend_pid()"
    )
    while time.monotonic() < deadline:
        if conn.execute(query, {"name": name}).scalar() == 0:
            return
        time.sleep(0.05)


def stats_delta(before: dict[str, Any], after: dict[str, Any]) -> dict[str, int]:
    """Counter differences; `checkpoints` is 1 when the checkpoint position moved, and
    `foreign_commits` counts commits in databases that existed before and after."""
    delta = {
        key: int(after[key] - before[key])
        for key in after
        if key in before and isinstance(after[key], int)
    }
    if "checkpoint_redo" in delta:
        delta["checkpoints"] = int(delta.pop("checkpoint_redo") != 0)
    if "foreign_commits" in after and "foreign_commits" in before:
        old, new = before["foreign_commits"], after["foreign_commits"]
        delta["foreign_commits"] = sum(new[db] - old[db] for db in new if db in old)
    return delta


def server_settings() -> dict[str, str]:
    """Version and the settings that matter for write throughput and WAL volume."""
    names = (
        "shared_buffers",
        "synchronous_commit",
        "wal_compression",
        "full_page_writes",
        "fsync",
        "checkpoint_timeout",
        "max_wal_size",
        "autovacuum",
        "work_mem",
        "data_checksums",
    )
    engine = autocommit_engine(admin_url())
    try:
        with engine.connect() as conn:
            settings = {"version": str(conn.execute(text("SHOW server_version")).scalar())}
            for name in names:
                settings[name] = str(conn.exec_driver_sql(f"SHOW {name}").scalar())
    finally:
        engine.dispose()
    return settings


def postgres_reachable() -> bool:
    engine = create_engine(admin_url(), connect_args={"connect_timeout": 3})
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return True
    except Exception:
        return False
    finally:
        engine.dispose()
