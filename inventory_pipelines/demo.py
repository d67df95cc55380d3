"""`make demo`: the Graph simulator with four demo tenants, Dagster UI and daemon on SQLite.

Starts from a clean state directory every time: migrates the inventory database, starts the
simulator, registers the tenants with `inventory-pipelines tenants add` and starts Dagster,
whose sensor then requests the first syncs by itself. The demo story
(`inventory_pipelines.demo_story`) changes tenants between their first and later syncs, and the
refresh schedule runs every 2 minutes instead of nightly, so missing items, the change feed,
throttling and failures show within minutes; coverage refreshes every minute and calls a pair
stale after 6 minutes without a complete fetch, so the types that keep failing turn stale.
Ctrl-C or SIGTERM (to the process or its group) stops everything.

Settings: DEMO_PORT (UI port, default 3000), DEMO_SIMULATOR_PORT (default: any free port),
DEMO_STATE_DIR (default `.state/demo/` in the repository; emptied at every start).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from sqlalchemy import Engine, create_engine

from inventory_pipelines.core.selection import load_selections
from inventory_pipelines.demo_story import DEMO_TENANTS, DemoStory
from inventory_pipelines.devstack import (
    HOST,
    REPO_ROOT,
    DevStack,
    DevStackError,
    free_port,
    port_is_free,
)
from inventory_pipelines.simulator.control import SimulatorControl
from inventory_pipelines.simulator.scenario import load_scenario

DEFAULT_STATE_DIR = REPO_ROOT / ".state" / "demo"
STATE_ENTRIES = frozenset(
    {"inventory.db", "inventory.db-wal", "inventory.db-shm", "dagster_home", "logs"}
)
SCENARIO = Path(__file__).with_name("demo_scenario.toml")
DEFAULT_UI_PORT = 3000
REFRESH_CRON = "*/2 * * * *"
"""The demo's `nightly_inventory_refresh`: every 2 minutes, so later syncs follow by themselves."""
COVERAGE_INTERVAL_MINUTES = "1"
"""The demo's `inventory_coverage` follows the syncs within a minute (default: 5)."""
COVERAGE_MAX_AGE_HOURS = "0.1"
"""The demo's `coverage_is_fresh` calls a pair stale after 6 minutes without a complete fetch
(default: 26 hours, a nightly refresh plus two). The 2-minute refresh keeps healthy pairs well
inside that; the types that keep failing after the story's changes (Northwind's conditional
access, everything at Litware) turn stale about 6 minutes after their last complete fetch, as
they would after a day in production."""


class DemoError(RuntimeError):
    """The demo cannot start; the message says what to change."""


class _StopRequested:
    """Signal handler: the first SIGINT/SIGTERM raises KeyboardInterrupt, later ones are
    ignored. Ctrl-C and `kill -TERM -<pgid>` both signal the whole group, and `make` forwards
    a SIGTERM of its own, so a second signal must not cut the shutdown short."""

    def __init__(self) -> None:
        self.stopping = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if not self.stopping:
            self.stopping = True
            raise KeyboardInterrupt

    def install(self) -> None:
        signal.signal(signal.SIGINT, self)
        signal.signal(signal.SIGTERM, self)


_STOP = _StopRequested()


def _port_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DemoError(f"{name}={raw!r} is not a TCP port; set e.g. {name}=3001")
    return int(raw)


def _state_dir() -> Path:
    raw = os.environ.get("DEMO_STATE_DIR", "").strip()
    return Path(raw).resolve() if raw else DEFAULT_STATE_DIR


def _reset_state_dir(path: Path) -> None:
    """Empty the demo's state directory, refusing one that holds anything the demo did not
    create (DEMO_STATE_DIR pointing at the wrong place must not delete someone's files)."""
    if path.exists():
        foreign = sorted(p.name for p in path.iterdir() if p.name not in STATE_ENTRIES)
        if foreign:
            raise DemoError(
                f"{path} holds files the demo did not create ({', '.join(foreign[:3])}); "
                "set DEMO_STATE_DIR to an empty or former demo directory"
            )
        shutil.rmtree(path)
    path.mkdir(parents=True)


def _shown(path: Path) -> str:
    """A path as the user can type it from the repository root."""
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def _read_only_engine(database: Path) -> Engine:
    """The story only reads; a read-only connection can never take the write lock."""
    return create_engine(f"sqlite:///{database.as_uri()}?mode=ro&uri=true")


def _cli(args: Sequence[str], env: Mapping[str, str]) -> None:
    """Run `inventory-pipelines ARGS` like an operator would, echoing it."""
    print(f"$ inventory-pipelines {shlex.join(args)}", flush=True)
    completed = subprocess.run(
        [sys.executable, "-m", "inventory_pipelines.cli", *args],
        env=dict(env),
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    output = (completed.stdout + completed.stderr).strip()
    if output:
        print("  " + output.replace("\n", "\n  "), flush=True)
    if completed.returncode != 0:
        raise DemoError(f"`inventory-pipelines {shlex.join(args)}` failed")


def _check_scenario() -> None:
    configured = set(load_scenario(SCENARIO).get("tenants") or {}) - {"*"}
    if configured != {tenant.tenant_id for tenant in DEMO_TENANTS}:
        raise DemoError(f"{SCENARIO.name} and DEMO_TENANTS in demo_story.py name different tenants")


def run_demo() -> None:
    ui_port = _port_setting("DEMO_PORT", DEFAULT_UI_PORT)
    simulator_port = _port_setting("DEMO_SIMULATOR_PORT", 0) or free_port()
    for name, port in (("DEMO_PORT", ui_port), ("DEMO_SIMULATOR_PORT", simulator_port)):
        if not port_is_free(port):
            raise DemoError(f"port {port} on {HOST} is in use; set {name} to a free port")
    _check_scenario()

    state_dir = _state_dir()
    _reset_state_dir(state_dir)
    database = state_dir / "inventory.db"
    # Read by definitions.py when the code location loads; the demo's processes only.
    os.environ["INVENTORY_NIGHTLY_CRON"] = REFRESH_CRON
    os.environ["INVENTORY_COVERAGE_INTERVAL_MINUTES"] = COVERAGE_INTERVAL_MINUTES
    os.environ["INVENTORY_COVERAGE_MAX_AGE_HOURS"] = COVERAGE_MAX_AGE_HOURS
    stack = DevStack(
        state_dir=state_dir,
        database_url=f"sqlite:///{database}",
        scenario=SCENARIO,
        dagster_port=ui_port,
        simulator_port=simulator_port,
        start_timeout=180.0,
    )
    env = stack.environment()
    stop_story = threading.Event()
    story_thread: threading.Thread | None = None
    try:
        _cli(["db", "upgrade"], env)
        print(f"starting the Graph simulator on {stack.simulator_url} …", flush=True)
        stack.start_simulator()
        for tenant in DEMO_TENANTS:
            _cli(
                ["tenants", "add", tenant.tenant_id, "--name", tenant.name, "--key", tenant.key],
                env,
            )
        print("starting Dagster (webserver, daemon, code server) …", flush=True)
        stack.start_dagster()
        _announce(stack, database)
        story_thread = threading.Thread(
            target=_tell_story,
            args=(database, stack.simulator_url, stop_story),
            name="demo-story",
            daemon=True,
        )
        story_thread.start()
        while True:
            stack.check_alive()
            time.sleep(1.0)
    finally:
        _STOP.stopping = True  # however we got here, a signal must not cut the shutdown short
        print("\nstopping Dagster and the simulator …", flush=True)
        stop_story.set()
        if story_thread is not None:
            story_thread.join(timeout=10.0)
        stack.stop()
        print(f"stopped; state kept in {_shown(state_dir)}/ until the next `make demo`", flush=True)


def _tell_story(database: Path, simulator_url: str, stop: threading.Event) -> None:
    """The demo story on its own thread, with its own connections."""
    engine = _read_only_engine(database)
    try:
        with SimulatorControl(simulator_url) as control:
            story = DemoStory(
                engine,
                control,
                DEMO_TENANTS,
                load_selections(),
                say=lambda line: print(line, flush=True),
            )
            story.run(stop)
    finally:
        engine.dispose()


def _announce(stack: DevStack, database: Path) -> None:
    tenants = "\n".join(
        f"  {t.name:<10} key {t.key:<10} {t.tenant_id}\n"
        + textwrap.indent(textwrap.fill(t.story, 84), "      ")
        for t in DEMO_TENANTS
    )
    print(
        f"""
Dagster UI: {stack.dagster_url}

No click needed: the new-tenant sensor picks up the {len(DEMO_TENANTS)} tenants within seconds and
requests their first syncs (one run per tenant x selection); the run queue admits one run per
tenant at a time, and inventory_missing follows by automation. For the demo only, the refresh
schedule (nightly_inventory_refresh) runs every 2 minutes, so later syncs follow by themselves,
inventory_coverage follows within a minute, and its check coverage_is_fresh calls a pair stale
after 6 minutes without a complete fetch (26 hours outside the demo).
Watch Runs and Assets > inventory_items / inventory_missing / inventory_coverage.

{tenants}

The story's changes are printed below as they happen.

  Graph simulator   {stack.simulator_url}  (control API under /_simulator/)
  inventory DB      {_shown(database)}
  DAGSTER_HOME      {_shown(stack.home)}
  logs              {_shown(stack.state_dir / "logs")}/

From another shell, e.g.:
  export INVENTORY_DATABASE_URL=sqlite:///{_shown(database)}
  .venv/bin/inventory-pipelines missing --tenant contoso --selection all
  .venv/bin/inventory-pipelines changes --tenant contoso
  .venv/bin/inventory-pipelines coverage --tenant northwind

Ctrl-C stops everything.
""",
        flush=True,
    )


def main() -> int:
    # Ctrl-C and SIGTERM both stop the stack, even when started in the background.
    _STOP.install()
    try:
        run_demo()
    except KeyboardInterrupt:
        return 0
    except (DemoError, DevStackError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
