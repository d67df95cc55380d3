"""Scenario files (JSON or TOML) that pre-configure tenants and faults for `serve`.

Shape::

    [options]                      # optional
    expires_in = 3599
    identity_requests_per_second = 1.0
    settings_catalog_max_top = 100 # larger `$top` on settings catalog: 400 naming the limit
    batch_enabled = true           # false: `$batch` answers 404 (no JSON batching)

    [tenants."<tenant guid>"]      # any number of tenants
    seed = 42                      # optional: data seed (default derived from the tenant id)
    default_size = 10              # optional: items per policy type
    sizes = { mobile_apps = 1500 } # optional: per policy type key
    faults = [ { kind = "throttle", policy_type = "mobile_apps", count = 2 } ]

    [tenants."*"]                  # faults for every tenant (e.g. an app-wide rate limit)
    faults = [ { kind = "rate_limit", requests_per_second = 50 } ]
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from inventory_pipelines.simulator.faults import FaultSpecError
from inventory_pipelines.simulator.identifiers import GLOBAL_TENANT, canonical_tenant_id
from inventory_pipelines.simulator.state import SimulatorState
from inventory_pipelines.simulator.store import validate_config


class ScenarioError(ValueError):
    """A scenario that cannot be applied; the message names the file part that is wrong."""


def load_scenario(path: str | Path) -> dict[str, Any]:
    """Read a `.toml` or `.json` scenario file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ScenarioError(f"cannot read scenario file {path}: {exc}") from exc
    try:
        loaded: Any = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise ScenarioError(f"scenario file {path} is not valid: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ScenarioError(f"scenario file {path} must hold an object/table at the top")
    return loaded


def apply_options(state: SimulatorState, scenario: Mapping[str, Any]) -> None:
    """Apply the scenario's `[options]` (and reject unknown sections)."""
    unknown = set(scenario) - {"options", "tenants"}
    if unknown:
        raise ScenarioError(f"unknown scenario section(s): {', '.join(sorted(unknown))}")
    options = scenario.get("options") or {}
    bad_options = set(options) - {
        "expires_in",
        "identity_requests_per_second",
        "settings_catalog_max_top",
        "batch_enabled",
    }
    if bad_options:
        raise ScenarioError(f"unknown option(s): {', '.join(sorted(bad_options))}")
    try:
        state.set_options(
            expires_in=options.get("expires_in"),
            identity_requests_per_second=options.get("identity_requests_per_second"),
            settings_catalog_max_top=options.get("settings_catalog_max_top"),
            batch_enabled=options.get("batch_enabled"),
        )
    except ValueError as exc:
        raise ScenarioError(f"options: {exc}") from exc


def apply_tenants(state: SimulatorState, tenants: Mapping[str, Mapping[str, Any]]) -> None:
    """Configure tenants from `{tenant_id: {seed, default_size, sizes, faults}}`."""
    for raw_id, settings in tenants.items():
        tenant_id = GLOBAL_TENANT if raw_id == GLOBAL_TENANT else canonical_tenant_id(raw_id)
        if tenant_id is None:
            raise ScenarioError(f"tenant id {raw_id!r} is not a GUID")
        unknown = set(settings) - {"seed", "default_size", "sizes", "faults"}
        if unknown:
            raise ScenarioError(f"tenant {raw_id}: unknown setting(s) {', '.join(sorted(unknown))}")
        try:
            if tenant_id != GLOBAL_TENANT:
                config = validate_config(
                    settings.get("seed"), settings.get("default_size"), settings.get("sizes")
                )
                state.configure_tenant(tenant_id, config)
            if "faults" in settings:
                state.set_faults(tenant_id, settings["faults"])
        except (FaultSpecError, ValueError) as exc:
            raise ScenarioError(f"tenant {raw_id}: {exc}") from exc
