"""Cursors: where a reader stands in the (ts, seq) order of stored lines.

Every line has a place in one total order, its event time and then its
sequence (`Line.seq`, unique per line, assigned before the tail hub or
storage sees the line), so a cursor is just those two numbers. A line
cursor is 32 lowercase hex digits, ts then seq; storage computes the same
text for every line it returns (`SQL`), so a client can resume from any
line, stored or live. Cursors are opaque to clients and URL-safe.

A page cursor (`next` in /api/v1/logs) adds a third number, the snapshot:
the highest sequence stored when the first page was read. Later pages
only take lines with seq <= snapshot, which is what makes paging exact:

    Paging with `next` returns every line that matched and was stored when
    the first page was read, exactly once and in order, and no other line,
    however many lines arrive meanwhile, late ones with old timestamps
    included (those belong to the next paging, which starts a new snapshot).

This holds because the writer stores batches whole and in sequence order
(logd.writer), so at any moment the stored lines are exactly those with
seq up to some mark, and anything still in flight has a higher seq.
Limits: a batch spanning two days goes in as one part per day, so a first
page read in the milliseconds between those parts may see half of it;
retention can delete lines while a paging runs; and on a cluster
(Distributed inserts are asynchronous) the mark is only approximate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from multidict import MultiMapping

from query.filters import DEFAULT_LIMIT, MAX_EXPORT, MAX_LIMIT, BadParameter

# One line's cursor, computed by the engine; it must equal `encode`.
SQL = (
    "lower(concat(leftPad(hex(toUInt64(toUnixTimestamp64Micro(ts))), 16, '0'), "
    "leftPad(hex(seq), 16, '0'))) AS cursor"
)
PAGE_PARAMS = ("limit", "direction", "cursor")
DIRECTIONS = ("backward", "forward")

_MASK = (1 << 64) - 1
_HEX = frozenset("0123456789abcdef")
_LINE_DIGITS = 32
_PAGE_DIGITS = 48
_EXPECTED = "a cursor from a line or from a page's next"


@dataclass(frozen=True, slots=True)
class Position:
    """A place in (ts, seq) order, and the snapshot of the paging it is in."""

    ts: int
    seq: int
    # Highest sequence a paging may return; None for a line's own cursor.
    snapshot: int | None = None


@dataclass(frozen=True, slots=True)
class Page:
    """How much to read, in which direction, and from where."""

    limit: int = DEFAULT_LIMIT
    backward: bool = True
    position: Position | None = None


def encode(ts_us: int, seq: int) -> str:
    """Return the cursor of the line at (ts_us, seq)."""
    return f"{ts_us & _MASK:016x}{seq & _MASK:016x}"


def encode_page(position: Position) -> str:
    """Return a page cursor: the position and the paging's snapshot."""
    snapshot = 0 if position.snapshot is None else position.snapshot
    return encode(position.ts, position.seq) + f"{snapshot & _MASK:016x}"


def decode(name: str, text: str) -> tuple[int, int]:
    """Read any cursor as (ts_us, seq); raise BadParameter naming `name`."""
    position = decode_page(name, text)
    return position.ts, position.seq


def decode_page(name: str, text: str) -> Position:
    """Read a line or page cursor; a line cursor has no snapshot."""
    if len(text) not in (_LINE_DIGITS, _PAGE_DIGITS) or not _HEX.issuperset(text):
        raise BadParameter(name, text, _EXPECTED)
    ts = int(text[:16], 16)
    if ts >> 63:
        # Two's complement: a line from before 1970.
        ts -= 1 << 64
    seq = int(text[16:32], 16)
    snapshot = int(text[32:], 16) if len(text) == _PAGE_DIGITS else None
    return Position(ts, seq, snapshot)


def bound(position: Position, *, backward: bool) -> tuple[str, dict[str, Any]]:
    """SQL that keeps lines strictly past `position` in the reading direction.

    The leading `ts` comparison is what lets the primary key and the day
    partitions skip everything on the far side of the cursor.
    """
    if backward:
        sql = (
            "ts <= fromUnixTimestamp64Micro({c_ts:Int64}, 'UTC') AND "
            "(ts < fromUnixTimestamp64Micro({c_ts:Int64}, 'UTC') "
            "OR seq < {c_seq:UInt64})"
        )
    else:
        sql = (
            "ts >= fromUnixTimestamp64Micro({c_ts:Int64}, 'UTC') AND "
            "(ts > fromUnixTimestamp64Micro({c_ts:Int64}, 'UTC') "
            "OR seq > {c_seq:UInt64})"
        )
    return sql, {"c_ts": position.ts, "c_seq": position.seq}


def page_from_query(query: MultiMapping[str], *, export: bool = False) -> Page:
    """Read limit, direction and cursor; `export` allows NDJSON's larger limit."""
    limit = DEFAULT_LIMIT
    if "limit" in query:
        high = MAX_EXPORT if export else MAX_LIMIT
        limit = _single_int(query, "limit", high)
    backward = True
    if "direction" in query:
        direction = _single(query, "direction")
        if direction not in DIRECTIONS:
            raise BadParameter("direction", direction, "backward or forward")
        backward = direction == "backward"
    position = None
    if "cursor" in query:
        position = decode_page("cursor", _single(query, "cursor"))
    return Page(limit, backward, position)


def _single(query: MultiMapping[str], name: str) -> str:
    values = query.getall(name)
    if len(values) > 1:
        raise BadParameter(name, ",".join(values), "the parameter once")
    return values[0]


def _single_int(query: MultiMapping[str], name: str, high: int) -> int:
    text = _single(query, name)
    if not (text.isascii() and text.isdigit() and len(text) <= 12):
        raise BadParameter(name, text, f"a whole number from 1 to {high}")
    value = int(text)
    if not 1 <= value <= high:
        raise BadParameter(name, text, f"a whole number from 1 to {high}")
    return value
