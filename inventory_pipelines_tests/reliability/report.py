"""The fault-matrix report: one JSON line per test when INVENTORY_RELIABILITY_REPORT is set,
and `python -m inventory_pipelines_tests.reliability.report FILE` turning those lines into the
Markdown table of docs/reliability.md."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

REPORT_SETTING = "INVENTORY_RELIABILITY_REPORT"


def append_row(row: Mapping[str, Any]) -> None:
    """Append one row (a JSON line; O_APPEND keeps xdist workers' lines whole)."""
    target = os.environ.get(REPORT_SETTING)
    if not target:
        return
    line = json.dumps(dict(row), sort_keys=True, ensure_ascii=False, default=str) + "\n"
    with Path(target).open("a", encoding="utf-8") as handle:
        handle.write(line)


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def _outcome(result: Mapping[str, Any], *, traffic: bool = False) -> str:
    codes = ", ".join(f"`{c}`" for c in result["codes"]) or "no codes"
    text = f"**{result['status']}**, {codes}, confidence {result['confidence']}"
    missing = result.get("missing_by_reason") or {}
    if missing:
        text += ", missing " + ", ".join(f"{n} {reason}" for reason, n in sorted(missing.items()))
    else:
        text += ", 0 missing"
    if traffic:
        text += f" ({result['requests']} requests, {result['retries']} retries)"
    return text


def _where(row: Mapping[str, Any]) -> str:
    """The database, and whether the run fetched by `$batch` or by GET."""
    if "batching" not in row:
        return str(row["database"])
    return f"{row['database']} ({'batched' if row['batching'] else 'GET'})"


def render_markdown(rows: Iterable[Mapping[str, Any]]) -> str:
    """One table row per fault, databases and transports merged, then a one-line summary."""
    all_rows = list(rows)
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    for row in all_rows:
        by_case.setdefault(str(row["case"]), []).append(row)
    lines = [
        "| # | fault | expected handling | runs | items checked | faulted run | recovery run "
        "| databases | passed |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ordered = sorted(by_case.values(), key=lambda group: int(group[0]["order"]))
    for number, group in enumerate(ordered, start=1):
        first = group[0]
        databases = sorted({_where(r) for r in group})
        passed = all(r["passed"] for r in group)
        items_checked = sorted({int(r["items_checked"]) for r in group})
        faulted = first.get("faulted")
        recovery = first.get("recovery")
        lines.append(
            f"| {number} | {first['fault']} | {first['handling']} "
            f"| {first['runs']} | {' / '.join(map(str, items_checked))} "
            f"| {_outcome(faulted, traffic=True) if faulted else 'n/a'} "
            f"| {_outcome(recovery) if recovery else 'n/a'} "
            f"| {', '.join(databases)} | {'yes' if passed else '**NO**'} |"
        )
    passed_rows = sum(1 for r in all_rows if r["passed"])
    databases = sorted({str(r["database"]) for r in all_rows})
    lines += [
        "",
        f"{len(all_rows)} tests ({len(by_case)} faults on {', '.join(databases)}), "
        f"{passed_rows} passed; {sum(int(r['runs']) for r in all_rows)} sync runs, "
        f"{sum(int(r['items_checked']) for r in all_rows):,} item comparisons with ground "
        f"truth; {sum(float(r['seconds']) for r in all_rows):.1f} s in the tests themselves.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m inventory_pipelines_tests.reliability.report REPORT.jsonl")
        return 2
    sys.stdout.write(render_markdown(read_rows(args[0])))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
