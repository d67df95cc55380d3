"""Database writes of a sync, off the fetchers' threads.

Fetch workers hand batches to a queue and go on fetching; a couple of writer threads upsert
them (they wait on the database with the GIL released). The queue is bounded in items, not
batches (a page of 999 makes a batch four times the size of a page of 250), which keeps
memory flat: when the database falls behind, fetchers wait instead of piling pages up.
"""

from __future__ import annotations

import queue
import threading
from datetime import datetime
from types import TracebackType

from inventory_pipelines.core.observed import ObservedItem
from inventory_pipelines.core.store import InventoryStore, UpsertCounts

_STOP = None
_Job = tuple[str, UpsertCounts, list[ObservedItem]]
_POLL_SECONDS = 0.5


class BatchWriter:
    """Upserts `(policy type, batch)` jobs for one sync run; each job's counts are added to
    the `UpsertCounts` it was submitted with (the type's own, so types never share one)."""

    def __init__(
        self,
        store: InventoryStore,
        tenant_id: str,
        run_id: int,
        seen_at: datetime,
        *,
        writers: int = 2,
        max_pending_items: int = 2_000,
    ) -> None:
        self.store = store
        self.tenant_id = tenant_id
        self.run_id = run_id
        self.seen_at = seen_at
        self.error: BaseException | None = None
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self._max_pending_items = max_pending_items
        self._pending_items = 0
        self._room = threading.Condition()
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
            self._jobs.put(_STOP)
        for thread in self._threads:
            thread.join()
        if exc is None and self.error is not None:
            raise self.error

    def submit(self, policy_type: str, counts: UpsertCounts, batch: list[ObservedItem]) -> None:
        """Queue a batch; blocks while the queue holds `max_pending_items` (a batch larger
        than that waits for an empty queue); raises the writers' failure."""
        if not batch:
            return
        with self._room:
            while self._pending_items and (
                self._pending_items + len(batch) > self._max_pending_items
            ):
                if self.error is not None:
                    raise self.error
                self._room.wait(_POLL_SECONDS)
            if self.error is not None:
                raise self.error
            self._pending_items += len(batch)
        self._jobs.put((policy_type, counts, batch))

    def _write_jobs(self) -> None:
        while True:
            job = self._jobs.get()
            if job is _STOP:
                return
            policy_type, counts, batch = job
            try:
                if self.error is None:  # else drain: the run is failing anyway
                    done = self.store.upsert_items(
                        self.tenant_id, self.run_id, policy_type, batch, seen_at=self.seen_at
                    )
                    with self._counts_lock:
                        counts.add(done)
            except BaseException as exc:
                self.error = exc
            finally:
                with self._room:
                    self._pending_items -= len(batch)
                    self._room.notify_all()
