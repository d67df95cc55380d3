"""Section 6: the missing computation on a database of 1,000,000 items over 100 tenants.

Rows are generated inside the database (`generate_series` on PostgreSQL, a recursive CTE on
SQLite) with two completed sync runs per tenant, so every partition has a baseline; 1 % of
each tenant's items were last seen by the older run and are missing. One tenant holds a
100,000-item partition. `compute_missing` is timed for that partition and for all tenants,
and the plan of its INSERT … SELECT is captured by replaying the exact statements it sent
(same SQL, same parameters) with EXPLAIN, in a transaction that is rolled back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Engine, event, text

from bench.stack import BenchDatabase, DatabaseFactory, vacuum_analyze
from inventory_pipelines.core.database import create_inventory_engine
from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.policy_types import POLICY_TYPES
from inventory_pipelines.core.schema import sqlite_timestamp, sync_runs
from inventory_pipelines.core.selection import Selection, get_selection

Log = Callable[[str], None]
MISSING_EVERY = 100
"""Every 100th item of a tenant was not seen by the baseline run: 1 % missing."""

_META_CREATED = "2023-10-13T16:51:54.2756733Z"
_META_MODIFIED = "2024-09-05T16:41:51.2753295Z"

PG_LOAD_ITEMS = f"""
INSERT INTO inventory_items (
    tenant_id, policy_type, external_id, display_name, meta_jsonb,
    first_seen_at, first_seen_run_id, last_seen_at, last_seen_run_id,
    last_changed_at, last_changed_run_id)
SELECT t.tenant_id,
       (CAST(:types AS text[]))[1 + g % :type_count],
       md5(t.tenant_id || ':' || g)::uuid::text,
       'Bench policy ' || lpad(g::text, 6, '0') || ' - Pilot',
       jsonb_build_object('version', g % 10, 'createdDateTime', '{_META_CREATED}',
                          'roleScopeTagIds', jsonb_build_array('0'),
                          'lastModifiedDateTime', '{_META_MODIFIED}'),
       :previous_at, t.previous_run,
       CASE WHEN g % {MISSING_EVERY} = 0 THEN :previous_at ELSE :baseline_at END,
       CASE WHEN g % {MISSING_EVERY} = 0 THEN t.previous_run ELSE t.baseline_run END,
       :previous_at, t.previous_run
FROM unnest(CAST(:tenant_ids AS text[]), CAST(:counts AS int[]),
            CAST(:previous_runs AS bigint[]), CAST(:baseline_runs AS bigint[]))
     AS t(tenant_id, items, previous_run, baseline_run)
CROSS JOIN LATERAL generate_series(1, t.items) AS g
"""

SQLITE_LOAD_ITEMS = f"""
INSERT INTO inventory_items (
    tenant_id, policy_type, external_id, display_name, meta_jsonb,
    first_seen_at, first_seen_run_id, last_seen_at, last_seen_run_id,
    last_changed_at, last_changed_run_id)
WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < :count)
SELECT :tenant_id,
       (SELECT key FROM bench_types WHERE idx = g.n % :type_count),
       printf('%08x-0000-4000-8000-%012d', g.n, g.n),
       'Bench policy ' || printf('%06d', g.n) || ' - Pilot',
       '{{"createdDateTime":"{_META_CREATED}","lastModifiedDateTime":"{_META_MODIFIED}",'
           || '"roleScopeTagIds":["0"],"version":' || (g.n % 10) || '}}',
       :previous_at, :previous_run,
       CASE WHEN g.n % {MISSING_EVERY} = 0 THEN :previous_at ELSE :baseline_at END,
       CASE WHEN g.n % {MISSING_EVERY} = 0 THEN :previous_run ELSE :baseline_run END,
       :previous_at, :previous_run
FROM g
"""


def missing_tenant(index: int) -> str:
    """Tenant GUIDs of the missing database; index 0 holds the large partition."""
    return f"c0c0c0c0-0000-4000-8000-{index:012d}"


def partition_sizes(tenants: int, total: int, partition: int) -> list[int]:
    """Items per tenant: `partition` for the first, the rest spread evenly; sums to `total`."""
    if tenants < 1 or partition > total:
        raise ValueError("need at least one tenant and a partition no larger than the total")
    if tenants == 1:
        return [total]
    base, extra = divmod(total - partition, tenants - 1)
    return [partition] + [base + (1 if i < extra else 0) for i in range(tenants - 1)]


def _run_rows(
    selection: Selection, tenant_id: str, started: datetime, observed: int
) -> dict[str, Any]:
    """A completed `success` run of the selection that observed `observed` items, every type
    fetched completely."""
    types = list(selection.policy_types)
    return {
        "tenant_id": tenant_id,
        "selection_name": selection.name,
        "selection_hash": selection.hash,
        "selection_payload": selection.payload,
        "status": "success",
        "had_errors": False,
        "started_at": started,
        "finished_at": started + timedelta(minutes=2),
        "heartbeat_at": started + timedelta(minutes=2),
        "items_observed": observed,
        "items_inserted": 0,
        "items_updated": 0,
        "error_count": 0,
        "policy_type_counts": {},
        "policy_type_outcomes": dict.fromkeys(types, "complete"),
        "error_codes": [],
        "error_context": [],
        "correlation_id": None,
    }


def load(database: BenchDatabase, tenant_ids: list[str], counts: list[int]) -> None:
    """Two runs per tenant (previous, baseline) and every tenant's items, as the admin."""
    selection = get_selection("all")
    baseline_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=1)
    previous_at = baseline_at - timedelta(days=1)
    engine = create_inventory_engine(database.admin_url)
    try:
        with engine.begin() as conn:
            run_ids: dict[tuple[str, datetime], int] = {}
            for tenant_id, count in zip(tenant_ids, counts, strict=True):
                # The previous run saw every item; the baseline all but every 100th.
                observed = {previous_at: count, baseline_at: count - count // MISSING_EVERY}
                for started in (previous_at, baseline_at):
                    run_ids[(tenant_id, started)] = conn.execute(
                        sync_runs.insert()
                        .values(**_run_rows(selection, tenant_id, started, observed[started]))
                        .returning(sync_runs.c.id)
                    ).scalar_one()
            keys = [p.key for p in POLICY_TYPES]
            if database.is_postgresql:
                conn.execute(
                    text(PG_LOAD_ITEMS),
                    {
                        "types": keys,
                        "type_count": len(keys),
                        "tenant_ids": tenant_ids,
                        "counts": counts,
                        "previous_runs": [run_ids[(t, previous_at)] for t in tenant_ids],
                        "baseline_runs": [run_ids[(t, baseline_at)] for t in tenant_ids],
                        "previous_at": previous_at,
                        "baseline_at": baseline_at,
                    },
                )
            else:
                conn.exec_driver_sql("CREATE TEMP TABLE bench_types (idx INTEGER, key TEXT)")
                conn.exec_driver_sql("INSERT INTO bench_types VALUES (?, ?)", list(enumerate(keys)))
                for tenant_id, count in zip(tenant_ids, counts, strict=True):
                    conn.execute(
                        text(SQLITE_LOAD_ITEMS),
                        {
                            "count": count,
                            "tenant_id": tenant_id,
                            "type_count": len(keys),
                            "previous_at": sqlite_timestamp(previous_at),
                            "baseline_at": sqlite_timestamp(baseline_at),
                            "previous_run": run_ids[(tenant_id, previous_at)],
                            "baseline_run": run_ids[(tenant_id, baseline_at)],
                        },
                    )
    finally:
        engine.dispose()


class StatementRecorder:
    """Records what an engine sends to the driver, to replay it under EXPLAIN."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.statements: list[tuple[str, Any]] = []

    def __enter__(self) -> StatementRecorder:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *_: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(
        self, _conn: Any, _cursor: Any, statement: str, parameters: Any, _context: Any, _many: bool
    ) -> None:
        self.statements.append((statement, parameters))


def _is_missing_insert(statement: str) -> bool:
    return statement.lstrip().upper().startswith("INSERT INTO INVENTORY_MISSING")


def _is_item_count(statement: str) -> bool:
    flat = " ".join(statement.split()).lower()
    return flat.startswith("select count(*)") and "from inventory_items" in flat


def explain_missing(engine: Engine, tenant_id: str, selection: Selection) -> dict[str, Any]:
    """EXPLAIN (ANALYZE, BUFFERS) of compute_missing's own INSERT … SELECT (and its count).

    The recorded transaction is replayed statement by statement, the INSERT with EXPLAIN in
    front, and rolled back, so the stored missing rows stay as compute_missing left them.
    """
    with StatementRecorder(engine) as recorder:
        compute_missing(engine, tenant_id, selection)
    statements = [
        s for s in recorder.statements if not s[0].lstrip().upper().startswith(("BEGIN", "COMMIT"))
    ]
    postgresql = engine.dialect.name == "postgresql"
    prefix = "EXPLAIN (ANALYZE, BUFFERS) " if postgresql else "EXPLAIN QUERY PLAN "
    plans: dict[str, str] = {}
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        if not postgresql:
            cursor.execute("BEGIN")
        for statement, parameters in statements:
            kind = (
                "insert_select"
                if _is_missing_insert(statement)
                else "item_count"
                if _is_item_count(statement)
                else None
            )
            if kind is None:
                cursor.execute(statement, parameters)
                continue
            if kind == "insert_select" and postgresql:
                cursor.execute("SAVEPOINT before_insert")
            cursor.execute(prefix + statement, parameters)
            plans[kind] = _plan_text(cursor.fetchall(), postgresql=postgresql)
            plans[f"{kind}_sql"] = statement
            if kind == "insert_select":
                if postgresql and not index_driven(plans[kind], postgresql=True):
                    # For the diagnosis: what the index plan would have cost and taken
                    # (after undoing the rows the first EXPLAIN ANALYZE inserted).
                    cursor.execute("ROLLBACK TO SAVEPOINT before_insert")
                    cursor.execute("SET LOCAL enable_seqscan = off")
                    cursor.execute(prefix + statement, parameters)
                    plans["insert_select_enable_seqscan_off"] = _plan_text(
                        cursor.fetchall(), postgresql=True
                    )
                break
        cursor.execute("ROLLBACK") if not postgresql else raw.rollback()
        cursor.close()
    finally:
        raw.close()
    insert_plan = plans.get("insert_select", "")
    return {
        "plans": plans,
        "index_driven": index_driven(insert_plan, postgresql=postgresql),
    }


def _plan_text(rows: Sequence[Any], *, postgresql: bool) -> str:
    return "\n".join(str(row[0]) if postgresql else f"{row[0]} {row[1]} {row[3]}" for row in rows)


def index_driven(plan: str, *, postgresql: bool) -> bool:
    """Whether inventory_items is reached through the identity index and never scanned."""
    if postgresql:
        uses_index = any(
            f"{scan} on inventory_items_identity" in plan
            or f"{scan} using inventory_items_identity" in plan
            for scan in ("Index Scan", "Bitmap Index Scan", "Index Only Scan")
        )
        return uses_index and "Seq Scan on inventory_items" not in plan
    # SQLite names a UNIQUE constraint's index sqlite_autoindex_inventory_items_N.
    return (
        "SEARCH inventory_items" in plan
        and "(tenant_id=? AND policy_type=?)" in plan
        and "SCAN inventory_items" not in plan
    )


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    value = call()
    return time.perf_counter() - started, value


def _measure(
    database: BenchDatabase, tenant_ids: list[str], selection: Selection, repeat: int
) -> dict[str, Any]:
    """Time compute_missing for the large partition and for every partition, then explain it.

    The first call is reported on its own: it reads the partition from disk into the cache.
    """
    engine = create_inventory_engine(database.url)
    big = tenant_ids[0]

    def one() -> Any:
        return compute_missing(engine, big, selection)

    def every() -> list[Any]:
        return [compute_missing(engine, tenant_id, selection) for tenant_id in tenant_ids]

    try:
        first, first_result = _timed(one)
        partition_runs = []
        for _ in range(repeat):
            seconds, result = _timed(one)
            partition_runs.append(
                {
                    "seconds": seconds,
                    "missing": result.missing_count,
                    "partition_items": result.selection_item_count,
                    "confidence": result.confidence,
                }
            )
        all_runs = []
        for _ in range(repeat):
            seconds, results = _timed(every)
            all_runs.append(
                {
                    "seconds": seconds,
                    "partitions": len(results),
                    "missing": sum(r.missing_count for r in results),
                }
            )
        explained = explain_missing(engine, big, selection)
    finally:
        engine.dispose()
    return {
        "first_call_seconds": first,
        "first_call_missing": first_result.missing_count,
        "partition": partition_runs,
        "all_partitions": all_runs,
        **explained,
    }


def run_missing_section(
    factory: DatabaseFactory,
    dialects: list[str],
    *,
    tenants: int,
    total_items: int,
    partition_items: int,
    repeat: int,
    log: Log,
) -> dict[str, Any]:
    counts = partition_sizes(tenants, total_items, partition_items)
    tenant_ids = [missing_tenant(i) for i in range(tenants)]
    selection = get_selection("all")
    section: dict[str, Any] = {
        "tenants": tenants,
        "items": total_items,
        "partition_items": partition_items,
        "missing_share": 1 / MISSING_EVERY,
    }
    for dialect in dialects:
        database = factory.create(dialect, tenant_ids, label="missing")
        try:
            started = time.perf_counter()
            load(database, tenant_ids, counts)
            load_seconds = time.perf_counter() - started
            vacuum_analyze(database)
            log(f"missing {dialect}: loaded {total_items} items in {load_seconds:.1f}s")
            measured = _measure(database, tenant_ids, selection, repeat)
        finally:
            factory.drop(database)
        section[dialect] = {"load_seconds": load_seconds, **measured}
        log(
            f"missing {dialect}: partition {measured['partition'][-1]['seconds'] * 1000:.1f} ms, "
            f"all {measured['all_partitions'][-1]['seconds']:.2f}s, "
            f"index-driven {measured['index_driven']}"
        )
    return section
