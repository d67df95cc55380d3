"""The benchmark suite still runs: `python -m bench.run --smoke` end to end, so `make bench`
cannot rot between the (long) real runs. Tiny sizes, one repetition, two tenants for the
missing computation, 50 ms of latency instead of 150; about 30 s on the 2-core machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from inventory_pipelines_tests.databases import admin_url, postgres_problem

REPO_ROOT = Path(__file__).resolve().parents[1]
SMOKE_ITEMS = 300
HEADINGS = (
    "### Initial sync, fetch floor and naive baseline",
    "### Unchanged re-sync",
    "### Memory",
    "### Where the time goes",
    "### Missing computation",
    "### Latency-bound sync",
    "### Targets",
)


def _succeeded(runs: list[dict[str, Any]], items: int) -> None:
    assert runs, "no runs recorded"
    for run in runs:
        assert run["status"] == "success"
        assert run["items"] == items
        assert run["wall_seconds"] > 0
        assert run["peak_rss_kb"] > 0


@pytest.mark.slow
def test_bench_smoke_writes_a_result_file_with_every_section(tmp_path: Path) -> None:
    dialects = ["sqlite"] if postgres_problem() else ["postgresql", "sqlite"]
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--smoke",
            "--dialects",
            ",".join(dialects),
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "INVENTORY_BENCH_POSTGRES_URL": admin_url()},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    results = json.loads(out.read_text(encoding="utf-8"))

    meta = results["meta"]
    assert meta["config"]["smoke"] is True
    assert meta["config"]["dialects"] == dialects
    assert meta["machine"]["nproc"] >= 1

    entry = results["sync"]["sizes"][str(SMOKE_ITEMS)]
    _succeeded(entry["fetch"], SMOKE_ITEMS)
    for dialect in dialects:
        runs = entry[dialect]
        for variant in ("initial", "resync_after_checkpoint", "resync"):
            _succeeded(runs[variant], SMOKE_ITEMS)
        assert runs["initial"][0]["inserted"] == SMOKE_ITEMS
        assert runs["resync"][0]["inserted"] == runs["resync"][0]["updated"] == 0
        if dialect == "postgresql":
            assert runs["initial"][0]["wal_bytes"] > 0
            assert runs["initial"][0]["table_writes"]["n_tup_ins"] == SMOKE_ITEMS
            assert runs["resync"][0]["table_writes"]["n_tup_upd"] == SMOKE_ITEMS
        else:
            assert runs["initial"][0]["bytes_written"] > 0

        naive = results["naive"][dialect]
        _succeeded(naive, SMOKE_ITEMS)
        assert naive[0]["inserted"] == SMOKE_ITEMS

        missing = results["missing"][dialect]
        assert missing["partition"][0]["missing"] == SMOKE_ITEMS // 100
        assert missing["all_partitions"][0]["partitions"] == 2
        assert "inventory_items" in missing["plans"]["insert_select"]
        assert isinstance(missing["index_driven"], bool)

        latency = results["latency"][dialect][0]
        assert 1 <= latency["max_in_flight"] <= results["latency"]["type_concurrency"]
        assert latency["requests"] == sum(latency["requests_by_type"].values())
        assert latency["requests"] >= 41  # every registry type at least once
        assert latency["wall_seconds"] >= latency["critical_path_seconds"]

    targets = results["targets"]
    assert {t["dialect"] for t in targets} == set(dialects)
    assert all(set(t) == {"target", "dialect", "measured", "limit", "passed"} for t in targets)
    for heading in HEADINGS:
        assert heading in completed.stdout
