"""Benchmarks of the sync, the missing computation and a latency-bound sync (`make bench`).

Modules: `run` (entry point), `stack` (simulator subprocess and databases), `measure` (one
measured sync in a fresh subprocess), `naive` (the per-item baseline), `missing_scale`,
`latency`, `report` (Markdown). Results land in `bench/results.json`; see docs/performance.md.
"""
