"""Benchmarks of the sync, the missing computation and a latency-bound sync (`make bench`).

Modules: `run` (entry point), `stack` (simulator subprocess, databases, statistics), `measure`
(one measured run in a fresh process), `throughput` (initial sync, fetch floor, re-syncs,
naive baseline), `naive` (the per-item baseline itself), `missing_scale`, `latency`, `report`
(Markdown and target verdicts). Results land in `bench/results.json`; docs/performance.md
quotes them. `orchestration` measures Dagster's overhead separately.
"""
