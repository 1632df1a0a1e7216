"""Sequence accepted lines, spool them, and close them into batches.

Every chunk of lines is encoded and written to the spool as it arrives; a
batch closes at `max_rows` lines or `interval` seconds, whichever comes
first: large inserts are what ClickHouse is fast at (each insert costs about
12 ms and makes one part). Every line gets its sequence here, before the
tail hub sees it, so storage and live tail agree on (ts, seq) cursors.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable

import orjson

from logd.bulk import Columns
from logd.line import Line
from logd.spool import Entry, Spool, fsync_and_close

Deliver = Callable[[Entry], None]

# The app of a line that names none (no tag, or a frame that did not parse).
UNKNOWN_APP = "unknown"


def encode(lines: list[Line]) -> bytes:
    """Encode lines as one JSONColumns body for the ingest table."""
    columns = {
        "ts": [ln.ts for ln in lines],
        "received": [ln.received for ln in lines],
        "seq": [ln.seq for ln in lines],
        "app": [ln.app for ln in lines],
        "service": [ln.service for ln in lines],
        "container": [ln.container for ln in lines],
        "host": [ln.host for ln in lines],
        "facility": [ln.facility for ln in lines],
        "severity": [ln.severity for ln in lines],
        "app_name": [ln.app_name for ln in lines],
        "procid": [ln.procid for ln in lines],
        "msgid": [ln.msgid for ln in lines],
        "message": [ln.message for ln in lines],
        "structured_data": [ln.structured_data for ln in lines],
        "labels": [ln.labels for ln in lines],
        "source": [ln.source for ln in lines],
        "parse_error": [ln.parse_error for ln in lines],
        "invalid_utf8": [ln.invalid_utf8 for ln in lines],
        "truncated": [ln.truncated for ln in lines],
        "raw": [_b64(ln.raw) for ln in lines],
    }
    return orjson.dumps(columns)


def encode_columns(columns: Columns, first_seq: int) -> bytes:
    """Encode a bulk-parsed chunk as one JSONColumns body.

    Lines are sequenced from ``first_seq``. A column no line has a value in
    is left out for the engine to default; the ingest view (schema 004)
    then takes `app` from APP-NAME as `Batcher.push` does.
    """
    n = len(columns)
    body: dict[str, object] = {
        "ts": columns.ts,
        "received": [columns.received] * n,
        "seq": list(range(first_seq, first_seq + n)),
        "facility": columns.facility,
        "severity": columns.severity,
        "message": columns.message,
        "source": [columns.source] * n,
    }
    optional = {
        "ts_fraction": columns.fraction,
        "host": columns.host,
        "app_name": columns.app_name,
        "procid": columns.procid,
        "msgid": columns.msgid,
        "structured_data": columns.structured_data,
    }
    for name, values in optional.items():
        if any(values):
            body[name] = values
    if columns.app is None:
        return orjson.dumps(body)
    body["app"] = columns.app
    body["service"] = columns.service
    body["container"] = columns.container
    # Spliced in as the last member: see _encode_labels.
    return orjson.dumps(body)[:-1] + b',"labels":' + _encode_labels(columns) + b"}"


def _encode_labels(columns: Columns) -> bytes:
    # Enrichment gives every line of a container the same dict, and a chunk
    # is most often one container's: each distinct dict is encoded once
    # and its bytes repeated, instead of encoding a dict per line.
    labels = columns.labels or [{}] * len(columns)
    if not labels:
        return b"[]"
    first = labels[0]
    if labels.count(first) == len(labels):
        return b"[" + b",".join([orjson.dumps(first)] * len(labels)) + b"]"
    encoded: dict[int, bytes] = {}
    parts = []
    for one in labels:
        known = encoded.get(id(one))
        if known is None:
            known = encoded[id(one)] = orjson.dumps(one)
        parts.append(known)
    return b"[" + b",".join(parts) + b"]"


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode("ascii") if raw else ""


def span(chunk: bytes) -> tuple[int, int, int]:
    """Read back the first and last sequence and the count of one chunk."""
    seqs = orjson.loads(chunk)["seq"]
    return seqs[0], seqs[-1], len(seqs)


class Batcher:
    """Sequence lines, spool them at once, and seal batches by size or age."""

    def __init__(
        self,
        spool: Spool,
        deliver: Deliver,
        *,
        max_rows: int = 100_000,
        interval: float = 1.0,
        fsync_interval: float = 0.2,
    ) -> None:
        self._spool = spool
        self._deliver = deliver
        self.max_rows = max_rows
        self.interval = interval
        self.fsync_interval = fsync_interval
        self._next_seq = spool.last_seq() + 1
        self._tasks: list[asyncio.Task[None]] = []

    def push(self, lines: list[Line]) -> None:
        """Give lines their sequence and app, and write them to the spool."""
        if not lines:
            return
        seq = self._sequences(len(lines))
        for line in lines:
            line.seq = seq
            seq += 1
            if not line.app:
                line.app = line.app_name or UNKNOWN_APP
        while lines:
            room = self.max_rows - self._spool.count
            if len(lines) > room:
                lines, rest = lines[:room], lines[room:]
            else:
                rest = []
            self._append(lines)
            if self._spool.count >= self.max_rows:
                self.seal()
            lines = rest

    def push_columns(self, columns: Columns) -> int:
        """Sequence a bulk-parsed chunk and spool it; return its last sequence."""
        seq = self._sequences(len(columns))
        rest: Columns | None = columns
        while rest is not None:
            head, rest = rest.split(self.max_rows - self._spool.count)
            self._spool.append(
                seq, seq + len(head) - 1, len(head), encode_columns(head, seq)
            )
            seq += len(head)
            if self._spool.count >= self.max_rows:
                self.seal()
        return seq - 1

    def _sequences(self, count: int) -> int:
        """Reserve ``count`` sequences and return the first of them."""
        # A hybrid clock: never below the wall clock in microseconds, so
        # sequences keep increasing across restarts without stored state.
        first = max(self._next_seq, time.time_ns() // 1000)
        self._next_seq = first + count
        return first

    def seal(self) -> None:
        """Close the open batch now and hand it to the writer."""
        entry = self._spool.seal()
        if entry is not None:
            self._deliver(entry)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks.append(loop.create_task(self._tick()))
        if self.fsync_interval > 0:
            self._tasks.append(loop.create_task(self._sync()))

    async def stop(self) -> None:
        """Stop the timers and seal what is open, forced to disk."""
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._force()
        self.seal()

    def _append(self, lines: list[Line]) -> None:
        if lines:
            self._spool.append(lines[0].seq, lines[-1].seq, len(lines), encode(lines))

    async def _tick(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.seal()

    async def _sync(self) -> None:
        while True:
            await asyncio.sleep(self.fsync_interval)
            await self._force()

    async def _force(self) -> None:
        # The descriptor is duplicated on the loop, synced in a thread.
        fd = self._spool.unsynced()
        if fd is not None:
            await asyncio.to_thread(fsync_and_close, fd)
