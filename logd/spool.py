"""The write-ahead spool: accepted lines on local disk until storage has them.

Every chunk of lines the pipeline accepts is appended to the open segment
file at once, in the same event-loop callback that read it from the socket,
so a crash of the process loses no line logd read: the kernel keeps what
was written. The open segment is forced to disk every `fsync_interval`
seconds (a power cut loses at most that much), and sealed into a batch by
the batcher; a batch file is removed only after its insert succeeded.

A segment is a sequence of encoded chunks, one per line of the file; the
chunks concatenate into the exact body that is sent to ClickHouse, so a
batch is inserted from its file as it lies. Sealed batches are named by the
sequences of their first and last lines and their line count, so replay can
tell whether a batch was inserted before a crash kept it from being removed.
On start, a segment left open is cut back to its last whole chunk, measured
with the `span` function the spool is given, and sealed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from logd import log

_SEALED = ".batch"
_OPEN = ".open"

# (first sequence, last sequence, line count) of one encoded chunk
Span = Callable[[bytes], tuple[int, int, int]]


@dataclass(frozen=True, slots=True)
class Entry:
    """One sealed batch: where it lies and which lines it holds."""

    path: Path
    first_seq: int
    last_seq: int
    count: int


def fsync_and_close(fd: int) -> None:
    """Force a file to disk through a descriptor of its own, then close it."""
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """A folder of sealed batches and at most one open segment."""

    def __init__(self, directory: Path, span: Span) -> None:
        self.directory = directory
        self._span = span
        directory.mkdir(parents=True, exist_ok=True)
        self._fd = -1
        self._path: Path | None = None
        self._first = 0
        self._last = 0
        self.count = 0
        self._unsynced = False
        self._recover()
        # Written by the event loop, removed by the writer thread: two
        # counters with one writer each need no lock.
        self._written = sum(e.path.stat().st_size for e in self.pending())
        self._removed = 0

    @property
    def size(self) -> int:
        """Bytes on disk not yet in storage, the open segment included."""
        return self._written - self._removed

    def append(self, first_seq: int, last_seq: int, count: int, chunk: bytes) -> None:
        """Write one encoded chunk to the open segment, opening one if needed."""
        if self._fd < 0:
            self._path = self.directory / f"{first_seq:020d}{_OPEN}"
            self._fd = os.open(self._path, os.O_WRONLY | os.O_CREAT | os.O_APPEND)
            self._first = first_seq
        os.write(self._fd, chunk + b"\n")
        self._last = last_seq
        self.count += count
        self._written += len(chunk) + 1
        self._unsynced = True

    def unsynced(self) -> int | None:
        """A new descriptor of the open segment if it has unsynced writes.

        Pass it to `fsync_and_close` in a thread: the segment may be sealed
        and closed meanwhile, and the duplicate still syncs its file.
        """
        if self._fd < 0 or not self._unsynced:
            return None
        self._unsynced = False
        return os.dup(self._fd)

    def seal(self) -> Entry | None:
        """Close the open segment into a batch; None when nothing is open."""
        if self._fd < 0 or self._path is None:
            return None
        os.close(self._fd)
        self._fd = -1
        entry = self._rename(self._path, self._first, self._last, self.count)
        self._path = None
        self.count = 0
        return entry

    def sync_sealed(self, entry: Entry) -> None:
        """Force a sealed batch to disk (blocking)."""
        fsync_and_close(os.open(entry.path, os.O_RDONLY))

    def remove(self, entry: Entry) -> None:
        """Forget a batch once storage holds it."""
        size = entry.path.stat().st_size
        entry.path.unlink()
        self._removed += size

    def pending(self) -> list[Entry]:
        """List the sealed batches still on disk, oldest first."""
        entries = []
        for path in self.directory.glob(f"*{_SEALED}"):
            first, last, count = path.stem.split("-")
            entries.append(Entry(path, int(first), int(last), int(count)))
        return sorted(entries, key=lambda e: e.first_seq)

    def oldest_seq(self) -> int:
        """The lowest sequence on disk and not yet removed, or 0."""
        entries = self.pending()
        if entries:
            return entries[0].first_seq
        return self._first if self._fd >= 0 else 0

    def last_seq(self) -> int:
        """The highest sequence on disk and not yet removed, or 0."""
        entries = self.pending()
        return entries[-1].last_seq if entries else 0

    def _rename(self, path: Path, first: int, last: int, count: int) -> Entry:
        target = self.directory / f"{first:020d}-{last}-{count}{_SEALED}"
        os.replace(path, target)
        return Entry(target, first, last, count)

    def _recover(self) -> None:
        for path in sorted(self.directory.glob(f"*{_OPEN}")):
            data = path.read_bytes()
            whole = data[: data.rfind(b"\n") + 1]
            spans = [self._span(chunk) for chunk in whole.splitlines() if chunk]
            if len(whole) < len(data):
                log.spool.warning(
                    "%s: cut %d bytes of a chunk a power cut left half written",
                    path.name,
                    len(data) - len(whole),
                )
            if not spans:
                path.unlink()
                continue
            with open(path, "r+b") as f:
                f.truncate(len(whole))
            count = sum(s[2] for s in spans)
            entry = self._rename(path, spans[0][0], spans[-1][1], count)
            log.spool.info("%s: recovered %d lines left open", entry.path.name, count)
