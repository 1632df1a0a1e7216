"""Batches on local disk between the batcher and the store.

A batch is written here before it is inserted and removed only after the
insert succeeded, so a storage outage or a crash of logd loses nothing that
reached the spool; on start, whatever is left is replayed. A file holds the
exact body that is sent to ClickHouse, named by the sequences of its first
and last lines and its line count, so replay can tell whether a batch was inserted
before the crash removed it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

_SUFFIX = ".batch"


@dataclass(frozen=True, slots=True)
class Entry:
    """One spooled batch: where it lies and which lines it holds."""

    path: Path
    first_seq: int
    last_seq: int
    count: int


class Spool:
    """A folder of batch files in sequence order."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.tmp"):
            # A write the process did not finish was never acknowledged to
            # the pipeline as spooled; its lines were still in memory.
            stale.unlink()
        self.bytes = sum(e.path.stat().st_size for e in self.pending())

    def write(self, first_seq: int, last_seq: int, count: int, body: bytes) -> Entry:
        """Write a batch atomically (temp file, then rename)."""
        name = f"{first_seq:020d}-{last_seq}-{count}{_SUFFIX}"
        path = self.directory / name
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(body)
        os.replace(tmp, path)
        self.bytes += len(body)
        return Entry(path, first_seq, last_seq, count)

    def sync(self, entry: Entry) -> None:
        """Force a written batch to stable storage."""
        fd = os.open(entry.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def read(self, entry: Entry) -> bytes:
        return entry.path.read_bytes()

    def remove(self, entry: Entry) -> None:
        """Forget a batch once storage holds it."""
        size = entry.path.stat().st_size
        entry.path.unlink()
        self.bytes -= size

    def pending(self) -> list[Entry]:
        """List the batches still on disk, oldest first."""
        entries = []
        for path in self.directory.glob(f"*{_SUFFIX}"):
            first, last, count = path.stem.split("-")
            entries.append(Entry(path, int(first), int(last), int(count)))
        return sorted(entries, key=lambda e: e.first_seq)

    def last_seq(self) -> int:
        """The highest sequence spooled and not yet removed, or 0."""
        entries = self.pending()
        return entries[-1].last_seq if entries else 0
