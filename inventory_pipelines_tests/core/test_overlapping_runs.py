"""Overlapping syncs of different selections of one tenant (the lock is per selection).

A run that started earlier may write later. Whatever the interleaving, every item a run
observed must keep `last_seen_at >= run.started_at`, or that run's own selection would report
items it saw itself as missing; `last_seen_*` only move forward and `first_seen_*` never move.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import Engine, select, text

from inventory_pipelines.core.missing import compute_missing
from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.schema import items as items_table
from inventory_pipelines.core.selection import Selection, get_selection
from inventory_pipelines.core.store import (
    COMPLETE,
    InventoryStore,
    RunResult,
    RunStarted,
    UpsertCounts,
    database_now,
)
from inventory_pipelines.core.tenants import add_tenant
from inventory_pipelines.graph.client import GraphClient
from inventory_pipelines.graph.sync import SyncSummary, sync_partition
from inventory_pipelines.simulator import (
    SimulatorServer,
)
from inventory_pipelines_tests.core.helpers import TENANT_A, items, register, selection, sync
from inventory_pipelines_tests.databases import TRUNCATE

X, Y, Z = "compliance_policies", "scope_tags", "mobile_apps"
WIDE = selection("wide", X, Y)
NARROW = selection("narrow", X)


def stored(engine: Engine, tenant_id: str = TENANT_A) -> dict[tuple[str, str], dict]:
    with engine.connect() as conn:
        rows = conn.execute(
            select(items_table).where(items_table.c.tenant_id == tenant_id)
        ).mappings()
        return {(r["policy_type"], r["external_id"]): dict(r) for r in rows}


def stored_start(store: InventoryStore, run_id: int) -> datetime:
    started_at: datetime = store.get_sync_run(TENANT_A, run_id)["started_at"]
    return started_at


def wait_for_clock_past(engine: Engine, moment: datetime) -> None:
    """Let the database clock move past `moment`, so the next run starts strictly later
    (SQLite's clock ticks in milliseconds)."""
    while True:
        with engine.begin() as conn:
            if database_now(conn) > moment:
                return
        time.sleep(0.0005)


def start(store: InventoryStore, sel: Selection) -> RunStarted:
    started = store.start_sync_run(TENANT_A, sel)
    assert isinstance(started, RunStarted), started
    wait_for_clock_past(store.engine, started.started_at)
    return started


def finish(store: InventoryStore, run: RunStarted, sel: Selection, counts: UpsertCounts) -> str:
    result = RunResult(policy_type_outcomes=dict.fromkeys(sel.policy_types, COMPLETE))
    result.counts = counts
    return store.finish_sync_run(TENANT_A, run.run_id, result)


def assert_observed_since_start(
    rows: dict[tuple[str, str], dict], keys: set[tuple[str, str]], started_at: datetime
) -> None:
    late = {
        key: rows[key]["last_seen_at"] for key in keys if rows[key]["last_seen_at"] < started_at
    }
    assert not late, f"observed items last seen before their run started at {started_at}: {late}"


# -- the database clock ------------------------------------------------------------------


def test_run_times_come_from_the_database_clock(engine: Engine) -> None:
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    with engine.begin() as conn:
        before = database_now(conn)
    started = store.start_sync_run(TENANT_A, NARROW)
    assert isinstance(started, RunStarted)
    store.heartbeat(TENANT_A, started.run_id)
    finish(store, started, NARROW, UpsertCounts())
    with engine.begin() as conn:
        after = database_now(conn)
    run = store.get_sync_run(TENANT_A, started.run_id)
    assert run["started_at"] == started.started_at  # what the items get stamped with
    assert before <= run["started_at"] <= run["finished_at"] <= after
    assert run["heartbeat_at"] == run["finished_at"]


def test_database_clock_is_utc_and_advances_within_a_transaction(engine: Engine) -> None:
    with engine.begin() as conn:
        first = database_now(conn)
        time.sleep(0.005)
        second = database_now(conn)  # clock_timestamp(), not the transaction's now()
    assert first.tzinfo is UTC and first < second
    assert abs(first - datetime.now(UTC)) < timedelta(minutes=1)  # same host here


# -- a deterministic overlap ---------------------------------------------------------------


def test_earlier_run_writing_last_does_not_move_last_seen_back(engine: Engine) -> None:
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    first_run, _ = sync(store, TENANT_A, WIDE, {X: items("a", "b"), Y: items("t")})
    wait_for_clock_past(engine, stored_start(store, first_run))
    first_seen = {
        k: (r["first_seen_at"], r["first_seen_run_id"]) for k, r in stored(engine).items()
    }

    run_a = start(store, WIDE)  # the wide run starts first…
    a_counts = UpsertCounts()
    a_counts.add(
        store.upsert_items(TENANT_A, run_a.run_id, Y, items("t"), seen_at=run_a.started_at)
    )
    run_b = start(store, NARROW)  # …the narrow one later, and writes and finishes first
    renamed = [ObservedItem.build("a", "Renamed a", {"version": 2}), *items("b")]
    b_counts = store.upsert_items(TENANT_A, run_b.run_id, X, renamed, seen_at=run_b.started_at)
    assert (b_counts.inserted, b_counts.updated, b_counts.unchanged) == (0, 1, 1)
    assert finish(store, run_b, NARROW, b_counts) == "success"

    # The wide run's older view of X arrives last: observed, but it changes nothing.
    late = store.upsert_items(TENANT_A, run_a.run_id, X, items("a", "b"), seen_at=run_a.started_at)
    a_counts.add(late)
    assert finish(store, run_a, WIDE, a_counts) == "success"

    rows = stored(engine)
    narrow = compute_missing(engine, TENANT_A, NARROW)
    assert (narrow.baseline_run_id, narrow.confidence) == (run_b.run_id, "high")
    assert narrow.missing_count == 0
    assert compute_missing(engine, TENANT_A, WIDE).missing_count == 0
    assert_observed_since_start(rows, {(X, "a"), (X, "b")}, run_b.started_at)
    assert_observed_since_start(rows, set(rows), run_a.started_at)
    for key in [(X, "a"), (X, "b")]:
        assert rows[key]["last_seen_run_id"] == run_b.run_id
        assert rows[key]["last_seen_at"] == run_b.started_at
    assert rows[(Y, "t")]["last_seen_run_id"] == run_a.run_id
    # The newer view of the renamed item stays.
    assert rows[(X, "a")]["display_name"] == "Renamed a"
    assert rows[(X, "a")]["meta_jsonb"] == {"version": 2}
    assert rows[(X, "a")]["last_changed_run_id"] == run_b.run_id
    assert {k: (r["first_seen_at"], r["first_seen_run_id"]) for k, r in rows.items()} == first_seen
    assert (late.inserted, late.updated, late.unchanged) == (0, 0, 2)


def test_earlier_run_first_sighting_after_a_later_run_inserted(engine: Engine) -> None:
    register(engine, TENANT_A)
    store = InventoryStore(engine)
    run_a = start(store, WIDE)
    run_b = start(store, NARROW)
    b_counts = store.upsert_items(TENANT_A, run_b.run_id, X, items("n"), seen_at=run_b.started_at)
    assert (b_counts.inserted, b_counts.updated, b_counts.unchanged) == (1, 0, 0)
    finish(store, run_b, NARROW, b_counts)
    a_counts = store.upsert_items(TENANT_A, run_a.run_id, X, items("n"), seen_at=run_a.started_at)
    row = stored(engine)[(X, "n")]
    assert (row["first_seen_run_id"], row["last_seen_run_id"]) == (run_b.run_id, run_b.run_id)
    assert row["first_seen_at"] == row["last_seen_at"] == run_b.started_at
    assert (a_counts.inserted, a_counts.updated, a_counts.unchanged) == (0, 0, 1)


# -- end to end: real syncs against the Graph simulator -----------------------------------

SIM_TENANT = "5e1f0c2a-7b3d-4e8f-9a6b-0c1d2e3f4a5b"
SLOW_TYPE_ITEMS = 60
SLOW_MS = 1500


def wait_until_consumed(sim: SimulatorServer, tenant_id: str, timeout: float = 10.0) -> None:
    """Until the one-shot latency rule has hit a request (spent rules are dropped)."""
    deadline = time.monotonic() + timeout
    while any(rule["applied"] == 0 for rule in sim.control.faults(tenant_id)):
        assert time.monotonic() < deadline, "the slow request never arrived"
        time.sleep(0.01)


def test_narrow_sync_finishing_inside_a_slow_wide_sync_sees_nothing_missing(
    engine: Engine, sim: SimulatorServer, sim_graph: GraphClient
) -> None:
    add_tenant(engine, SIM_TENANT, "Overlap")
    sim.control.configure_tenant(SIM_TENANT, seed=11, default_size=2, sizes={X: SLOW_TYPE_ITEMS})
    # Only the first compliance request is slow: the wide run's, which starts first.
    sim.control.add_fault(
        SIM_TENANT, {"kind": "latency", "policy_type": X, "ms": SLOW_MS, "count": 1}
    )
    store = InventoryStore(engine)
    everything, compliance = get_selection("all"), get_selection("compliance")
    wide: dict[str, SyncSummary] = {}

    def run_wide() -> None:
        wide["summary"] = sync_partition(store, sim_graph, SIM_TENANT, everything)

    thread = threading.Thread(target=run_wide)
    thread.start()
    try:
        wait_until_consumed(sim, SIM_TENANT)  # the wide run has started and waits on X
        narrow = sync_partition(store, sim_graph, SIM_TENANT, compliance)
        assert thread.is_alive(), "the wide run must still be fetching when the narrow one ends"
    finally:
        thread.join(30)
    wide_summary = wide["summary"]
    assert narrow.status == "success" and wide_summary.status == "success"
    wide_run = store.get_sync_run(SIM_TENANT, wide_summary.run_id)
    narrow_run = store.get_sync_run(SIM_TENANT, narrow.run_id)
    assert wide_run["started_at"] < narrow_run["started_at"] < wide_run["finished_at"]
    assert narrow_run["finished_at"] < wide_run["finished_at"]

    compliance_missing = compute_missing(engine, SIM_TENANT, compliance)
    assert compliance_missing.baseline_run_id == narrow.run_id
    assert compliance_missing.missing_count == 0, compliance_missing
    assert compute_missing(engine, SIM_TENANT, everything).missing_count == 0
    rows = stored(engine, SIM_TENANT)
    slow = {key for key in rows if key[0] == X}
    assert len(slow) == SLOW_TYPE_ITEMS
    assert {rows[key]["last_seen_run_id"] for key in slow} == {narrow.run_id}
    assert_observed_since_start(rows, slow, narrow_run["started_at"])
    assert_observed_since_start(rows, set(rows), wide_run["started_at"])


# -- random interleavings ----------------------------------------------------------------

UNIVERSE = {X: ["x1", "x2", "x3"], Y: ["y1", "y2"], Z: ["z1", "z2", "z3"]}
SELECTIONS = [
    selection("all-three", X, Y, Z),
    selection("x-only", X),
    selection("x-and-y", X, Y),
    selection("y-and-z", Y, Z),
]


@dataclass
class Plan:
    """One run: its selection and its writes, (policy type, external ids) in order."""

    sel: Selection
    writes: list[tuple[str, list[str]]]
    started: RunStarted | None = None
    counts: UpsertCounts = field(default_factory=UpsertCounts)

    @property
    def steps(self) -> int:
        return len(self.writes) + 2  # start, writes, finish

    @property
    def keys(self) -> set[tuple[str, str]]:
        return {(t, i) for t in self.sel.policy_types for i in UNIVERSE[t]}


@st.composite
def plans(draw: st.DrawFn) -> list[Plan]:
    chosen = draw(
        st.lists(st.sampled_from(SELECTIONS), min_size=2, max_size=4, unique_by=lambda s: s.name)
    )
    result = []
    for sel in chosen:
        writes = []
        for policy_type in sel.policy_types:
            ids = UNIVERSE[policy_type]
            size = draw(st.integers(1, len(ids)))
            writes += [(policy_type, ids[k : k + size]) for k in range(0, len(ids), size)]
        result.append(Plan(sel, writes))
    return result


def reset(engine: Engine) -> None:
    """Empty the database between examples (PostgreSQL's database is shared per session)."""
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            conn.execute(text(TRUNCATE))
        else:
            for table in ("inventory_missing", "inventory_items", "inventory_sync_runs", "tenants"):
                conn.execute(text(f"DELETE FROM {table}"))
    register(engine, TENANT_A)


class Checker:
    """Everything that must hold after each step of an interleaving."""

    def __init__(self, store: InventoryStore) -> None:
        self.store = store
        self.first_seen: dict[tuple[str, str], tuple[datetime, int]] = {}
        self.last_seen: dict[tuple[str, str], tuple[datetime, int]] = {}
        self.finished: list[Plan] = []

    def after_step(self) -> None:
        for key, row in stored(self.store.engine).items():
            first = (row["first_seen_at"], row["first_seen_run_id"])
            last = (row["last_seen_at"], row["last_seen_run_id"])
            assert self.first_seen.setdefault(key, first) == first, f"first_seen moved: {key}"
            assert last >= self.last_seen.get(key, last), f"last_seen moved back: {key}"
            self.last_seen[key] = last

    def after_finish(self, plan: Plan) -> None:
        self.finished.append(plan)
        rows = stored(self.store.engine)
        for done in self.finished:
            assert done.started is not None
            assert_observed_since_start(rows, done.keys, done.started.started_at)
            result = compute_missing(self.store.engine, TENANT_A, done.sel)
            assert result.missing_count == 0, (done.sel.name, result)


def execute(store: InventoryStore, runs: list[Plan], order: list[int]) -> None:
    checker = Checker(store)
    position = [0] * len(runs)
    for index in order:
        plan, step = runs[index], position[index]
        position[index] += 1
        if step == 0:
            plan.started = start(store, plan.sel)
        elif step <= len(plan.writes):
            assert plan.started is not None
            policy_type, ids = plan.writes[step - 1]
            plan.counts.add(
                store.upsert_items(
                    TENANT_A,
                    plan.started.run_id,
                    policy_type,
                    items(*ids),
                    seen_at=plan.started.started_at,
                )
            )
        else:
            assert plan.started is not None
            assert finish(store, plan.started, plan.sel, plan.counts) == "success"
        checker.after_step()
        if step == plan.steps - 1:
            checker.after_finish(plan)
    # Counts stay right: each item inserted once (by whichever run wrote it first), nothing
    # renamed, every write observed whether it was applied or skipped.
    assert sum(plan.counts.inserted for plan in runs) == len(stored(store.engine))
    assert sum(plan.counts.updated for plan in runs) == 0
    assert all(plan.counts.observed == len(plan.keys) for plan in runs)


def test_random_interleavings_of_overlapping_runs(engine: Engine) -> None:
    store = InventoryStore(engine)

    @settings(
        max_examples=15 if engine.dialect.name == "postgresql" else 25,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(data=st.data())
    def interleaving(data: st.DataObject) -> None:
        runs = data.draw(plans(), label="runs")
        slots = [index for index, plan in enumerate(runs) for _ in range(plan.steps)]
        order = data.draw(st.permutations(slots), label="order")
        reset(engine)
        execute(store, runs, order)

    interleaving()
