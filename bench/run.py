"""Entry point of `make bench`: run the sections, write `bench/results.json`, print Markdown.

    python -m bench.run --sizes 20000,100000 --repeat 3        # what `make bench` runs
    python -m bench.run --smoke --out /tmp/results.json         # seconds; what CI runs
    python -m bench.run --sections peer --peer dlt --repeat 3    # only the peer comparison

Sections: `sync` (initial sync, fetch floor, unchanged re-syncs, memory), `naive`,
`missing`, `latency`, and `peer` when `--peer dlt` is given (our sync against a plain dlt
`rest_api` pipeline and against Graph's latency floor, identity throttle on). Runs are
strictly one after another: on a 2-core machine a timing taken while another benchmark runs
would measure the contention.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import shlex
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.latency import run_latency_section
from bench.missing_scale import run_missing_section
from bench.peer import PEERS, run_peer_section
from bench.report import evaluate_targets, render, verdicts_as_dicts
from bench.stack import (
    CpuMeter,
    DatabaseFactory,
    SimulatorProcess,
    postgres_reachable,
    postmaster_pid,
    server_settings,
)
from bench.throughput import run_naive_section, run_sync_section

SECTIONS = ("sync", "naive", "missing", "latency", "peer")
DIALECTS = ("postgresql", "sqlite")
SMOKE = {
    "sizes": [300],
    "memory_sizes": [300],
    "naive_size": 300,
    "repeat": 1,
    "missing_tenants": 2,
    "missing_items": 600,
    "missing_partition": 300,
    "latency_ms": 50.0,
    "peer_size": 400,
    "latency_tenant_size": 400,
    "ca_policies": 3,
    "named_locations": 2,
    "identity_rps": 4.0,
}


def _sizes(text: str) -> list[int]:
    values = [int(part) for part in text.split(",") if part.strip()]
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError("sizes are positive integers separated by commas")
    return values


def _choices(allowed: tuple[str, ...]) -> Any:
    def parse(text: str) -> list[str]:
        values = [part.strip() for part in text.split(",") if part.strip()]
        unknown = sorted(set(values) - set(allowed))
        if unknown or not values:
            raise argparse.ArgumentTypeError(f"choose from {', '.join(allowed)}")
        return values

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument(
        "--sizes", type=_sizes, default=[20_000, 100_000], help="initial-sync sizes"
    )
    parser.add_argument(
        "--memory-sizes", type=_sizes, default=[10_000, 100_000], help="peak RSS compared between"
    )
    parser.add_argument("--naive-size", type=int, default=20_000, help="items for the naive run")
    parser.add_argument("--repeat", type=int, default=3, help="repetitions of every measurement")
    parser.add_argument("--dialects", type=_choices(DIALECTS), default=list(DIALECTS))
    parser.add_argument("--sections", type=_choices(SECTIONS), default=list(SECTIONS))
    parser.add_argument("--missing-tenants", type=int, default=100)
    parser.add_argument("--missing-items", type=int, default=1_000_000)
    parser.add_argument("--missing-partition", type=int, default=100_000)
    parser.add_argument(
        "--latency-ms", type=float, default=150.0, help="per Graph request, latency sections"
    )
    parser.add_argument(
        "--peer",
        choices=[*PEERS, "none"],
        default="none",
        help="compare with this peer (section `peer`; needs the bench extra)",
    )
    parser.add_argument("--peer-size", type=int, default=100_000, help="items, peer section")
    parser.add_argument(
        "--latency-tenant-size", type=int, default=5000, help="items, peer latency case"
    )
    parser.add_argument(
        "--identity-rps",
        type=float,
        default=1.0,
        help="identity throttle (simulator) and pacing (client) in the peer section",
    )
    parser.add_argument("--ca-policies", type=int, default=150, help="peer tenants (≤ 195)")
    parser.add_argument("--named-locations", type=int, default=40, help="peer tenants")
    parser.add_argument("--out", type=Path, default=Path("bench/results.json"))
    parser.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repetition: proves it still runs"
    )
    args = parser.parse_args(argv)
    if args.smoke:
        for name, value in SMOKE.items():
            setattr(args, name, value)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    if args.peer == "none":
        args.sections = [s for s in args.sections if s != "peer"]
    elif "postgresql" not in args.dialects:
        parser.error("--peer compares syncs into PostgreSQL: keep postgresql in --dialects")
    return args


def _machine() -> dict[str, Any]:
    cpu_model = "unknown"
    memory_kib = 0
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text(encoding="utf-8").splitlines():
            if line.startswith("MemTotal:"):
                memory_kib = int(line.split()[1])
    except OSError:
        pass
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu_model,
        "memory_mib": memory_kib // 1024,
        "python": platform.python_version(),
        "load_before": _load(),
    }


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def code_fingerprint() -> str:
    """SHA-256 over the product's code and migrations: a run whose fingerprint changed while
    it ran measured two versions, and says so in its report."""
    digest = hashlib.sha256()
    root = Path(__file__).resolve().parents[1]
    files = sorted(
        [
            *(root / "inventory_pipelines").rglob("*.py"),
            *(root / "inventory_pipelines").rglob("*.toml"),
            *(root / "sql").rglob("*.sql"),
        ]
    )
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _log(message: str) -> None:
    print(f"[bench {datetime.now(UTC):%H:%M:%S}] {message}", file=sys.stderr, flush=True)


def run(args: argparse.Namespace, argv: list[str]) -> dict[str, Any]:
    """Run the selected sections in order and return the results document."""
    if "postgresql" in args.dialects and not postgres_reachable():
        raise SystemExit(
            "PostgreSQL is unreachable; start it or pass --dialects sqlite "
            "(INVENTORY_BENCH_POSTGRES_URL sets the admin URL)"
        )
    started = time.monotonic()
    sync_sizes = sorted(
        set(args.sizes)
        | set(args.memory_sizes)
        | ({args.naive_size} if "naive" in args.sections else set())
    )
    results: dict[str, Any] = {
        "meta": {
            "command": shlex.join(["python", "-m", "bench.run", *argv]),
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "code_fingerprint": code_fingerprint(),
            "machine": _machine(),
            "postgresql": server_settings() if "postgresql" in args.dialects else None,
            "config": {
                "sizes": args.sizes,
                "memory_sizes": args.memory_sizes,
                "measured_sizes": sync_sizes,
                "naive_size": args.naive_size,
                "repeat": args.repeat,
                "dialects": args.dialects,
                "sections": args.sections,
                "missing_tenants": args.missing_tenants,
                "missing_items": args.missing_items,
                "missing_partition": args.missing_partition,
                "latency_ms": args.latency_ms,
                "peer": args.peer,
                "peer_size": args.peer_size,
                "latency_tenant_size": args.latency_tenant_size,
                "identity_rps": args.identity_rps,
                "ca_policies": args.ca_policies,
                "named_locations": args.named_locations,
                "smoke": args.smoke,
            },
        }
    }
    with SimulatorProcess() as sim, DatabaseFactory() as factory:
        results["meta"]["simulator_pid"] = sim.pid
        cpu = CpuMeter(sim.pid, postmaster_pid() if "postgresql" in args.dialects else None)
        if "sync" in args.sections:
            results["sync"] = run_sync_section(
                sim, factory, cpu, sync_sizes, args.dialects, args.repeat, _log
            )
        if "naive" in args.sections:
            results["naive"] = run_naive_section(
                sim, factory, cpu, args.naive_size, args.dialects, args.repeat, _log
            )
        if "latency" in args.sections:
            results["latency"] = run_latency_section(
                sim, factory, args.dialects, args.repeat, _log, latency_ms=args.latency_ms
            )
        if "peer" in args.sections:
            results["peer"] = run_peer_section(
                sim,
                factory,
                cpu,
                peer=args.peer,
                size=args.peer_size,
                latency_size=args.latency_tenant_size,
                latency_ms=args.latency_ms,
                repeat=args.repeat,
                identity_rps=args.identity_rps,
                ca_policies=args.ca_policies,
                named_locations=args.named_locations,
                log=_log,
            )
    if "missing" in args.sections:
        with DatabaseFactory() as factory:
            results["missing"] = run_missing_section(
                factory,
                args.dialects,
                tenants=args.missing_tenants,
                total_items=args.missing_items,
                partition_items=args.missing_partition,
                repeat=args.repeat,
                log=_log,
            )
    results["meta"]["machine"]["load_after"] = _load()
    results["meta"]["code_fingerprint_after"] = code_fingerprint()
    results["meta"]["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["meta"]["total_seconds"] = time.monotonic() - started
    results["targets"] = verdicts_as_dicts(evaluate_targets(results))
    return results


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    results = run(args, argv)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    _log(f"results written to {args.out}")
    print(render(results))


if __name__ == "__main__":
    main()
