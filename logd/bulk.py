"""Parse a chunk of plain RFC 5424 frames at once, into columns.

Most traffic is RFC 5424 from one sender per connection: the same PRI, host
and APP-NAME line after line. Parsing such a chunk line by line builds a
`Line` per frame; here the chunk's frames are joined and decoded once, and
every field comes out as a column: split at spaces when the lines carry no
STRUCTURED-DATA and no fraction of a second, else by one regular
expression over them all. Distinct values (PRI, the second of a
timestamp, its zone) are checked once per chunk, not once per line, and
columns that hold one value or none stay cheap to encode. The fraction of
a second is left as digits for the engine to add (see schema 004).

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
_TIME = (
    r"([0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2})"
    r"(?:\.([0-9]++))?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_RFC5424 = re.compile(
    r"^<(0|[1-9][0-9]?|1[0-8][0-9]|19[01])>1 "
    rf"(?:-|{_TIME}) "
    rf"{_FIELD} {_FIELD} {_FIELD} {_FIELD} "
    rf"(?:-|({STRUCTURED_DATA.pattern}))(?: \ufeff?(.*))?$",
    re.MULTILINE | re.ASCII,
)
_TIMESTAMP = re.compile(_TIME, re.ASCII)
# The PRI and VERSION of a line as `_split` sees them, to PRI's digits.
_PRI_FIELD = {f"<{value}>1": str(value) for value in range(192)}
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
    fields = _split(text, len(frames))
    if fields is None:
        fields = _match(text, len(frames))
    if fields is None:
        return None
    pri, seconds, fraction, zone, host, app, procid, msgid, sd, message = fields
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


# PRI, time to the second, fraction, zone, host, APP-NAME, PROCID, MSGID,
# STRUCTURED-DATA, MSG: one tuple of strings per field, one string per line.
_Fields = tuple[tuple[str, ...], ...]


def _split(text: str, count: int) -> _Fields | None:
    """Read lines whose STRUCTURED-DATA is "-" by splitting at spaces.

    The common case, in a fifth to a quarter less CPU than the pattern
    (which reads every character of MSG): the header's fields are whatever
    lies between single spaces, which is what `_RFC5424` takes too.
    Values are checked once per distinct value. None when a line is not of
    this form; the pattern then decides.
    """
    end = text.find("\n")
    first = text[: end if end >= 0 else len(text)].split(" ", 7)
    if len(first) < 7 or first[6] != "-" or "." in first[1]:
        # A sender's lines share a form: this chunk is the pattern's, which
        # is faster where each line's time differs (a fraction of a second).
        return None
    rows = [line.split(" ", 7) for line in text.split("\n")]
    lengths = set(map(len, rows))
    if min(lengths) < 7:
        return None
    if 7 in lengths:
        # No MSG, not even the space before it.
        rows = [row if len(row) == 8 else [*row, ""] for row in rows]
    head, stamp, host, app, procid, msgid, sd, message = zip(*rows, strict=True)
    heads = set(head)
    if set(sd) != {"-"} or not _PRI_FIELD.keys() >= heads:
        return None
    if len(heads) == 1:
        pri = (_PRI_FIELD[head[0]],) * count
    else:
        pri = tuple(map(_PRI_FIELD.__getitem__, head))
    words = []
    for column in (host, app, procid, msgid):
        distinct = set(column)
        if "" in distinct:
            return None
        if "-" in distinct:
            column = tuple("" if value == "-" else value for value in column)
        words.append(column)
    times = _split_times(stamp)
    if times is None:
        return None
    if "\ufeff" in text:
        message = tuple(m[1:] if m[:1] == "\ufeff" else m for m in message)
    return (pri, *times, *words, ("",) * count, message)


def _split_times(stamps: tuple[str, ...]) -> _Fields | None:
    """Split each TIMESTAMP into its second, fraction and zone; None if one is bad."""
    parts: dict[str, tuple[str, str, str]] = {}
    for stamp in set(stamps):
        if stamp == "-":
            parts[stamp] = ("", "", "")
            continue
        match = _TIMESTAMP.fullmatch(stamp)
        if match is None:
            return None
        second, fraction, zone = match.groups(default="")
        parts[stamp] = (second, fraction, zone)
    if len(parts) == 1:
        (only,) = parts.values()
        return tuple((value,) * len(stamps) for value in only)
    return tuple(zip(*map(parts.__getitem__, stamps), strict=True))


def _match(text: str, count: int) -> _Fields | None:
    """Read the lines with the pattern; None unless every line matches whole."""
    rows = _RFC5424.findall(text)
    # Each match starts a line and ends one, and none can span two lines
    # without leaving the second unmatched: as many matches as frames means
    # every frame matched whole.
    if len(rows) != count:
        return None
    return tuple(zip(*rows, strict=True))


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
