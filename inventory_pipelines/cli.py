"""The `inventory-pipelines` command: operators' access to the same core the assets use."""

from __future__ import annotations

import csv
import io
import json
import sys
from datetime import UTC, datetime
from typing import Any

import click
from sqlalchemy import Engine
from sqlalchemy.exc import DBAPIError

from inventory_pipelines.core import tenants as tenant_registry
from inventory_pipelines.core.app_role import grant_app_role
from inventory_pipelines.core.changes import CHANGE_COLUMNS, read_changes
from inventory_pipelines.core.coverage import read_coverage, refresh_coverage
from inventory_pipelines.core.coverage_report import coverage_csv, needs_attention
from inventory_pipelines.core.database import (
    DATABASE_URL_SETTING,
    admin_database_url_from_env,
    create_inventory_engine,
    database_url_from_env,
)
from inventory_pipelines.core.errors import InventoryError, ValidationError
from inventory_pipelines.core.migrations import upgrade
from inventory_pipelines.core.missing import compute_missing, missing_items_for
from inventory_pipelines.core.policy_types import POLICY_TYPES
from inventory_pipelines.core.redaction import redact
from inventory_pipelines.core.selection import (
    canonical_json,
    get_selection,
    load_selections,
    parse_payload,
    selection_hash,
)
from inventory_pipelines.core.store import InventoryStore
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.settings import GraphSettings
from inventory_pipelines.graph.summary import format_summary, summary_as_dict
from inventory_pipelines.graph.sync import DEFAULT_TYPE_CONCURRENCY, SyncOptions, sync_partition
from inventory_pipelines.simulator import (
    DEFAULT_PORT,
    SIMULATOR_CLIENT_ID,
    SIMULATOR_CLIENT_SECRET,
    serve,
)


class _Group(click.Group):
    """Turns known failures into one line on stderr and exit code 2, never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except InventoryError as exc:
            _fail(exc.message)
        except DBAPIError as exc:
            reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "database error"
            hint = ""
            if "no such table" in reason or "does not exist" in reason:
                hint = "; run `inventory-pipelines db upgrade` first"
            _fail(f"inventory database ({DATABASE_URL_SETTING}): {redact(reason)}{hint}")


def _fail(message: str) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(2)


def _engine() -> Engine:
    """The application's connection; a missing SQLite file is an error, never created."""
    return create_inventory_engine(database_url_from_env(), create_sqlite_file=False)


def _admin_engine(*, create: bool = False) -> Engine:
    """Owner connection for schema and registry changes (INVENTORY_ADMIN_DATABASE_URL).
    Only `db upgrade` creates a missing SQLite file."""
    return create_inventory_engine(admin_database_url_from_env(), create_sqlite_file=create)


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, default=str, ensure_ascii=False))


@click.group(cls=_Group)
def main() -> None:
    """Last-observed inventory of Microsoft Intune policies per tenant."""


@main.group()
def db() -> None:
    """Inventory database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Apply pending migrations from sql/ (idempotent)."""
    applied = upgrade(_admin_engine(create=True))
    if applied:
        for migration in applied:
            click.echo(f"applied {migration.version:04d}_{migration.name}")
    else:
        click.echo("database schema is up to date")


@db.command("grant-app-role")
@click.argument("role")
def db_grant_app_role(role: str) -> None:
    """Grant the application's privileges to ROLE (PostgreSQL; ROLE must not bypass RLS)."""
    grant_app_role(_admin_engine(), role)
    click.echo(f"granted application privileges to {role}")


@main.group()
def tenants() -> None:
    """The tenant registry that the sensor watches."""


@tenants.command("add")
@click.argument("tenant_id")
@click.option("--name", required=True, help="Display name of the customer tenant.")
@click.option(
    "--key",
    default=None,
    help="Readable, immutable key naming the tenant's Dagster partitions "
    "(a-z, 0-9, '-'; default: a slug of --name).",
)
def tenants_add(tenant_id: str, name: str, key: str | None) -> None:
    """Register (or rename, re-activate) a tenant by its Entra tenant id."""
    tenant, outcome = tenant_registry.add_tenant(_admin_engine(), tenant_id, name, key=key)
    click.echo(f"{outcome} {tenant.tenant_key} {tenant.tenant_id} {tenant.display_name!r}")


@tenants.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--active-only", is_flag=True, help="Only tenants that are synced.")
def tenants_list(as_json: bool, active_only: bool) -> None:
    """Show registered tenants."""
    rows = tenant_registry.list_tenants(_engine(), active_only=active_only)
    if as_json:
        _echo_json([row.__dict__ for row in rows])
        return
    width = max((len(row.tenant_key) for row in rows), default=0)
    for row in rows:
        state = "active" if row.active else "inactive"
        click.echo(f"{row.tenant_key:<{width}}  {row.tenant_id}  {state:<8}  {row.display_name}")


@tenants.command("deactivate")
@click.argument("tenant")
def tenants_deactivate(tenant: str) -> None:
    """Stop syncing a tenant (by key or GUID); its inventory stays."""
    found = tenant_registry.deactivate_tenant(_admin_engine(), tenant)
    click.echo(f"deactivated {found.tenant_key} {found.tenant_id}")


@main.group()
def selections() -> None:
    """Named selections of policy types."""


@selections.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def selections_list(as_json: bool) -> None:
    """Show named selections with their policy types and selection hashes."""
    loaded = load_selections()
    if as_json:
        _echo_json(
            [
                {"name": s.name, "selection_hash": s.hash, "policy_types": list(s.policy_types)}
                for s in loaded.values()
            ]
        )
        return
    for selection in loaded.values():
        click.echo(f"{selection.name}  {selection.hash}  ({len(selection.policy_types)} types)")
        click.echo(f"    {', '.join(selection.policy_types)}")


@main.command("policy-types")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
def policy_types(as_json: bool) -> None:
    """The registry of supported policy types."""
    if as_json:
        _echo_json(
            [
                {
                    "key": p.key,
                    "graph_path": p.graph_path,
                    "api_version": p.api_version,
                    "label": p.label,
                    "name_field": p.name_field,
                    "max_top": p.max_top,
                }
                for p in POLICY_TYPES
            ]
        )
        return
    for p in POLICY_TYPES:
        click.echo(f"{p.key:<36} {p.api_version:<5} {p.graph_path}")


@main.command("selection-hash")
@click.argument("payload")
def selection_hash_command(payload: str) -> None:
    """Print the canonical JSON and SHA-256 selection hash of a payload."""
    canonical = parse_payload(payload)  # "*" is expanded to every type, as in selections.toml
    click.echo(canonical_json(canonical))
    click.echo(selection_hash(canonical))


@main.command("sync")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant key or Entra tenant id.")
@click.option("--selection", "selection_name", required=True, help="Named selection.")
@click.option(
    "--type-concurrency",
    default=DEFAULT_TYPE_CONCURRENCY,
    show_default=True,
    help="Policy types fetched at once (= Graph requests in flight for this tenant).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
def sync_command(
    tenant_ref: str, selection_name: str, type_concurrency: int, as_json: bool
) -> None:
    """Run one sync in plain Python (outside Dagster) and print its summary.

    Exit code 0 on success or partial, 1 on a failed run, 3 when skipped (lock held).
    """
    selection = get_selection(selection_name)
    engine = _engine()
    tenant_id = tenant_registry.resolve_tenant(engine, tenant_ref).tenant_id
    store = InventoryStore(engine)
    settings = GraphSettings.from_env()
    with GraphClient(settings) as client:
        summary = sync_partition(
            store,
            client,
            tenant_id,
            selection,
            options=SyncOptions(type_concurrency=type_concurrency),
        )
    if as_json:
        _echo_json(summary_as_dict(summary))
    else:
        click.echo(format_summary(summary))
    if summary.status == "failed":
        sys.exit(1)
    if summary.skipped:
        sys.exit(3)


@main.command("missing")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant key or Entra tenant id.")
@click.option("--selection", "selection_name", required=True, help="Named selection.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def missing_command(tenant_ref: str, selection_name: str, as_json: bool) -> None:
    """Compute and print the missing items of a (tenant, selection) with their confidence."""
    selection = get_selection(selection_name)
    engine = _engine()
    tenant = tenant_registry.resolve_tenant(engine, tenant_ref)
    result = compute_missing(engine, tenant.tenant_id, selection)
    rows = missing_items_for(engine, tenant.tenant_id, selection.hash)
    if as_json:
        _echo_json({"result": result.__dict__, "items": rows})
        return
    heading = (
        f"tenant {tenant.tenant_key} ({tenant.tenant_id}) "
        f"selection {selection.name} ({selection.hash[:12]})"
    )
    if result.baseline_run_id is None:
        click.echo(
            f"{heading}: no completed sync yet; nothing can be called missing (confidence unknown)"
        )
        return
    click.echo(
        f"{heading}: {result.missing_count} missing, confidence {result.confidence}, "
        f"baseline run {result.baseline_run_id} ({result.baseline_status})"
    )
    for row in rows:
        click.echo(
            f"  {row['policy_type']:<32} {row['external_id']}  {row['reason']:<16} "
            f"last seen {row['last_seen_at']:%Y-%m-%d %H:%M:%S}  {row['display_name'] or ''}"
        )


@main.command("coverage")
@click.option("--tenant", "tenant_ref", default=None, help="Only this tenant (key or id).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
def coverage_command(tenant_ref: str | None, as_json: bool, as_csv: bool) -> None:
    """Per active tenant and policy type: last complete fetch and latest attempt.

    Reads `inventory_coverage` as the asset last refreshed it; computes it when it never was.
    """
    if as_json and as_csv:
        raise ValidationError("choose one of --json and --csv")
    engine = _engine()
    only: list[str] | None = None
    if tenant_ref is not None:
        tenant = tenant_registry.resolve_tenant(engine, tenant_ref)
        if not tenant.active:
            raise ValidationError(
                f"tenant {tenant.tenant_key} is deactivated; coverage covers active tenants only"
            )
        only = [tenant.tenant_id]
    rows = read_coverage(engine, tenant_ids=only)
    if not rows:
        rows = refresh_coverage(engine, tenant_ids=only)
        click.echo(
            "inventory_coverage was never computed"
            + (f" for {tenant_ref}" if tenant_ref else "")
            + "; computed it now",
            err=True,
        )
    if as_json:
        _echo_json(rows)
    elif as_csv:
        click.echo(coverage_csv(rows), nl=False)
    else:
        _print_coverage(rows)


def _print_coverage(rows: list[dict[str, Any]]) -> None:
    if not rows:
        click.echo("no active tenants")
        return
    computed = min(r["computed_at"] for r in rows)
    attention = [r for r in rows if needs_attention(r)]
    click.echo(
        f"coverage as of {computed:%Y-%m-%d %H:%M:%S} UTC: "
        f"{len({r['tenant_id'] for r in rows})} tenant(s), {len(rows)} tenant × type pairs, "
        f"{len(attention)} need attention"
    )
    width = max(len(r["tenant_key"]) for r in rows)
    for r in rows:
        last = r["last_complete_at"]
        seen = (
            f"last complete {last:%Y-%m-%d %H:%M} ({r['age_seconds'] / 3600:.1f} h, "
            f"{r['item_count']} items)"
            if last is not None
            else "never complete"
        )
        mark = "!" if needs_attention(r) else " "
        click.echo(
            f"{mark} {r['tenant_key']:<{width}}  {r['policy_type']:<36} "
            f"{r['latest_outcome'] or 'never attempted':<22} {seen}"
        )


def _since(raw: str) -> datetime:
    """An ISO-8601 date or date-time; without an offset it is UTC."""
    try:
        parsed = datetime.fromisoformat(raw.strip())
    except ValueError:
        raise ValidationError(
            f"--since {raw!r} is not an ISO-8601 date or time (e.g. 2026-03-01 or "
            "2026-03-01T08:00:00Z)"
        ) from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _run_id(raw: str) -> int:
    if not raw.strip().isdigit():
        raise ValidationError(f"--run {raw!r} is not a sync run id (a positive integer)")
    return int(raw)


@main.command("changes")
@click.option("--tenant", "tenant_ref", required=True, help="Tenant key or Entra tenant id.")
@click.option("--since", default=None, help="Events that occurred at or after this ISO time.")
@click.option("--run", "run_ref", default=None, help="Only the events of this sync run.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV.")
def changes_command(
    tenant_ref: str, since: str | None, run_ref: str | None, as_json: bool, as_csv: bool
) -> None:
    """The change feed of a tenant (inventory_changes), oldest first.

    added, changed and returned come from syncs; went_missing from the missing computation
    of a selection (with its selection hash, reason and confidence). Times are the start of
    the sync run that saw the event.
    """
    if as_json and as_csv:
        raise ValidationError("choose one of --json and --csv")
    if since is not None and run_ref is not None:
        raise ValidationError("choose one of --since and --run")
    since_at = _since(since) if since is not None else None
    run_id = _run_id(run_ref) if run_ref is not None else None
    engine = _engine()
    tenant = tenant_registry.resolve_tenant(engine, tenant_ref)
    if run_id is not None:
        InventoryStore(engine).get_sync_run(tenant.tenant_id, run_id)  # unknown run: error
    rows = read_changes(engine, tenant.tenant_id, since=since_at, run_id=run_id)
    if as_json:
        _echo_json(rows)
    elif as_csv:
        click.echo(_changes_csv(rows), nl=False)
    else:
        scope = (
            f" of run {run_id}"
            if run_id is not None
            else f" since {since_at:%Y-%m-%d %H:%M:%S} UTC"
            if since_at is not None
            else ""
        )
        click.echo(f"tenant {tenant.tenant_key} ({tenant.tenant_id}): {len(rows)} events{scope}")
        for r in rows:
            detail = (
                f"  {r['reason']}/{r['confidence']} selection {r['selection_hash'][:12]}"
                if r["event"] == "went_missing"
                else ""
            )
            click.echo(
                f"  {r['occurred_at']:%Y-%m-%d %H:%M:%S}  {r['event']:<12} "
                f"run {r['sync_run_id']:<6} {r['policy_type']:<32} {r['external_id']}  "
                f"{r['display_name'] or ''}{detail}"
            )


def _changes_csv(rows: list[dict[str, Any]]) -> str:
    """CSV with a header, ISO-8601 times and empty cells for nulls."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=[*CHANGE_COLUMNS, "display_name"], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({**row, "occurred_at": row["occurred_at"].isoformat()})
    return out.getvalue()


@main.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback address to bind.")
@click.option(
    "--port", default=DEFAULT_PORT, show_default=True, type=int, help="0 = any free port."
)
@click.option("--client-id", default=SIMULATOR_CLIENT_ID, show_default=True)
@click.option(
    "--client-secret",
    default=SIMULATOR_CLIENT_SECRET,
    help="Secret the token endpoint accepts (default: the simulator's built-in one).",
)
@click.option(
    "--identity-rps",
    default=1.0,
    show_default=True,
    help="Requests/s per tenant for conditional-access types (429 without Retry-After); 0 = off.",
)
@click.option(
    "--settings-catalog-max-top",
    default=100,
    show_default=True,
    type=click.IntRange(min=1),
    help="Largest $top the settings catalog lists take; more is a 400 naming the limit.",
)
@click.option(
    "--scenario",
    type=click.Path(exists=True, dir_okay=False),
    help="TOML/JSON file with tenants (seed, sizes) and faults to start with.",
)
def simulator_command(
    host: str,
    port: int,
    client_id: str,
    client_secret: str,
    identity_rps: float,
    settings_catalog_max_top: int,
    scenario: str | None,
) -> None:
    """Run the Microsoft Graph simulator on loopback until Ctrl-C."""
    try:
        serve(
            host,
            port,
            client_id=client_id,
            client_secret=client_secret,
            identity_requests_per_second=identity_rps,
            settings_catalog_max_top=settings_catalog_max_top,
            scenario_path=scenario,
        )
    except (ValueError, OSError) as exc:
        _fail(str(exc))


if __name__ == "__main__":
    main()
