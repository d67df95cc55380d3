"""The benchmark suite still runs: `python -m bench.run --smoke` end to end, so `make bench`
cannot rot between the (long) real runs. Tiny sizes, one repetition, two tenants for the
missing computation, 50 ms of latency instead of 150; about 30 s on the 2-core machine.

The peer section (our sync against a plain dlt pipeline and Graph's floor) runs in its own
test at 400 items (about 50 s). It needs the `bench` extra, which `make install` installs:
without dlt the test fails under CI=true and is skipped (reported by `-ra`) elsewhere."""

from __future__ import annotations

import importlib.util
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


PEER_ITEMS = 400


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


@pytest.mark.slow
@pytest.mark.postgres
def test_bench_smoke_peer_section_compares_with_dlt_and_the_floor(tmp_path: Path) -> None:
    if importlib.util.find_spec("dlt") is None:
        message = "dlt is not installed: pip install -e '.[bench]' (make install does)"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true and {message}")
        pytest.skip(message)
    out = tmp_path / "results.json"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench.run",
            "--smoke",
            "--sections",
            "peer",
            "--peer",
            "dlt",
            "--dialects",
            "postgresql",
            "--out",
            str(out),
        ],
        cwd=REPO_ROOT,
        env={**os.environ, "INVENTORY_BENCH_POSTGRES_URL": admin_url()},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    peer = json.loads(out.read_text(encoding="utf-8"))["peer"]

    assert peer["peer"] == "dlt"
    assert peer["identity_rps"] > 0
    assert "conditional_access_policies" in peer["paced_types"]
    # $top=999 everywhere, except where the collection names a smaller cap in its 400: 200 on
    # update profiles, the simulator's settings-catalog maximum (100 by default).
    assert set(peer["tops"].values()) <= {999, 200, 100}
    assert peer["tops"]["settings_catalog_policies"] == 100
    assert peer["tops"]["feature_update_profiles"] == 200
    assert peer["tops"]["device_configurations"] == 999
    size = peer["size"]
    assert size["distribution"]["conditional_access_policies"] == 3
    assert sum(size["distribution"].values()) == PEER_ITEMS
    for who in ("project", "dlt"):
        for variant in ("initial", "resync"):
            runs = size[who][variant]
            _succeeded(runs, PEER_ITEMS)
            assert runs[0]["client_cpu_seconds"] > 0
            assert runs[0]["graph_requests"] >= 41
            assert runs[0]["wal_bytes"] > 0
    assert size["project"]["resync"][0]["inserted"] == 0
    assert len(size["dlt"]["initial"][0]["items_by_type"]) == 41

    latency = peer["latency"]
    floor = latency["floor"]
    assert floor["paced_requests"] >= 2
    assert floor["seconds"] >= floor["paced_seconds"] > 0
    assert floor["requests"] == sum(c["pages"] for c in latency["chains"].values())
    for who in ("project", "dlt"):
        _succeeded(latency[who], PEER_ITEMS)
        # No client beats the floor.
        assert latency[who][0]["wall_seconds"] >= floor["seconds"]

    assert "### Peer: dlt rest_api pipeline and Graph's floor" in completed.stdout
    assert "faster than the dlt peer" in completed.stdout
    assert "Graph's floor" in completed.stdout
