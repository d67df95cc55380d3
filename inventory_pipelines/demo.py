"""`make demo`: the Graph simulator with a few demo tenants, Dagster UI and daemon on SQLite.

Starts from a clean `.state/demo/` every time: migrates the inventory database, starts the
simulator, registers the tenants with `inventory-pipelines tenants add` and starts Dagster,
whose sensor then requests the first syncs by itself. Ctrl-C stops everything it started.
Settings: DEMO_PORT (UI port, default 3000), DEMO_SIMULATOR_PORT (default: any free port).
"""

from __future__ import annotations

import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType

from inventory_pipelines.devstack import (
    HOST,
    REPO_ROOT,
    DevStack,
    DevStackError,
    free_port,
    port_is_free,
)
from inventory_pipelines.simulator.scenario import load_scenario

STATE_DIR = REPO_ROOT / ".state" / "demo"
SCENARIO = Path(__file__).with_name("demo_scenario.toml")
DEFAULT_UI_PORT = 3000
DEMO_TENANTS = {
    "dec00001-0000-4000-8000-000000000001": "Contoso (large, ~2,000 items)",
    "dec00002-0000-4000-8000-000000000002": "Fabrikam (throttled)",
    "dec00003-0000-4000-8000-000000000003": "Northwind (conditional access forbidden)",
}


class DemoError(RuntimeError):
    """The demo cannot start; the message says what to change."""


def _port_setting(name: str, default: int) -> int:
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    if not raw.isdigit() or not 0 < int(raw) < 65536:
        raise DemoError(f"{name}={raw!r} is not a TCP port; set e.g. {name}=3001")
    return int(raw)


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


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _check_scenario() -> None:
    configured = set(load_scenario(SCENARIO).get("tenants") or {}) - {"*"}
    if configured != set(DEMO_TENANTS):
        raise DemoError(f"{SCENARIO.name} and DEMO_TENANTS in demo.py name different tenants")


def run_demo() -> None:
    ui_port = _port_setting("DEMO_PORT", DEFAULT_UI_PORT)
    simulator_port = _port_setting("DEMO_SIMULATOR_PORT", 0) or free_port()
    for name, port in (("DEMO_PORT", ui_port), ("DEMO_SIMULATOR_PORT", simulator_port)):
        if not port_is_free(port):
            raise DemoError(f"port {port} on {HOST} is in use; set {name} to a free port")
    _check_scenario()

    shutil.rmtree(STATE_DIR, ignore_errors=True)
    STATE_DIR.mkdir(parents=True)
    database = STATE_DIR / "inventory.db"
    stack = DevStack(
        state_dir=STATE_DIR,
        database_url=f"sqlite:///{database}",
        scenario=SCENARIO,
        dagster_port=ui_port,
        simulator_port=simulator_port,
        start_timeout=180.0,
    )
    env = stack.environment()
    try:
        _cli(["db", "upgrade"], env)
        print(f"starting the Graph simulator on {stack.simulator_url} …", flush=True)
        stack.start_simulator()
        for tenant_id, name in DEMO_TENANTS.items():
            _cli(["tenants", "add", tenant_id, "--name", name], env)
        print("starting Dagster (webserver, daemon, code server) …", flush=True)
        stack.start_dagster()
        _announce(stack, database)
        while True:
            stack.check_alive()
            time.sleep(1.0)
    finally:
        # A second Ctrl-C must not cut the shutdown short.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        print("\nstopping Dagster and the simulator …", flush=True)
        stack.stop()
        print("stopped; state kept in .state/demo/ until the next `make demo`", flush=True)


def _announce(stack: DevStack, database: Path) -> None:
    relative_db = database.relative_to(REPO_ROOT)
    print(
        f"""
Dagster UI: {stack.dagster_url}

No click needed: the new-tenant sensor picks up the {len(DEMO_TENANTS)} tenants within seconds and
requests their first syncs (one run per tenant x selection); the run queue admits one run per
tenant at a time, and inventory_missing follows by automation. Watch Runs, Backfills and
Assets > inventory_items > Partitions.

  Graph simulator   {stack.simulator_url}  (control API under /_simulator/)
  inventory DB      {relative_db}
  DAGSTER_HOME      {stack.home.relative_to(REPO_ROOT)}
  logs              {(stack.state_dir / "logs").relative_to(REPO_ROOT)}/

From another shell, e.g.:
  INVENTORY_DATABASE_URL=sqlite:///{relative_db} .venv/bin/inventory-pipelines \\
      missing --tenant dec00003-0000-4000-8000-000000000003 --selection all

Ctrl-C stops everything.
""",
        flush=True,
    )


def main() -> int:
    # Ctrl-C and SIGTERM both stop the stack, even when started in the background.
    signal.signal(signal.SIGINT, _raise_interrupt)
    signal.signal(signal.SIGTERM, _raise_interrupt)
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
