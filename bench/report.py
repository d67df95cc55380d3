"""Markdown tables and target verdicts from `bench/results.json`.

Every figure is the median of the repetitions with the min–max range; ratios are taken
between medians of the same run. `evaluate_targets` is the single place the issue's targets
are written down.

    python -m bench.report [bench/results.json]    # re-render a stored result
"""

from __future__ import annotations

import json
import statistics
import sys
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

DIALECT_NAMES = {"postgresql": "PostgreSQL", "sqlite": "SQLite"}
MIB = 1024 * 1024


@dataclass(frozen=True)
class Spread:
    median: float
    low: float
    high: float
    n: int

    def text(self, fmt: str = "{:.2f}", scale: float = 1.0) -> str:
        if self.n == 1:
            return fmt.format(self.median * scale)
        low, high = fmt.format(self.low * scale), fmt.format(self.high * scale)
        return f"{fmt.format(self.median * scale)} ({low}–{high})"


def spread(values: Iterable[float | int | None]) -> Spread | None:
    """Median and range of the values that were measured (None when there are none)."""
    present = [float(v) for v in values if v is not None]
    if not present:
        return None
    return Spread(statistics.median(present), min(present), max(present), len(present))


def of(runs: list[dict[str, Any]], key: str | Callable[[dict[str, Any]], Any]) -> Spread | None:
    getter = key if callable(key) else (lambda run: run.get(key))
    return spread(getter(run) for run in runs)


def items_per_second(run: dict[str, Any]) -> float:
    return float(run["items"]) / float(run["wall_seconds"])


def _cell(value: Spread | None, fmt: str = "{:.2f}", scale: float = 1.0) -> str:
    return value.text(fmt, scale) if value is not None else "–"


def _ratio(numerator: Spread | None, denominator: Spread | None) -> float | None:
    if numerator is None or denominator is None or denominator.median == 0:
        return None
    return numerator.median / denominator.median


def _ratio_text(value: float | None, fmt: str = "{:.2f}") -> str:
    return fmt.format(value) if value is not None else "–"


def _sizes(results: dict[str, Any]) -> dict[int, dict[str, Any]]:
    sizes = results.get("sync", {}).get("sizes", {})
    return {int(size): entry for size, entry in sizes.items()}


def _dialects(results: dict[str, Any]) -> list[str]:
    return list(results["meta"]["config"]["dialects"])


def _name(dialect: str) -> str:
    return DIALECT_NAMES.get(dialect, dialect)


# -- targets -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    target: str
    dialect: str
    measured: str
    limit: str
    passed: bool | None

    @property
    def mark(self) -> str:
        return {True: "pass", False: "**MISS**", None: "n/a"}[self.passed]


def _check(value: float | None, limit: float, *, at_most: bool) -> bool | None:
    if value is None:
        return None
    return value <= limit if at_most else value >= limit


def evaluate_targets(results: dict[str, Any]) -> list[Verdict]:
    """The issue's targets, per dialect, from one run's medians."""
    config = results["meta"]["config"]
    sizes = _sizes(results)
    largest = max(config["sizes"]) if config.get("sizes") else None
    verdicts: list[Verdict] = []
    for dialect in _dialects(results):
        entry = sizes.get(largest) if largest is not None else None
        if entry is not None and dialect in entry:
            sync = of(entry[dialect]["initial"], items_per_second)
            floor = of(entry["fetch"], items_per_second)
            share = _ratio(sync, floor)
            verdicts.append(
                Verdict(
                    f"initial sync at {largest:,} items ≥ 50% of the fetch floor's items/s",
                    dialect,
                    _ratio_text(share, "{:.0%}"),
                    "≥ 50%",
                    _check(share, 0.5, at_most=False),
                )
            )
        naive = results.get("naive", {})
        naive_size = naive.get("items")
        if naive.get(dialect) and naive_size in sizes and dialect in sizes[naive_size]:
            speedup = _ratio(
                of(sizes[naive_size][dialect]["initial"], items_per_second),
                of(naive[dialect], items_per_second),
            )
            verdicts.append(
                Verdict(
                    f"sync ≥ 50× the naive baseline at {naive_size:,} items",
                    dialect,
                    _ratio_text(speedup, "{:.1f}×"),
                    "≥ 50×",
                    _check(speedup, 50, at_most=False),
                )
            )
        if entry is not None and dialect in entry:
            runs = entry[dialect]
            initial_wall = of(runs["initial"], "wall_seconds")
            for variant, label in (
                ("resync_after_checkpoint", "CHECKPOINT before both"),
                ("resync", "no CHECKPOINT between the syncs"),
            ):
                wall = _ratio(of(runs[variant], "wall_seconds"), initial_wall)
                verdicts.append(
                    Verdict(
                        f"unchanged re-sync wall ≤ 0.6× initial ({largest:,}; {label})",
                        dialect,
                        _ratio_text(wall),
                        "≤ 0.60",
                        _check(wall, 0.6, at_most=True),
                    )
                )
                if dialect == "postgresql":
                    wal = _ratio(of(runs[variant], "wal_bytes"), of(runs["initial"], "wal_bytes"))
                    verdicts.append(
                        Verdict(
                            f"unchanged re-sync WAL ≤ 50% of initial ({largest:,}; {label})",
                            dialect,
                            _ratio_text(wal, "{:.0%}"),
                            "≤ 50%",
                            _check(wal, 0.5, at_most=True),
                        )
                    )
        memory_sizes = [s for s in config.get("memory_sizes", []) if s in sizes]
        if len(set(memory_sizes)) >= 2:
            small, big = min(memory_sizes), max(memory_sizes)
            if dialect in sizes[small] and dialect in sizes[big]:
                growth = _ratio(
                    of(sizes[big][dialect]["initial"], "peak_rss_kb"),
                    of(sizes[small][dialect]["initial"], "peak_rss_kb"),
                )
                verdicts.append(
                    Verdict(
                        f"peak RSS at {big:,} ≤ 1.25× at {small:,}",
                        dialect,
                        _ratio_text(growth, "{:.2f}×"),
                        "≤ 1.25×",
                        _check(growth, 1.25, at_most=True),
                    )
                )
        missing = results.get("missing", {})
        if dialect in missing:
            part = missing["partition_items"]
            share = None
            if part in sizes and dialect in sizes[part]:
                share = _ratio(
                    of(missing[dialect]["partition"], "seconds"),
                    of(sizes[part][dialect]["initial"], "wall_seconds"),
                )
            verdicts.append(
                Verdict(
                    f"missing for a {part:,}-item partition < 1% of its initial sync",
                    dialect,
                    _ratio_text(share, "{:.2%}"),
                    "< 1%",
                    None if share is None else share < 0.01,
                )
            )
            verdicts.append(
                Verdict(
                    "missing INSERT … SELECT is index-driven (no Seq Scan on inventory_items)",
                    dialect,
                    "yes" if missing[dialect]["index_driven"] else "no",
                    "yes",
                    bool(missing[dialect]["index_driven"]),
                )
            )
        latency = results.get("latency", {})
        if latency.get(dialect):
            over = of(latency[dialect], "wall_over_floor")
            verdicts.append(
                Verdict(
                    "latency-bound wall ≤ 1.3× max(critical path, sum ÷ concurrency)",
                    dialect,
                    _ratio_text(over.median if over else None, "{:.2f}×"),
                    "≤ 1.30×",
                    _check(over.median if over else None, 1.3, at_most=True),
                )
            )
    verdicts += _peer_verdicts(results)
    return verdicts


PEER_TARGETS = {"initial": 4.0, "resync": 4.0, "latency": 3.0}
"""Project ÷ peer speed-ups the issue asks for (the latency case aims at 5×)."""
FLOOR_TARGET = 1.2
"""Project wall ÷ Graph's floor in the latency case."""


def peer_ratios(results: dict[str, Any]) -> dict[str, float | None]:
    """Peer wall ÷ project wall (how many times faster the project is) per case, and the
    project's and the peer's wall ÷ the floor in the latency case, between medians."""
    section = results.get("peer") or {}
    peer = section.get("peer", "dlt")
    ratios: dict[str, float | None] = {}
    entry = section.get("size") or {}
    for variant in ("initial", "resync"):
        ratios[variant] = _ratio(
            of(entry.get(peer, {}).get(variant, []), "wall_seconds"),
            of(entry.get("project", {}).get(variant, []), "wall_seconds"),
        )
    latency = section.get("latency") or {}
    project = of(latency.get("project", []), "wall_seconds")
    ratios["latency"] = _ratio(of(latency.get(peer, []), "wall_seconds"), project)
    floor = latency.get("floor", {}).get("seconds")
    floor_spread = spread([floor]) if floor else None
    ratios["project_over_floor"] = _ratio(project, floor_spread)
    ratios["peer_over_floor"] = _ratio(of(latency.get(peer, []), "wall_seconds"), floor_spread)
    return ratios


def _peer_verdicts(results: dict[str, Any]) -> list[Verdict]:
    section = results.get("peer")
    if not section:
        return []
    peer = section["peer"]
    ratios = peer_ratios(results)
    size = section.get("size", {}).get("items", 0)
    latency = section.get("latency", {})
    verdicts = []
    for key, label in (
        ("initial", f"initial sync at {size:,} items"),
        ("resync", f"unchanged re-sync at {size:,} items"),
        (
            "latency",
            f"initial sync at {latency.get('items', 0):,} items, "
            f"{latency.get('latency_ms', 0):.0f} ms per request",
        ),
    ):
        limit = PEER_TARGETS[key]
        verdicts.append(
            Verdict(
                f"{label}: ≥ {limit:.0f}× faster than the {peer} peer",
                "postgresql",
                _ratio_text(ratios[key], "{:.1f}×"),
                f"≥ {limit:.0f}×",
                _check(ratios[key], limit, at_most=False),
            )
        )
    verdicts.append(
        Verdict(
            "latency-bound wall ≤ 1.2× Graph's floor (batched, paced, largest pages)",
            "postgresql",
            _ratio_text(ratios["project_over_floor"], "{:.2f}×"),
            f"≤ {FLOOR_TARGET:.1f}×",
            _check(ratios["project_over_floor"], FLOOR_TARGET, at_most=True),
        )
    )
    return verdicts


# -- tables ----------------------------------------------------------------------------------


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return lines


def _throughput_table(results: dict[str, Any]) -> list[str]:
    rows = []
    naive = results.get("naive", {})
    for size, entry in sorted(_sizes(results).items()):
        floor = of(entry["fetch"], items_per_second)
        rows.append(
            [
                f"{size:,}",
                "fetch floor (no database)",
                _cell(of(entry["fetch"], "wall_seconds")),
                _cell(floor, "{:,.0f}"),
                _cell(of(entry["fetch"], "peak_rss_kb"), "{:.0f}", 1024 / MIB),
                "1.00",
            ]
        )
        for dialect in _dialects(results):
            if dialect not in entry:
                continue
            runs = entry[dialect]["initial"]
            speed = of(runs, items_per_second)
            rows.append(
                [
                    f"{size:,}",
                    f"{_name(dialect)} initial sync",
                    _cell(of(runs, "wall_seconds")),
                    _cell(speed, "{:,.0f}"),
                    _cell(of(runs, "peak_rss_kb"), "{:.0f}", 1024 / MIB),
                    _ratio_text(_ratio(speed, floor)),
                ]
            )
            if naive.get("items") == size and naive.get(dialect):
                naive_speed = of(naive[dialect], items_per_second)
                rows.append(
                    [
                        f"{size:,}",
                        f"{_name(dialect)} naive baseline",
                        _cell(of(naive[dialect], "wall_seconds"), "{:.1f}"),
                        _cell(naive_speed, "{:,.0f}"),
                        _cell(of(naive[dialect], "peak_rss_kb"), "{:.0f}", 1024 / MIB),
                        _ratio_text(_ratio(naive_speed, floor), "{:.3f}"),
                    ]
                )
    return _table(
        ["items", "run", "wall s", "items/s", "peak RSS MiB", "÷ fetch floor items/s"], rows
    )


def _resync_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for size, entry in sorted(_sizes(results).items()):
        for dialect in _dialects(results):
            if dialect not in entry:
                continue
            runs = entry[dialect]
            initial = of(runs["initial"], "wall_seconds")
            volume = "wal_bytes" if dialect == "postgresql" else "bytes_written"
            initial_volume = of(runs["initial"], volume)
            cells = [
                f"{size:,}",
                _name(dialect),
                _cell(initial),
                _cell(initial_volume, "{:.1f}", 1 / MIB),
            ]
            for variant in ("resync_after_checkpoint", "resync"):
                wall = of(runs[variant], "wall_seconds")
                written = of(runs[variant], volume)
                share = _ratio_text(_ratio(written, initial_volume), "{:.0%}")
                cells += [
                    f"{_cell(wall)} ({_ratio_text(_ratio(wall, initial))}×)",
                    f"{_cell(written, '{:.1f}', 1 / MIB)} ({share})",
                ]
            rows.append(cells)
    return _table(
        [
            "items",
            "dialect",
            "initial wall s",
            "initial MiB written",
            "re-sync after CHECKPOINT: wall s (× initial)",
            "MiB written (% of initial)",
            "re-sync, no CHECKPOINT between: wall s (× initial)",
            "MiB written (% of initial)",
        ],
        rows,
    )


def _rows_written_table(results: dict[str, Any]) -> list[str]:
    rows = []
    for size, entry in sorted(_sizes(results).items()):
        runs = entry.get("postgresql")
        if not runs:
            continue
        for variant, label in (
            ("initial", "initial sync"),
            ("resync_after_checkpoint", "re-sync after CHECKPOINT"),
            ("resync", "re-sync, no CHECKPOINT between"),
        ):
            writes = [r.get("table_writes", {}) for r in runs[variant]]
            hot_share = spread(
                w["n_tup_hot_upd"] / w["n_tup_upd"] for w in writes if w.get("n_tup_upd")
            )
            rows.append(
                [
                    f"{size:,}",
                    label,
                    _cell(spread(w.get("n_tup_ins") for w in writes), "{:,.0f}"),
                    _cell(spread(w.get("n_tup_upd") for w in writes), "{:,.0f}"),
                    _cell(spread(w.get("n_tup_hot_upd") for w in writes), "{:,.0f}"),
                    _cell(hot_share, "{:.0%}"),
                    _cell(spread(w.get("wal_fpi") for w in writes), "{:,.0f}"),
                    _cell(of(runs[variant], "wal_bytes"), "{:.1f}", 1 / MIB),
                    str(sum(w.get("checkpoints", 0) for w in writes)),
                    str(sum(w.get("foreign_commits", 0) for w in writes)),
                ]
            )
    return _table(
        [
            "items",
            "PostgreSQL run",
            "n_tup_ins",
            "n_tup_upd",
            "n_tup_hot_upd",
            "HOT share",
            "full-page images",
            "WAL MiB",
            "checkpoints inside (all runs)",
            "commits in other databases (all runs)",
        ],
        rows,
    )


def _memory_table(results: dict[str, Any]) -> list[str]:
    config = results["meta"]["config"]
    sizes = _sizes(results)
    memory_sizes = sorted(s for s in set(config.get("memory_sizes", [])) if s in sizes)
    rows = []
    for dialect in ["fetch", *_dialects(results)]:
        cells = ["fetch floor (no database)" if dialect == "fetch" else _name(dialect)]
        peaks = []
        for size in memory_sizes:
            runs = (
                sizes[size]["fetch"]
                if dialect == "fetch"
                else sizes[size].get(dialect, {}).get("initial", [])
            )
            peak = of(runs, "peak_rss_kb")
            peaks.append(peak)
            cells.append(_cell(peak, "{:.0f}", 1024 / MIB))
        baseline = [
            run
            for size in memory_sizes
            for run in (
                sizes[size]["fetch"]
                if dialect == "fetch"
                else sizes[size].get(dialect, {}).get("initial", [])
            )
        ]
        cells.append(_cell(of(baseline, "rss_before_kb"), "{:.0f}", 1024 / MIB))
        growth = _ratio(peaks[-1], peaks[0]) if len(peaks) >= 2 else None
        cells.append(_ratio_text(growth, "{:.2f}×"))
        rows.append(cells)
    header = ["process", *(f"peak RSS MiB at {s:,}" for s in memory_sizes)]
    return _table([*header, "RSS before the timed part MiB", "growth"], rows)


def _cpu_table(results: dict[str, Any]) -> list[str]:
    """Where the CPU went at the largest size: client, simulator and database backends."""
    sizes = _sizes(results)
    if not sizes:
        return []
    size = max(sizes)
    entry = sizes[size]
    groups: list[tuple[str, list[dict[str, Any]]]] = [("fetch floor", entry["fetch"])]
    for dialect in _dialects(results):
        if dialect in entry:
            for variant, label in (
                ("initial", "initial sync"),
                ("resync_after_checkpoint", "re-sync after CHECKPOINT"),
                ("resync", "re-sync, no CHECKPOINT between"),
            ):
                groups.append((f"{_name(dialect)} {label}", entry[dialect][variant]))
    rows = []
    for label, runs in groups:

        def part(name: str) -> Callable[[dict[str, Any]], Any]:
            return lambda run: run.get("cpu_seconds", {}).get(name)

        def total(run: dict[str, Any]) -> float:
            return float(sum(run.get("cpu_seconds", {}).values()))

        rows.append(
            [
                label,
                _cell(of(runs, "wall_seconds")),
                _cell(of(runs, part("client"))),
                _cell(of(runs, part("simulator"))),
                _cell(of(runs, part("postgres_backends"))),
                _cell(of(runs, lambda run: total(run) / run["wall_seconds"])),
            ]
        )
    header = [f"CPU seconds at {size:,} items:", ""]
    return header + _table(
        [
            "run",
            "wall s",
            "client CPU s",
            "simulator CPU s",
            "PostgreSQL backends CPU s (≈)",
            "cores busy (CPU ÷ wall)",
        ],
        rows,
    )


def _execution_ms(plan: str | None) -> str:
    """'Execution Time' of a PostgreSQL EXPLAIN ANALYZE text ('–' when there is none)."""
    for line in (plan or "").splitlines():
        if line.startswith("Execution Time:"):
            return line.split(":", 1)[1].replace("ms", "").strip()
    return "–"


def _missing_table(results: dict[str, Any]) -> list[str]:
    missing = results.get("missing", {})
    sizes = _sizes(results)
    part = missing.get("partition_items")
    rows = []
    for dialect in _dialects(results):
        if dialect not in missing:
            continue
        data = missing[dialect]
        partition = of(data["partition"], "seconds")
        initial = (
            of(sizes[part][dialect]["initial"], "wall_seconds")
            if part in sizes and dialect in sizes[part]
            else None
        )
        rows.append(
            [
                _name(dialect),
                f"{data['load_seconds']:.1f}",
                f"{data['first_call_seconds'] * 1000:.0f}",
                _cell(partition, "{:.0f}", 1000),
                _cell(of(data["all_partitions"], "seconds")),
                "{missing:,} of {partition_items:,}".format(**data["partition"][0]),
                _ratio_text(_ratio(partition, initial), "{:.2%}"),
                "yes" if data["index_driven"] else "**no**",
                _execution_ms(data["plans"].get("insert_select")),
                _execution_ms(data["plans"].get("insert_select_enable_seqscan_off")),
            ]
        )
    return _table(
        [
            "dialect",
            "load s (untimed)",
            "first call ms",
            f"one {part:,}-item partition ms",
            f"all {missing.get('tenants', 0)} partitions s",
            "missing found",
            "÷ initial sync of that size",
            "index-driven",
            "INSERT … SELECT ms (EXPLAIN ANALYZE)",
            "same with enable_seqscan=off ms",
        ],
        rows,
    )


def _latency_table(results: dict[str, Any]) -> list[str]:
    latency = results.get("latency", {})
    rows = []
    for dialect in _dialects(results):
        runs = latency.get(dialect)
        if not runs:
            continue
        first = runs[0]
        rows.append(
            [
                _name(dialect),
                _cell(of(runs, "wall_seconds")),
                _cell(of(runs, "requests"), "{:.0f}"),
                _cell(of(runs, "sum_seconds")),
                f"{_cell(of(runs, 'critical_path_seconds'))} ({first['longest_type']}, "
                f"{first['longest_chain']} pages)",
                _cell(
                    of(runs, lambda r: r["sum_seconds"] / results["latency"]["type_concurrency"])
                ),
                _cell(of(runs, "floor_seconds")),
                _cell(of(runs, "wall_over_floor"), "{:.2f}×"),
                _cell(of(runs, "max_in_flight"), "{:.0f}"),
                _cell(of(runs, "model_submission_order_seconds")),
                _cell(of(runs, "model_longest_first_seconds")),
            ]
        )
    concurrency = latency.get("type_concurrency", 4)
    return _table(
        [
            "dialect",
            "wall s",
            "requests",
            "sum of latencies s",
            "critical path s",
            f"sum ÷ {concurrency} s",
            "floor = max s",
            "wall ÷ floor",
            "max in flight (tenant)",
            "model: submission order s",
            "model: longest first s",
        ],
        rows,
    )


def _per_item_us(run: dict[str, Any]) -> float:
    return float(run["client_cpu_seconds"]) / float(run["items"]) * 1e6


def _peer_row(label: str, who: str, runs: list[dict[str, Any]], base: Spread | None) -> list[str]:
    wall = of(runs, "wall_seconds")
    return [
        label,
        who,
        _cell(wall),
        _cell(of(runs, items_per_second), "{:,.0f}"),
        _cell(of(runs, "client_cpu_seconds")),
        _cell(of(runs, _per_item_us), "{:.0f}"),
        _cell(of(runs, "graph_requests"), "{:.0f}"),
        _cell(of(runs, "throttled"), "{:.0f}"),
        _cell(of(runs, "max_in_flight"), "{:.0f}"),
        _cell(of(runs, "wal_bytes"), "{:.1f}", 1 / MIB),
        _cell(of(runs, "peak_rss_kb"), "{:.0f}", 1024 / MIB),
        _ratio_text(_ratio(wall, base), "{:.2f}×"),
    ]


def _peer_tables(results: dict[str, Any]) -> list[str]:
    section = results["peer"]
    peer = section["peer"]
    entry = section.get("size") or {}
    latency = section.get("latency") or {}
    size = entry.get("items", 0)
    rows = []
    for variant, label in (("initial", "initial sync"), ("resync", "unchanged re-sync")):
        project = entry.get("project", {}).get(variant, [])
        base = of(project, "wall_seconds")
        text = f"{size:,} items, {label}"
        rows.append(_peer_row(text, "project", project, base))
        rows.append(
            _peer_row(text, f"{peer} {section['peer_version']}", entry[peer][variant], base)
        )
    if latency:
        project = latency.get("project", [])
        base = of(project, "wall_seconds")
        text = f"{latency['items']:,} items, {latency['latency_ms']:.0f} ms/request"
        rows.append(_peer_row(text, "project", project, base))
        rows.append(_peer_row(text, f"{peer} {section['peer_version']}", latency[peer], base))
    lines = [
        f"Identity throttle {section['identity_rps']:g} request/s per tenant in the simulator "
        f"and in the project's pacing; {section['ca_policies']} conditional access policies and "
        f"{section['named_locations']} named locations per tenant. The peer sends `$top` "
        + ", ".join(
            f"{top} to {n} collection(s)"
            for top, n in sorted(
                _count_values(section.get("tops", {})).items(), key=lambda kv: -kv[1]
            )
        )
        + ". Client CPU includes reaped child processes.",
        "",
    ]
    lines += _table(
        [
            "case",
            "client",
            "wall s",
            "items/s",
            "client CPU s",
            "client CPU µs/item",
            "Graph requests",
            "of which 429",
            "max in flight",
            "WAL MiB",
            "peak RSS MiB",
            "wall ÷ project",
        ],
        rows,
    )
    if latency:
        floor = latency["floor"]
        unbounded = latency.get("floor_unbounded_batches", {})
        ratios = peer_ratios(results)
        rounds = ", ".join(f"{v} {n}" for v, n in floor["round_trips_by_version"].items())
        lines += [
            "",
            "Graph's floor for the latency case (page chains as the simulator serves them at "
            "the largest page size each endpoint accepts; ≤ 20 requests per `$batch`, one "
            "batch per API version in flight; paced requests 1/rate apart; the simulator adds "
            "no latency to token requests):",
            "",
        ]
        lines += _table(
            [
                "floor s",
                "bound by",
                "unpaced round trips (per version)",
                "unpaced s",
                "paced requests",
                "paced s",
                "longest chain",
                "requests",
                "floor, unbounded batches s",
                "project ÷ floor",
                f"{peer} ÷ floor",
            ],
            [
                [
                    f"{floor['seconds']:.2f}",
                    floor["bound_by"],
                    rounds,
                    f"{floor['unpaced_seconds']:.2f}",
                    str(floor["paced_requests"]),
                    f"{floor['paced_seconds']:.2f}",
                    f"{floor['longest_chain']} ({floor['longest_chain_pages']} pages)",
                    str(floor["requests"]),
                    f"{unbounded.get('seconds', float('nan')):.2f}",
                    _ratio_text(ratios["project_over_floor"], "{:.2f}×"),
                    _ratio_text(ratios["peer_over_floor"], "{:.2f}×"),
                ]
            ],
        )
    return lines


def _count_values(values: dict[str, Any]) -> dict[Any, int]:
    counts: dict[Any, int] = {}
    for value in values.values():
        counts[value] = counts.get(value, 0) + 1
    return counts


def _target_dialect(dialect: str) -> str:
    """The targets are PostgreSQL's; SQLite's verdicts are shown for reference."""
    return _name(dialect) if dialect == "postgresql" else f"{_name(dialect)} (reference)"


def render(results: dict[str, Any]) -> str:
    """The whole report as Markdown."""
    meta = results["meta"]
    machine = meta["machine"]
    lines = [
        f"Command: `{meta['command']}`",
        "",
        f"Machine: {machine['nproc']} cores ({machine['cpu_model']}), "
        f"{machine['memory_mib']:,} MiB RAM; load average before/after: "
        f"{machine['load_before']} / {machine['load_after']}; Python {machine['python']}; "
        f"total {meta['total_seconds'] / 60:.1f} min.",
    ]
    if meta.get("code_fingerprint") != meta.get("code_fingerprint_after"):
        lines += [
            "",
            "**Warning: the product code changed while this run was measuring "
            f"({meta.get('code_fingerprint')} → {meta.get('code_fingerprint_after')}); "
            "its sections measured different versions.**",
        ]
    else:
        lines += ["", f"Product code fingerprint: {meta.get('code_fingerprint')} (unchanged)."]
    if meta.get("postgresql"):
        settings = ", ".join(f"{k}={v}" for k, v in meta["postgresql"].items())
        lines += ["", f"PostgreSQL: {settings}."]
    lines += ["", f"Median of {meta['config']['repeat']} runs (min–max).", ""]
    if results.get("sync"):
        lines += ["### Initial sync, fetch floor and naive baseline", ""]
        lines += _throughput_table(results)
        lines += ["", "### Unchanged re-sync", ""]
        lines += _resync_table(results)
        if any("postgresql" in e for e in _sizes(results).values()):
            lines += ["", "Rows written to inventory_items and cluster WAL (PostgreSQL):", ""]
            lines += _rows_written_table(results)
        lines += ["", "### Memory", ""]
        lines += _memory_table(results)
        lines += ["", "### Where the time goes", ""]
        lines += _cpu_table(results)
    if results.get("missing"):
        lines += ["", "### Missing computation", ""]
        lines += _missing_table(results)
    if results.get("latency"):
        lines += [
            "",
            f"### Latency-bound sync ({results['latency']['latency_ms']:.0f} ms per request)",
            "",
        ]
        lines += _latency_table(results)
    if results.get("peer"):
        lines += [
            "",
            f"### Peer: {results['peer']['peer']} rest_api pipeline and Graph's floor",
            "",
        ]
        lines += _peer_tables(results)
    verdicts = [Verdict(**v) for v in results.get("targets", [])] or evaluate_targets(results)
    lines += ["", "### Targets", ""]
    lines += _table(
        ["target", "dialect", "measured", "limit", "verdict"],
        [[v.target, _target_dialect(v.dialect), v.measured, v.limit, v.mark] for v in verdicts],
    )
    return "\n".join(lines) + "\n"


def verdicts_as_dicts(verdicts: list[Verdict]) -> list[dict[str, Any]]:
    return [asdict(v) for v in verdicts]


def main() -> None:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else "bench/results.json")
    print(render(json.loads(path.read_text(encoding="utf-8"))))


if __name__ == "__main__":
    main()
