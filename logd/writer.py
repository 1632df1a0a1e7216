"""Deliver spooled batches to storage from a thread of their own.

The engine releases the GIL while it inserts, so inserting here overlaps
with parsing on the event loop. A failed insert is retried with backoff and
the batch stays in the spool until storage has it; batches are delivered in
the order they were spooled.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass

from logd import log
from logd.errors import StorageError
from logd.spool import Entry, Spool
from logd.store import Store

_BACKOFF_FIRST = 0.1
_BACKOFF_MAX = 5.0


@dataclass(slots=True)
class _Job:
    entry: Entry
    # A replayed batch may have been inserted before a crash kept the
    # process from removing it; check storage before inserting again.
    replayed: bool = False


class Writer:
    """A queue of spooled batches and the thread that inserts them."""

    def __init__(self, store: Store, spool: Spool, *, fsync: bool = True) -> None:
        self._store = store
        self._spool = spool
        self._fsync = fsync
        self._queue: queue.Queue[_Job | None] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="logd-writer")
        self._stopping = threading.Event()
        self.stats: Counter[str] = Counter()
        self._busy = False
        self.last_insert_seconds = 0.0
        self.last_batch_lines = 0
        # Summed insert durations: with inserted_batches, the mean latency.
        self.insert_seconds = 0.0
        # The last sequence of the newest batch storage holds, 0 until one
        # is: batches go in whole and in order, so every line stored has a
        # sequence at or below it and every line still queued one above.
        self.stored_seq = 0

    def start(self) -> None:
        """Queue what an earlier run left in the spool, then start inserting."""
        for entry in self._spool.pending():
            self._put(_Job(entry, replayed=True))
            self.stats["replayed_batches"] += 1
        self._thread.start()

    def submit(self, entry: Entry) -> None:
        """Queue a batch the batcher has just sealed."""
        self._put(_Job(entry))

    def stop(self, timeout: float | None = None) -> bool:
        """Insert everything queued, then end the thread.

        Returns False if storage did not take the backlog within `timeout`;
        what is left stays in the spool for the next start.
        """
        self._queue.put(None)
        self._thread.join(timeout)
        if self._thread.is_alive():
            self._stopping.set()
            self._thread.join()
            return False
        return True

    @property
    def pending(self) -> int:
        """Batches queued or being inserted."""
        return self._queue.qsize() + int(self._busy)

    def _put(self, job: _Job) -> None:
        self._queue.put(job)

    def _run(self) -> None:
        while (job := self._queue.get()) is not None:
            self._busy = True
            delivered = self._deliver(job)
            self._busy = False
            if not delivered:
                return

    def _deliver(self, job: _Job) -> bool:
        backoff = _BACKOFF_FIRST
        while not self._stopping.is_set():
            try:
                self._insert(job)
            except StorageError as exc:
                self.stats["insert_errors"] += 1
                log.limited(
                    log.store,
                    "insert",
                    "insert failed, retrying in %.1fs: %s",
                    backoff,
                    exc,
                )
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, _BACKOFF_MAX)
                continue
            self.stored_seq = max(self.stored_seq, job.entry.last_seq)
            self._spool.remove(job.entry)
            return True
        return False

    def _insert(self, job: _Job) -> None:
        entry = job.entry
        if job.replayed:
            stored = self._store.count_seq(entry.first_seq, entry.last_seq)
            if stored == entry.count:
                self.stats["replay_already_stored"] += 1
                return
            if stored:
                self._store.delete_seq(entry.first_seq, entry.last_seq)
        if self._fsync and not job.replayed:
            self._spool.sync_sealed(entry)
        # Read from the spool file: the spool, not memory, holds the
        # backlog, so an outage costs disk and not RSS.
        started = time.perf_counter()
        self._store.insert_file(entry.path)
        self.last_insert_seconds = time.perf_counter() - started
        self.insert_seconds += self.last_insert_seconds
        self.last_batch_lines = entry.count
        self.stats["inserted_batches"] += 1
        self.stats["inserted_lines"] += entry.count
