"""The command line as operators use it: real process, real database, exit codes."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.policy_types import POLICY_TYPES
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines_tests.core.helpers import items, selection, sync

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OTHER = "0c2e7b41-5d8a-4f3e-9b1c-6a7d8e9f0a1b"


def cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "inventory_pipelines.cli", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


@pytest.fixture
def db_env(database_url: str) -> dict[str, str]:
    return {"INVENTORY_DATABASE_URL": database_url}


@pytest.mark.parametrize("everything", ['"*"', '["*"]'])
def test_selection_hash_expands_star_like_the_selections_file(everything: str) -> None:
    listed = json.loads(cli("selections", "list", "--json").stdout)
    shipped_all = next(s for s in listed if s["name"] == "all")
    result = cli("selection-hash", f'{{"policy_types": {everything}}}')
    assert result.returncode == 0, result.stderr
    canonical, digest = result.stdout.splitlines()
    assert json.loads(canonical) == {"policy_types": sorted(p.key for p in POLICY_TYPES)}
    assert digest == shipped_all["selection_hash"]


def test_selection_hash_refuses_star_with_other_types() -> None:
    result = cli("selection-hash", '{"policy_types": ["*", "scope_tags"]}')
    assert result.returncode == 2 and "already means every policy type" in result.stderr


def test_selection_hash_prints_canonical_json_and_hash() -> None:
    result = cli("selection-hash", '{"policy_types": ["scope_tags", "compliance_policies"]}')
    assert result.returncode == 0, result.stderr
    canonical, digest = result.stdout.splitlines()
    assert canonical == '{"policy_types":["compliance_policies","scope_tags"]}'
    assert digest == hashlib.sha256(canonical.encode()).hexdigest()


@pytest.mark.parametrize(
    "payload, message",
    [('{"policy_types": ["nope"]}', "unknown policy type"), ("{oops", "not valid JSON")],
)
def test_selection_hash_rejects_bad_input_in_one_line(payload: str, message: str) -> None:
    result = cli("selection-hash", payload)
    assert result.returncode != 0
    assert message in result.stderr and len(result.stderr.strip().splitlines()) == 1
    assert "Traceback" not in result.stderr


def test_policy_types_json_lists_the_registry() -> None:
    result = cli("policy-types", "--json")
    listed = json.loads(result.stdout)
    assert len(listed) == len(POLICY_TYPES) >= 40
    assert {"key", "graph_path", "api_version"} <= set(listed[0])
    assert {p["api_version"] for p in listed} <= {"v1.0", "beta"}


def test_selections_list_shows_names_types_and_hashes() -> None:
    listed = json.loads(cli("selections", "list", "--json").stdout)
    by_name = {s["name"]: s for s in listed}
    assert "all" in by_name and len(by_name["all"]["policy_types"]) == len(POLICY_TYPES)
    recomputed = cli("selection-hash", json.dumps({"policy_types": by_name["all"]["policy_types"]}))
    assert recomputed.stdout.splitlines()[1] == by_name["all"]["selection_hash"]


def test_tenant_lifecycle(db_env: dict[str, str]) -> None:
    assert cli("db", "upgrade", env=db_env).stdout.strip() == "database schema is up to date"
    added = cli("tenants", "add", GUID.upper(), "--name", "Contoso Ltd.", env=db_env)
    assert added.returncode == 0 and GUID in added.stdout and "contoso-ltd" in added.stdout
    listed = json.loads(cli("tenants", "list", "--json", env=db_env).stdout)
    assert [(t["tenant_id"], t["tenant_key"], t["active"]) for t in listed] == [
        (GUID, "contoso-ltd", True)
    ]
    assert cli("tenants", "deactivate", "contoso-ltd", env=db_env).returncode == 0
    listed = json.loads(cli("tenants", "list", "--json", env=db_env).stdout)
    assert listed[0]["active"] is False
    assert cli("tenants", "deactivate", GUID, env=db_env).returncode == 0  # GUID works too


def test_tenant_keys_on_the_command_line(db_env: dict[str, str]) -> None:
    added = cli("tenants", "add", GUID, "--name", "Contoso Ltd.", "--key", "contoso", env=db_env)
    assert added.returncode == 0, added.stderr
    cli("tenants", "add", OTHER, "--name", "Contoso Ltd.", env=db_env)  # same name: suffixed
    text = cli("tenants", "list", env=db_env).stdout.splitlines()
    assert [line.split()[:3] for line in text] == [
        ["contoso-ltd", OTHER, "active"],
        ["contoso", GUID, "active"],
    ]
    renamed = cli("tenants", "add", GUID, "--name", "Contoso Group", env=db_env)
    assert renamed.returncode == 0 and renamed.stdout.startswith("renamed contoso ")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--key", "Contoso Ltd"], "tenant key 'Contoso Ltd' is invalid"),
        (["--key", "contoso"], f"tenant key 'contoso' is already used by tenant {OTHER}"),
        (["--key", GUID], "looks like a tenant id"),
    ],
)
def test_bad_tenant_keys_are_refused_in_one_line(
    db_env: dict[str, str], args: list[str], message: str
) -> None:
    cli("tenants", "add", OTHER, "--name", "Fabrikam", "--key", "contoso", env=db_env)
    result = cli("tenants", "add", GUID, "--name", "Contoso", *args, env=db_env)
    assert result.returncode == 2 and message in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    listed = json.loads(cli("tenants", "list", "--json", env=db_env).stdout)
    assert [t["tenant_id"] for t in listed] == [OTHER]


def test_a_tenant_key_cannot_be_changed(db_env: dict[str, str]) -> None:
    cli("tenants", "add", GUID, "--name", "Contoso", env=db_env)
    result = cli("tenants", "add", GUID, "--name", "Contoso", "--key", "contoso-2", env=db_env)
    assert result.returncode == 2 and "immutable" in result.stderr
    listed = json.loads(cli("tenants", "list", "--json", env=db_env).stdout)
    assert [t["tenant_key"] for t in listed] == ["contoso"]


@pytest.mark.parametrize("command", ["missing", "sync"])
@pytest.mark.parametrize("tenant", ["fabrikam", OTHER])
def test_an_unregistered_tenant_is_an_error(
    db_env: dict[str, str], command: str, tenant: str
) -> None:
    cli("tenants", "add", GUID, "--name", "Contoso", env=db_env)
    result = cli(command, "--tenant", tenant, "--selection", "all", env=db_env)
    assert result.returncode == 2, result.stdout
    assert result.stderr.strip() == (
        f"error: tenant {tenant!r} is not registered (neither a tenant key nor a tenant id); "
        "see `inventory-pipelines tenants list`, or add it with `tenants add`"
    )
    assert result.stdout == ""


@pytest.mark.parametrize("tenant", ["contoso", GUID.upper()])
def test_missing_before_any_sync_says_so(db_env: dict[str, str], tenant: str) -> None:
    cli("tenants", "add", GUID, "--name", "Contoso", env=db_env)
    result = cli("missing", "--tenant", tenant, "--selection", "compliance", env=db_env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"tenant contoso ({GUID}) selection compliance (")
    assert result.stdout.rstrip().endswith(
        ": no completed sync yet; nothing can be called missing (confidence unknown)"
    )
    assert "None" not in result.stdout


def test_bad_tenant_id_changes_nothing(db_env: dict[str, str]) -> None:
    cli("tenants", "add", GUID, "--name", "Contoso", env=db_env)
    bad = cli("tenants", "add", "contoso.onmicrosoft.com", "--name", "X", env=db_env)
    assert bad.returncode != 0 and "not a GUID" in bad.stderr
    listed = json.loads(cli("tenants", "list", "--json", env=db_env).stdout)
    assert [t["tenant_id"] for t in listed] == [GUID]


def test_bad_database_url_names_the_setting(tmp_path: Path) -> None:
    result = cli("tenants", "list", env={"INVENTORY_DATABASE_URL": "mysql://x@localhost/db"})
    assert result.returncode != 0 and "INVENTORY_DATABASE_URL" in result.stderr
    result = cli("tenants", "list", env={"INVENTORY_DATABASE_URL": "not a url"})
    assert result.returncode != 0 and "INVENTORY_DATABASE_URL" in result.stderr


def test_unmigrated_database_tells_how_to_fix(tmp_path: Path) -> None:
    (tmp_path / "empty.db").touch()
    url = f"sqlite:///{tmp_path / 'empty.db'}"
    result = cli("tenants", "list", env={"INVENTORY_DATABASE_URL": url})
    assert result.returncode != 0 and "db upgrade" in result.stderr


@pytest.mark.parametrize(
    "args",
    [
        ["tenants", "list"],
        ["tenants", "list", "--json"],
        ["missing", "--tenant", GUID, "--selection", "all"],
        ["changes", "--tenant", GUID],
        ["sync", "--tenant", "contoso", "--selection", "all"],
        ["tenants", "add", GUID, "--name", "Contoso"],
        ["tenants", "deactivate", GUID],
    ],
)
def test_commands_other_than_db_upgrade_create_no_database(tmp_path: Path, args: list[str]) -> None:
    state = tmp_path / "state"
    env = {
        "INVENTORY_STATE_DIR": str(state),
        "INVENTORY_DATABASE_URL": "",
        "INVENTORY_ADMIN_DATABASE_URL": "",
    }
    result = cli(*args, env=env)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: inventory database {state / 'inventory.db'} does not exist; create it with "
        "`inventory-pipelines db upgrade` (or point INVENTORY_DATABASE_URL at one)"
    )
    assert not state.exists()
    assert cli("selections", "list", env=env).returncode == 0
    assert not state.exists()


def test_default_database_lives_under_the_state_dir(tmp_path: Path) -> None:
    env = {"INVENTORY_STATE_DIR": str(tmp_path / "state"), "INVENTORY_DATABASE_URL": ""}
    assert cli("db", "upgrade", env=env).returncode == 0
    assert (tmp_path / "state" / "inventory.db").exists()


def seed_coverage(database_url: str) -> None:
    """Contoso: one complete and one forbidden type; Fabrikam: nothing synced yet."""
    engine = create_inventory_engine(database_url)
    compliance = selection("compliance", "compliance_policies", "compliance_scripts")
    sync(
        InventoryStore(engine),
        GUID,
        compliance,
        {"compliance_policies": items("p1", "p2")},
        failed={"compliance_scripts": "forbidden"},
    )
    engine.dispose()


def test_coverage_computes_once_then_reads_the_table(
    db_env: dict[str, str], database_url: str
) -> None:
    cli("tenants", "add", GUID, "--name", "Contoso", env=db_env)
    cli("tenants", "add", OTHER, "--name", "Fabrikam", env=db_env)
    seed_coverage(database_url)
    first = cli("coverage", "--json", env=db_env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == "inventory_coverage was never computed; computed it now"
    rows = json.loads(first.stdout)
    by_pair = {(r["tenant_key"], r["policy_type"]): r for r in rows}
    assert len(rows) == 2 * len({p.key for p in POLICY_TYPES})  # the `all` selection
    assert by_pair[("contoso", "compliance_policies")]["item_count"] == 2
    assert by_pair[("contoso", "compliance_policies")]["latest_outcome"] == "complete"
    assert by_pair[("contoso", "compliance_scripts")]["latest_outcome"] == "forbidden"
    assert by_pair[("fabrikam", "compliance_policies")]["latest_outcome"] is None

    again = cli("coverage", "--tenant", "contoso", env=db_env)
    assert again.returncode == 0 and again.stderr == ""  # read, not recomputed
    lines = again.stdout.splitlines()
    assert lines[0].startswith("coverage as of ") and "1 tenant(s)" in lines[0]
    scripts = next(line for line in lines if "compliance_scripts" in line)
    assert scripts.startswith("! contoso") and "forbidden" in scripts
    policies = next(line for line in lines if " compliance_policies " in line)
    assert policies.startswith("  contoso") and "2 items" in policies

    csv = cli("coverage", "--csv", "--tenant", GUID, env=db_env).stdout.splitlines()
    assert csv[0].startswith("tenant_id,tenant_key,policy_type,last_complete_at,")
    assert len(csv) == 1 + len(POLICY_TYPES)
    assert all(line.startswith(f"{GUID},contoso,") for line in csv[1:])


@pytest.mark.parametrize(
    "args, message",
    [
        (["--json", "--csv"], "error: choose one of --json and --csv"),
        (["--tenant", "nobody"], "error: tenant 'nobody' is not registered"),
    ],
)
def test_coverage_bad_input_is_one_line(
    db_env: dict[str, str], args: list[str], message: str
) -> None:
    cli("tenants", "add", GUID, "--name", "Contoso", env=db_env)
    result = cli("coverage", *args, env=db_env)
    assert result.returncode == 2 and result.stderr.startswith(message)
    assert len(result.stderr.strip().splitlines()) == 1


def test_coverage_refuses_a_deactivated_tenant(db_env: dict[str, str]) -> None:
    cli("tenants", "add", GUID, "--name", "Contoso", env=db_env)
    cli("tenants", "deactivate", GUID, env=db_env)
    result = cli("coverage", "--tenant", "contoso", env=db_env)
    assert result.returncode == 2
    assert "deactivated; coverage covers active tenants only" in result.stderr
    assert cli("coverage", env=db_env).stdout.strip() == "no active tenants"


def seed_changes(database_url: str) -> tuple[int, int]:
    """Contoso: p1, p2 added; then p2 gone (went_missing) and p3 added. Returns both runs."""
    from inventory_pipelines.core.missing import compute_missing

    engine = create_inventory_engine(database_url)
    store = InventoryStore(engine)
    compliance = selection("compliance", "compliance_policies")
    first, _ = sync(store, GUID, compliance, {"compliance_policies": items("p1", "p2")})
    second, _ = sync(store, GUID, compliance, {"compliance_policies": items("p1", "p3")})
    compute_missing(engine, GUID, compliance)
    engine.dispose()
    return first, second


def test_changes_lists_the_feed_as_text_json_and_csv(
    db_env: dict[str, str], database_url: str
) -> None:
    cli("tenants", "add", GUID, "--name", "Contoso", env=db_env)
    first, second = seed_changes(database_url)
    text = cli("changes", "--tenant", "contoso", env=db_env)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0] == f"tenant contoso ({GUID}): 4 events"
    assert [line.split()[2] for line in lines[1:]] == ["added", "added", "added", "went_missing"]
    assert "Policy p2  not_observed/high selection " in lines[-1]

    rows = json.loads(
        cli("changes", "--tenant", GUID, "--run", str(second), "--json", env=db_env).stdout
    )
    assert sorted((r["event"], r["external_id"]) for r in rows) == [
        ("added", "p3"),
        ("went_missing", "p2"),
    ]
    assert {r["sync_run_id"] for r in rows} == {second}

    csv = cli("changes", "--tenant", "contoso", "--run", str(first), "--csv", env=db_env)
    header, *body = csv.stdout.splitlines()
    assert header == (
        "id,tenant_id,policy_type,external_id,item_id,event,sync_run_id,selection_hash,"
        "reason,confidence,occurred_at,display_name"
    )
    assert len(body) == 2 and all(",added," in line for line in body)

    started = json.loads(cli("changes", "--tenant", "contoso", "--json", env=db_env).stdout)[-1]
    since = cli("changes", "--tenant", "contoso", "--since", started["occurred_at"], env=db_env)
    assert since.stdout.splitlines()[0].startswith(f"tenant contoso ({GUID}): 2 events since ")


@pytest.mark.parametrize(
    "args, message",
    [
        (["--json", "--csv"], "error: choose one of --json and --csv"),
        (["--since", "2026-01-01", "--run", "1"], "error: choose one of --since and --run"),
        (["--since", "yesterday"], "error: --since 'yesterday' is not an ISO-8601 date or time"),
        (["--run", "x1"], "error: --run 'x1' is not a sync run id"),
        (["--run", "999999"], "error: sync run 999999 not found for tenant"),
        (["--tenant", "nobody"], "error: tenant 'nobody' is not registered"),
    ],
)
def test_changes_bad_input_is_one_line_and_changes_nothing(
    db_env: dict[str, str], database_url: str, args: list[str], message: str
) -> None:
    cli("tenants", "add", GUID, "--name", "Contoso", env=db_env)
    seed_changes(database_url)
    before = cli("changes", "--tenant", "contoso", "--json", env=db_env).stdout
    result = cli("changes", "--tenant", "contoso", *args, env=db_env)
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and result.stdout == ""
    assert cli("changes", "--tenant", "contoso", "--json", env=db_env).stdout == before
