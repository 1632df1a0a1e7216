"""Parse a chunk of plain RFC 5424 frames at once, into columns.

Most traffic is RFC 5424 from one sender per connection: the same PRI, host
and APP-NAME line after line. Parsing such a chunk line by line builds a
`Line` per frame; here one regular expression runs over the chunk's frames,
joined and decoded once, and every field comes out as a column. Distinct
values (PRI, the second of a timestamp, its zone) are checked once per
chunk, not once per line, and columns that hold one value or none stay
cheap to encode. The fraction of a second is left as digits for the engine
to add (see schema 004).

The line parser (`logd.parser`) stays the reference: a chunk comes back
from `parse` only if every frame is one the parser reads the same way, and
`None` sends the whole chunk to the parser. That is the case for a frame
that does not match (RFC 3164, a malformed header, an escape the pattern
does not take), invalid UTF-8, a frame cut by the framer, a frame that
holds a newline, a line long enough to be a piece of one Docker split, or
a timestamp whose date or zone does not exist.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from logd.framing import TruncatedFrame
from logd.parser import STRUCTURED_DATA, epoch_seconds, zone_offset

__all__ = ["Columns", "parse"]

_MICROS = 1_000_000
# Docker cuts a longer line into pieces of this size: enrichment joins them.
_PIECE_SIZE = 16 * 1024
_FIELD = r"(?:-(?= )|([^ \n]++))"
# PRI 0-191 without leading zeros, version 1, then the header, each field
# "-" (NILVALUE, captured as "") or a word; STRUCTURED-DATA "-" or
# elements; MSG after a space, without a leading BOM. Groups: PRI, the
# time to the second, fraction digits, zone, host, APP-NAME, PROCID, MSGID,
# STRUCTURED-DATA, MSG.
_RFC5424 = re.compile(
    r"^<(0|[1-9][0-9]?|1[0-8][0-9]|19[01])>1 "
    r"(?:-|([0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.([0-9]++))?([Zz]|[+-][0-9]{2}:[0-9]{2})?) "
    rf"{_FIELD} {_FIELD} {_FIELD} {_FIELD} "
    rf"(?:-|({STRUCTURED_DATA.pattern}))(?: \ufeff?(.*))?$",
    re.MULTILINE | re.ASCII,
)
_FACILITY = {str(value): value // 8 for value in range(192)}
_SEVERITY = {str(value): value % 8 for value in range(192)}


@dataclass(slots=True)
class Columns:
    """The lines of one chunk from one peer, field by field.

    Times are unix microseconds, to the second: `fraction` holds the digits
    after the decimal point as sent ("" for none). Text columns use "" for
    RFC 5424's NILVALUE, as `Line` does. Enrichment fills `app`, `service`,
    `container` and `labels` for every line, or leaves them None when no
    line of the chunk comes from a known container.
    """

    received: int
    source: str
    ts: list[int]
    fraction: tuple[str, ...]
    facility: list[int]
    severity: list[int]
    host: tuple[str, ...]
    app_name: tuple[str, ...]
    procid: tuple[str, ...]
    msgid: tuple[str, ...]
    structured_data: tuple[str, ...]
    message: tuple[str, ...]
    app: list[str] | None = None
    service: list[str] | None = None
    container: list[str] | None = None
    labels: list[dict[str, str]] | None = field(default=None)

    def __len__(self) -> int:
        return len(self.message)

    def split(self, size: int) -> tuple[Columns, Columns | None]:
        """Return the first ``size`` lines, and the rest or None."""
        if size >= len(self):
            return self, None
        parts = [_cut(getattr(self, name), size) for name in _SPLIT]
        head = Columns(self.received, self.source, *(p[0] for p in parts))
        rest = Columns(self.received, self.source, *(p[1] for p in parts))
        return head, rest


def parse(frames: list[bytes], received: int, source: str) -> Columns | None:
    """Parse ``frames`` received together from ``source``, or return None.

    None means the line parser must read this chunk (see the module's
    docstring); the result is otherwise what it would give, column-wise.
    """
    if not frames or max(map(len, frames)) >= _PIECE_SIZE:
        return None
    if TruncatedFrame in set(map(type, frames)):
        return None
    joined = b"\n".join(frames)
    if joined.count(b"\n") != len(frames) - 1:
        return None
    try:
        text = joined.decode()
    except UnicodeDecodeError:
        return None
    rows = _RFC5424.findall(text)
    # Each match starts a line and ends one, and none can span two lines
    # without leaving the second unmatched: as many matches as frames means
    # every frame matched whole.
    if len(rows) != len(frames):
        return None
    pri, seconds, fraction, zone, host, app, procid, msgid, sd, message = zip(
        *rows, strict=True
    )
    ts = _times(seconds, zone, received)
    if ts is None:
        return None
    return Columns(
        received,
        source,
        ts,
        fraction,
        _lookup(_FACILITY, pri),
        _lookup(_SEVERITY, pri),
        host,
        app,
        procid,
        msgid,
        sd,
        message,
    )


def _times(
    seconds: tuple[str, ...], zones: tuple[str, ...], received: int
) -> list[int] | None:
    """Return each line's time to the second, or None if one does not exist.

    A line without a time ("-") takes the time it was received.
    """
    at = {"": received}
    distinct = set(seconds)
    for head in distinct:
        if head:
            value = epoch_seconds(head)
            if value is None:
                return None
            at[head] = value * _MICROS
    shift = {}
    for zone in set(zones):
        offset = zone_offset(zone)
        if offset is None:
            return None
        shift[zone] = offset * _MICROS
    if len(distinct) == 1 and len(shift) == 1:
        # One second in one zone: the usual chunk of a busy sender.
        (head,) = distinct
        (zone,) = shift
        return [at[head] - shift[zone] if head else received] * len(seconds)
    return [
        at[head] - shift[zone] if head else received
        for head, zone in zip(seconds, zones, strict=True)
    ]


# Every column after `received` and `source`, in field order.
_SPLIT = tuple(column.name for column in fields(Columns))[2:]


def _cut(values: Any, size: int) -> tuple[Any, Any]:
    if values is None:
        return None, None
    return values[:size], values[size:]


def _lookup(table: dict[str, int], keys: tuple[str, ...]) -> list[int]:
    distinct = set(keys)
    if len(distinct) == 1:
        return [table[keys[0]]] * len(keys)
    return [table[key] for key in keys]
