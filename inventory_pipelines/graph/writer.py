"""Database writes of a sync, off the fetchers' threads.

Fetch workers hand batches to a bounded queue and go on fetching; a couple of writer threads
upsert them (they wait on the database with the GIL released). The bound keeps memory flat:
when the database falls behind, fetchers wait instead of piling pages up.
"""

from __future__ import annotations

import queue
import threading
from datetime import datetime
from types import TracebackType
from typing import TYPE_CHECKING

from inventory_pipelines.core.store import InventoryStore, ObservedItem

if TYPE_CHECKING:
    from inventory_pipelines.graph.sync import TypeSummary

_STOP = None
_POLL_SECONDS = 0.5


class BatchWriter:
    """Upserts `(type summary, batch)` jobs for one sync run; counts land on the summary."""

    def __init__(
        self,
        store: InventoryStore,
        tenant_id: str,
        run_id: int,
        seen_at: datetime,
        *,
        writers: int = 2,
        max_pending: int = 4,
    ) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.run_id = run_id
        self.seen_at = seen_at
        self.error: BaseException | None = None
        self._jobs: queue.Queue[tuple[TypeSummary, list[ObservedItem]] | None] = queue.Queue(
            maxsize=max_pending
        )
        self._counts_lock = threading.Lock()
        self._threads = [
            threading.Thread(target=self._write_jobs, name=f"inventory-writer-{i}", daemon=True)
            for i in range(writers)
        ]

    def __enter__(self) -> BatchWriter:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for _ in self._threads:
            self._put(_STOP)
        for thread in self._threads:
            thread.join()
        if exc is None and self.error is not None:
            raise self.error

    def submit(self, summary: TypeSummary, batch: list[ObservedItem]) -> None:
        """Queue a batch; blocks while the queue is full; raises the writers' failure."""
        if batch:
            self._put((summary, batch))

    def _put(self, job: tuple[TypeSummary, list[ObservedItem]] | None) -> None:
        while True:
            if self.error is not None and job is not _STOP:
                raise self.error
            try:
                self._jobs.put(job, timeout=_POLL_SECONDS)
                return
            except queue.Full:
                continue

    def _write_jobs(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            if self.error is not None:
                continue  # drain: the run is failing anyway
            summary, batch = job
            try:
                counts = self.store.upsert_items(
                    self.tenant_id, self.run_id, summary.policy_type, batch, seen_at=self.seen_at
                )
            except BaseException as exc:
                self.error = exc
                continue
            with self._counts_lock:
                summary.counts.add(counts)
