"""What each Celery worker of the scale-out test did, recorded by the worker itself.

The test's workers import this module (`dagster-celery worker start -i …`); its signal handlers
append one JSON line per event to `<INVENTORY_TEST_CELERY_JOURNAL_DIR>/<node>.jsonl`: `ready`
when the worker consumes from the queue, `start` and `end` around every task, each with the
Dagster run id, the Celery task id, the process and the network namespace (the inode of
/proc/self/ns/net) it ran in, and the worker's clock. A line is one `write` in append mode,
so the pool processes of a worker never interleave theirs.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from celery.signals import task_postrun, task_prerun, worker_ready
from dagster._grpc.types import ExecuteRunArgs, ResumeRunArgs
from dagster._serdes import unpack_value

JOURNAL_DIR_SETTING = "INVENTORY_TEST_CELERY_JOURNAL_DIR"


def _node(hostname: str | None) -> str:
    """`invc123-0@machine` → `invc123-0`."""
    return (hostname or "unknown").split("@", 1)[0]


def _record(node: str, **fields: Any) -> None:
    directory = os.environ.get(JOURNAL_DIR_SETTING)
    if not directory:
        return
    line = {
        **fields,
        "node": node,
        "pid": os.getpid(),
        "netns": os.stat("/proc/self/ns/net").st_ino,
        "time": time.time(),
    }
    path = Path(directory) / f"{node}.jsonl"
    with path.open("a", encoding="utf-8") as journal:
        journal.write(json.dumps(line) + "\n")


def _run_id(kwargs: Mapping[str, Any] | None) -> str | None:
    """The Dagster run a launcher task executes (or resumes)."""
    for name, kind in (
        ("execute_job_args_packed", ExecuteRunArgs),
        ("resume_job_args_packed", ResumeRunArgs),
    ):
        packed = (kwargs or {}).get(name)
        if packed is not None:
            args = unpack_value(packed, as_type=kind)
            return str(args.run_id)
    return None


@worker_ready.connect
def _worker_ready(sender: Any = None, **_: Any) -> None:
    _record(_node(getattr(sender, "hostname", None)), event="ready")


@task_prerun.connect
def _task_started(
    task_id: str | None = None, task: Any = None, kwargs: Any = None, **_: Any
) -> None:
    _record(
        _node(task.request.hostname if task else None),
        event="start",
        task_id=task_id,
        task=getattr(task, "name", None),
        run_id=_run_id(kwargs),
    )


@task_postrun.connect
def _task_finished(
    task_id: str | None = None,
    task: Any = None,
    kwargs: Any = None,
    state: str | None = None,
    **_: Any,
) -> None:
    _record(
        _node(task.request.hostname if task else None),
        event="end",
        task_id=task_id,
        task=getattr(task, "name", None),
        run_id=_run_id(kwargs),
        state=state,
    )


@dataclass(frozen=True)
class JournalEntry:
    event: str
    node: str
    pid: int
    netns: int
    time: float
    run_id: str | None = None
    task_id: str | None = None
    state: str | None = None


def read_journal(directory: Path) -> Iterator[JournalEntry]:
    """Every entry every worker wrote, worker by worker, in the order each wrote them (a line
    still being written is left for the next read)."""
    for path in sorted(directory.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").split("\n")[:-1]:
            raw = json.loads(line)
            yield JournalEntry(
                event=raw["event"],
                node=raw["node"],
                pid=raw["pid"],
                netns=raw["netns"],
                time=raw["time"],
                run_id=raw.get("run_id"),
                task_id=raw.get("task_id"),
                state=raw.get("state"),
            )
