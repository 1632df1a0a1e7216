"""Turn one syslog frame into a `Line`, without doing any I/O.

Understood forms:

- RFC 5424: ``<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID SD [MSG]``,
  including Docker's ``rfc5424`` and ``rfc5424micro`` formats, which put
  the container tag in both APP-NAME and MSGID and dockerd's PID in PROCID.
  A UTF-8 BOM opening MSG is dropped; STRUCTURED-DATA is kept as sent.
- RFC 3164: ``<PRI>TIMESTAMP [HOSTNAME] TAG[PID]: MSG``, including
  Docker's ``rfc3164`` format and its default (no hostname). TIMESTAMP is
  ``Mmm dd hh:mm:ss`` (day padded with a space or a zero, optional
  fraction), the same with a year after the day, or RFC 3339. A time
  without a year takes the year it was received in, or the year before
  when that would put it more than three days ahead of its arrival, or
  the year after when that would put it more than 362 days behind.
  A time without a zone is UTC. The first word after the time is the
  hostname unless it looks like a tag (``name:`` or ``name[pid]``); the
  next word is the tag, with or without PID and colon.

What is an error: a frame that does not start with a PRI (``<`` then
1 to 3 digits then ``>``, value 0 to 191), or that claims RFC 5424
(``<PRI>1`` then a timestamp or ``-``) but has fewer header fields, a
timestamp that is not RFC 3339, or malformed STRUCTURED-DATA. Such a frame
still becomes a `Line`: ``parse_error`` says what was wrong, ``raw`` keeps
the bytes and ``message`` the decoded frame, with user.notice and the
arrival time.

What is not an error, because real senders do it:

- a valid PRI followed by no recognisable time, as Python's
  ``SysLogHandler`` sends: a leading ``name:`` or ``name[pid]:`` (a name
  of letters, digits and ``._/-``) is the tag, the rest the message; no
  host, and the arrival time;
- an RFC 3164 time with impossible values (it stays in the message);
- a PRI with leading zeros, RFC 5424 fields over their length limits, a
  missing STRUCTURED-DATA at the end, a fraction past microseconds;
- invalid UTF-8: decoded with U+FFFD, flagged ``invalid_utf8``, the bytes
  kept in ``raw``.

`parse` never raises. It is the per-line hot path, so it decodes once,
splits with ``str.split`` and caches the conversion of timestamps to
epoch seconds per distinct second.
"""

from __future__ import annotations

import calendar
import re
from datetime import UTC, datetime

from logd.framing import TruncatedFrame
from logd.line import DEFAULT_FACILITY, DEFAULT_SEVERITY, Line

__all__ = ["STRUCTURED_DATA", "epoch_seconds", "parse", "zone_offset"]

_MICROS = 1_000_000
# RFC 3164 times carry no year; one this far ahead of arrival is last year's.
_FUTURE_SLACK = 3 * 86_400 * _MICROS
# And one almost a year behind is next year's: a sender ahead of us at New
# Year, often by its time zone, since RFC 3164 times are local.
_PAST_LIMIT = 362 * 86_400 * _MICROS
# Distinct seconds remembered before the timestamp caches start over.
_CACHE_LIMIT = 4096

# Multiply a fraction of n digits by _SCALE[n] to get microseconds.
_SCALE = (0, 100_000, 10_000, 1_000, 100, 10, 1)
_PRI = {str(value): divmod(value, 8) for value in range(192)}
_PRI_VERSION_1 = {f"<{value}>1": divmod(value, 8) for value in range(192)}
_DIGITS = frozenset("0123456789")
_TIMESTAMP_START = _DIGITS | {"-"}
_HEADER_NAMES = ("VERSION", "TIMESTAMP", "HOSTNAME", "APP-NAME", "PROCID", "MSGID")
_MONTH_NAMES = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, start=1)}

_SECONDS_PART = re.compile(r"(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)", re.ASCII)
_OFFSET = re.compile(r"[+-](\d\d):(\d\d)", re.ASCII)
# SD-ELEMENT = "[" SD-ID *(SP SD-PARAM) "]", PARAM-VALUE quoted with \" \\ \]
# escaped; extra spaces before a parameter or the "]" are tolerated. Every
# quantifier is possessive: the grammar never needs to backtrack, and not
# keeping backtrack points makes the match about a third cheaper.
STRUCTURED_DATA = re.compile(
    r'(?:\[[^\] ="]++(?: ++[^\] ="]++="[^"\\]*+(?:\\.[^"\\]*+)*+")*+ *+\])++',
    re.DOTALL,
)
# The usual "[HOST ]TAG[PID]: " after an RFC 3164 time; `_bsd_header` reads
# the others (a tag with a colon in it, no colon after the tag). Groups:
# host, tag, PID. Possessive: a name never gives back what it took.
_HOST_TAG = r"(?:([^ :\[\]]++) )?([^ :\[\]]++)(?:\[([^\[\] ]*+)\])?: "
_BSD_HOST_TAG = re.compile(_HOST_TAG, re.ASCII)
# An RFC 3164 time, then `_HOST_TAG` when it is there. Groups: 1 the time
# to the second, 2 month, 3 day, 4 year, 5 hour, 6 minute, 7 second,
# 8 fraction, 9 host, 10 tag, 11 PID.
_BSD_STAMP = re.compile(
    r"( ?(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(\d\d?)(?: (\d{4}))?"
    r" (\d\d):(\d\d):(\d\d))(?:\.(\d+))?(?: |\Z)(?:" + _HOST_TAG + ")?",
    re.ASCII,
)
# The width of "Mmm dd hh:mm:ss", the usual RFC 3164 time.
_BSD_WIDTH = 15
# Without a time only a plain "name:" or "name[pid]:" counts as a tag, as
# Python's SysLogHandler sends it; "1990 Oct 22 ..." or prose stays message.
_UNTIMED_TAG = re.compile(r"([\w./-]{1,48})(?:\[(\w*)\])?:(?: |\Z)", re.ASCII)
_ISO_STAMP = re.compile(
    r" ?(\d{4}-\d\d-\d\d[Tt]\d\d:\d\d:\d\d(?:\.\d+)?(?:[Zz]|[+-]\d\d:\d\d)?)(?: |\Z)",
    re.ASCII,
)

# "2026-12-03T17:43:20" -> epoch seconds, as if UTC.
_seconds_cache: dict[str, int] = {}
# "Dec  3 17:43:20" -> epoch seconds in the year of `_year_span`, as if UTC.
_bsd_cache: dict[str, int] = {}
# "+hh:mm" -> seconds east of UTC, for the offsets seen so far.
_offsets: dict[str, int] = {"+00:00": 0, "-00:00": 0}
# The year `received` values fall in: [start, end) in microseconds, year.
_year_span = [0, 0, 0]


def parse(frame: bytes, received: int, source: str) -> Line:
    """Parse one frame received at ``received`` (unix microseconds) from ``source``.

    Never raises: a frame that is not syslog comes back with
    ``parse_error`` set and its bytes in ``raw``.
    """
    # One function for decoding and dispatch: on this path a call is 2% of
    # the time per line.
    try:
        try:
            text = frame.decode()
            invalid = False
        except UnicodeDecodeError:
            text = frame.decode(errors="replace")
            invalid = True
        line: Line | str | None = None
        # Most traffic is RFC 5424: after one split, "<PRI>1" is one lookup.
        # The bounded find spares RFC 3164 lines the split.
        if text.find(">1 ", 2, 7) > 0:
            fields = text.split(" ", 6)
            pri = _PRI_VERSION_1.get(fields[0])
            if pri is not None:
                line = _rfc5424(fields, pri, received, source)
        if line is None:
            line = _not_plain_5424(frame, text, received, source)
        if isinstance(line, str):
            return _failed(frame, text, invalid, received, source, line)
        if invalid:
            line.invalid_utf8 = True
            line.raw = bytes(frame)
        if type(frame) is TruncatedFrame:
            line.truncated = True
        return line
    except Exception as exc:  # a parser bug must not cost the line or the peer
        text = frame.decode(errors="replace")
        why = f"internal parser error {exc!r}"
        return _failed(frame, text, "\ufffd" in text, received, source, why)


def _not_plain_5424(frame: bytes, text: str, received: int, source: str) -> Line | str:
    """Parse RFC 3164, or RFC 5424 with a zero-padded PRI; a str says why not."""
    close = text.find(">", 1, 5)
    pri = _PRI.get(text[1:close]) if close > 0 and text[0] == "<" else None
    if pri is None:
        pri = _padded_pri(text, close)
        if pri is None:
            return _pri_error(frame, text, close)
        if text.startswith("1 ", close + 1):
            line = _rfc5424(text.split(" ", 6), pri, received, source)
            if line is not None:
                return line
    return _rfc3164(text, close + 1, pri, received, source)


def _failed(
    frame: bytes, text: str, invalid: bool, received: int, source: str, why: str
) -> Line:
    """Return the Line for a frame that did not parse: raw bytes and why."""
    return Line(
        received,
        received,
        DEFAULT_FACILITY,
        DEFAULT_SEVERITY,
        "",
        "",
        "",
        "",
        text,
        "",
        source,
        why,
        invalid,
        type(frame) is TruncatedFrame,
        bytes(frame),
    )


def _padded_pri(text: str, close: int) -> tuple[int, int] | None:
    """Accept a PRI written with leading zeros, which RFC 5424 forbids."""
    digits = text[1:close] if close > 0 and text[0] == "<" else ""
    if digits.isascii() and digits.isdecimal() and int(digits) <= 191:
        return divmod(int(digits), 8)
    return None


def _pri_error(frame: bytes, text: str, close: int) -> str:
    """Say why the frame has no usable PRI, naming the bytes it has."""
    if not text.startswith("<"):
        return f"no PRI: expected '<' then 0-191 then '>', got {frame[:16]!r}"
    if close < 0:
        return f"PRI not closed: expected '>' after 1-3 digits, got {frame[:6]!r}"
    digits = text[1:close]
    if digits.isascii() and digits.isdecimal():
        return f"PRI <{digits}> out of range 0-191"
    return f"PRI {frame[: close + 1]!r} is not 1-3 digits between '<' and '>'"


def _rfc5424(
    fields: list[str], pri: tuple[int, int], received: int, source: str
) -> Line | str | None:
    """Parse an RFC 5424 message split on its first six spaces.

    Returns the Line, a str that says why the message is malformed, or
    None when no timestamp or "-" follows "<PRI>1": then it is RFC 3164.
    The common shapes (a cached second, microseconds, "Z" or a known
    offset; SD "-" or plain elements) are handled inline, because every
    call and check here costs on each line.
    """
    if len(fields) < 7:
        return _rfc5424_short(fields, pri, received, source)
    stamp = fields[1]
    seconds = _seconds_cache.get(stamp[:19])
    # An offset is what rsyslog and loggen send, "Z" Docker's rfc5424micro.
    offset = _offsets.get(stamp[-6:])
    if offset is not None:
        digits = stamp[20:-6]
    elif stamp[-1:] == "Z":
        offset = 0
        digits = stamp[20:-1]
    else:
        digits = ""
    if (
        seconds is not None
        and offset is not None
        and len(digits) == 6
        and stamp[19] == "."
        and digits.isdecimal()
    ):
        ts = (seconds - offset) * _MICROS + int(digits)
    else:
        if stamp[:1] not in _TIMESTAMP_START:
            return None
        parsed = received if stamp == "-" else _rfc3339(stamp)
        if parsed is None:
            return _bad_stamp(stamp)
        ts = parsed
    rest = fields[6]
    if rest[:2] == "- ":
        sd = ""
        message = rest[2:]
    else:
        match = STRUCTURED_DATA.match(rest)
        end = -1 if match is None else match.end()
        if end == len(rest) or rest[end : end + 1] == " ":
            sd = rest[:end]
            message = rest[end + 1 :]
        else:
            sd, maybe = _structured_data(rest)
            if maybe is None:
                return sd
            message = maybe
    if message[:1] == "\ufeff":
        message = message[1:]
    host, app_name, procid, msgid = fields[2:6]
    return Line(
        ts,
        received,
        pri[0],
        pri[1],
        "" if host == "-" else host,
        "" if app_name == "-" else app_name,
        "" if procid == "-" else procid,
        "" if msgid == "-" else msgid,
        message,
        sd,
        source,
    )


def _rfc5424_short(
    fields: list[str], pri: tuple[int, int], received: int, source: str
) -> Line | str | None:
    """Parse an RFC 5424 header that ends before STRUCTURED-DATA.

    All six header fields with nothing after them is taken as SD "-" and
    an empty MSG; fewer is an error.
    """
    if fields[1][:1] not in _TIMESTAMP_START:
        return None
    if len(fields) < 6:
        missing = _HEADER_NAMES[len(fields)]
        got = " ".join(fields)[:64]
        return f"RFC 5424 header ends before {missing}: got {got!r}"
    return _rfc5424([*fields, "-"], pri, received, source)


def _bad_stamp(stamp: str) -> str:
    """Describe a TIMESTAMP that is not RFC 3339."""
    return (
        f"TIMESTAMP {stamp[:40]!r} is not RFC 3339: expected '-' or e.g. "
        "'2026-12-03T17:43:20.123456+00:00'"
    )


def _structured_data(tail: str) -> tuple[str, str | None]:
    """Split STRUCTURED-DATA from MSG: (sd, msg), or (why, None) if malformed.

    Nothing at all after the header's last space counts as "-".
    """
    first = tail[:1]
    if not first:
        return "", ""
    if first == "-":
        if len(tail) == 1 or tail[1] == " ":
            return "", tail[2:]
    elif first == "[":
        match = STRUCTURED_DATA.match(tail)
        if match is not None:
            end = match.end()
            if end == len(tail) or tail[end] == " ":
                return match.group(), tail[end + 1 :]
    return (
        f"STRUCTURED-DATA {tail[:64]!r} is malformed: expected '-' or "
        "'[id name=\"value\" ...]' then a space or the end",
        None,
    )


def _rfc3339(stamp: str) -> int | None:
    """Return an RFC 3339 time in epoch microseconds, or None if it is not one.

    The fast path takes a cached second and a known offset or "Z".
    """
    seconds = _seconds_cache.get(stamp[:19])
    if seconds is None:
        seconds = _seconds(stamp[:19])
        if seconds is None:
            return None
    offset = _offsets.get(stamp[-6:])
    if offset is not None:
        fraction = stamp[19:-6]
    elif stamp[-1] in "Zz":
        offset = 0
        fraction = stamp[19:-1]
    else:
        return _rfc3339_unusual(stamp, seconds)
    if not fraction:
        return (seconds - offset) * _MICROS
    digits = fraction[1:]
    # isdecimal() admits only digits that int() reads as digits.
    if fraction[0] != "." or not digits.isdecimal():
        return None
    if len(digits) == 6:
        return (seconds - offset) * _MICROS + int(digits)
    digits = digits[:6]
    return (seconds - offset) * _MICROS + int(digits) * _SCALE[len(digits)]


def _rfc3339_unusual(stamp: str, seconds: int) -> int | None:
    """Finish `_rfc3339` for a time with no zone or an offset not seen yet."""
    tail = stamp[19:]
    offset = 0
    if len(tail) >= 6 and tail[-6] in "+-":
        zone = _offset(tail[-6:])
        if zone is None:
            return None
        offset = zone
        tail = tail[:-6]
    if not tail:
        return (seconds - offset) * _MICROS
    digits = tail[1:]
    if tail[0] != "." or not digits.isdecimal():
        return None
    digits = digits[:6]
    return (seconds - offset) * _MICROS + int(digits) * _SCALE[len(digits)]


def epoch_seconds(head: str) -> int | None:
    """Convert "YYYY-MM-DDThh:mm:ss" (UTC) to epoch seconds; None if no such time."""
    seconds = _seconds_cache.get(head)
    return _seconds(head) if seconds is None else seconds


def zone_offset(zone: str) -> int | None:
    """Return an RFC 3339 zone in seconds east of UTC, None if it is not one.

    "Z" and no zone at all ("") are UTC; otherwise "+hh:mm" or "-hh:mm".
    """
    if zone in ("", "Z", "z"):
        return 0
    offset = _offsets.get(zone)
    return _offset(zone) if offset is None else offset


def _seconds(head: str) -> int | None:
    """Convert "YYYY-MM-DDThh:mm:ss" to epoch seconds and remember it."""
    match = _SECONDS_PART.fullmatch(head)
    if match is None:
        return None
    seconds = _civil(*(int(part) for part in match.groups()))
    if seconds is not None:
        if len(_seconds_cache) >= _CACHE_LIMIT:
            _seconds_cache.clear()
        _seconds_cache[head] = seconds
    return seconds


def _civil(
    year: int, month: int, day: int, hour: int, minute: int, sec: int
) -> int | None:
    """Return epoch seconds for a UTC date and time, None if it does not exist.

    Second 60 (a leap second) is accepted and lands on the next minute.
    """
    try:
        datetime(year, month, day, hour, minute, min(sec, 59))
    except ValueError:
        return None
    if sec > 60:
        return None
    return calendar.timegm((year, month, day, hour, minute, sec))


def _offset(zone: str) -> int | None:
    """Convert a "+hh:mm" offset to seconds east of UTC and remember it."""
    match = _OFFSET.fullmatch(zone)
    if match is None or int(match[1]) > 23 or int(match[2]) > 59:
        return None
    seconds = int(match[1]) * 3600 + int(match[2]) * 60
    seconds = -seconds if zone[0] == "-" else seconds
    if len(_offsets) < _CACHE_LIMIT:
        _offsets[zone] = seconds
    return seconds


def _rfc3164(
    text: str, start: int, pri: tuple[int, int], received: int, source: str
) -> Line:
    """Parse an RFC 3164 (BSD) message whose PRI ends before ``start``."""
    line = _rfc3164_seen(text, start, pri, received, source)
    if line is not None:
        return line
    match = _BSD_STAMP.match(text, start)
    if match is not None:
        ts = _bsd_time(match, received)
        if ts is not None and match[10] is not None:
            host, tag, pid = match.group(9, 10, 11)
            message = text[match.end() :]
            return Line(
                ts,
                received,
                pri[0],
                pri[1],
                host or "",
                tag,
                pid or "",
                "",
                message,
                "",
                source,
            )
    else:
        match = _ISO_STAMP.match(text, start)
        ts = None if match is None else _rfc3339(match[1])
    if match is None or ts is None:
        return _untimed(text, start, pri, received, source)
    host, app_name, procid, message = _bsd_header(text[match.end() :])
    return Line(
        ts, received, pri[0], pri[1], host, app_name, procid, "", message, "", source
    )


def _rfc3164_seen(
    text: str, start: int, pri: tuple[int, int], received: int, source: str
) -> Line | None:
    """Parse the usual RFC 3164 line whose time was seen before, or return None.

    A time in `_bsd_cache` was validated when it was added, so a lookup of
    the line's first 15 characters replaces the full time regex; None
    sends every other line down the general path.
    """
    end = start + _BSD_WIDTH
    seconds = _bsd_cache.get(text[start:end])
    if seconds is None or text[end : end + 1] != " ":
        return None
    micros = seconds * _MICROS
    if not (
        _year_span[0] <= received < _year_span[1]
        and received - _PAST_LIMIT < micros <= received + _FUTURE_SLACK
    ):
        return None
    header = _BSD_HOST_TAG.match(text, end + 1)
    if header is None:
        return None
    host, tag, pid = header.group(1, 2, 3)
    message = text[header.end() :]
    return Line(
        micros,
        received,
        pri[0],
        pri[1],
        host or "",
        tag,
        pid or "",
        "",
        message,
        "",
        source,
    )


def _untimed(
    text: str, start: int, pri: tuple[int, int], received: int, source: str
) -> Line:
    """Parse an RFC 3164 message without a time: "TAG[PID]: MSG" or just MSG."""
    tag = _UNTIMED_TAG.match(text, start)
    if tag is None:
        app_name = procid = ""
        message = text[start:]
    else:
        app_name, procid = tag[1], tag[2] or ""
        message = text[tag.end() :]
    return Line(
        received,
        received,
        pri[0],
        pri[1],
        "",
        app_name,
        procid,
        "",
        message,
        "",
        source,
    )


def _bsd_header(after: str) -> tuple[str, str, str, str]:
    """Split "[HOSTNAME] TAG[PID]: MSG" into host, tag, pid and message."""
    first, _, tail = after.partition(" ")
    if first[-1:] in (":", "]"):
        tag = _tag(first)
        if tag is not None:
            return "", tag[0], tag[1], tail
    word, _, message = tail.partition(" ")
    tag = _tag(word)
    if tag is None:
        return first, "", "", tail
    return first, tag[0], tag[1], message


def _tag(word: str) -> tuple[str, str] | None:
    """Read "name", "name:", "name[pid]" or "name[pid]:"; None if not a tag."""
    if word[-1:] == ":":
        word = word[:-1]
    if word[-1:] == "]":
        start = word.find("[")
        if start <= 0 or "]" in word[start:-1]:
            return None
        return word[:start], word[start + 1 : -1]
    if not word or "[" in word or "]" in word:
        return None
    return word, ""


def _bsd_time(match: re.Match[str], received: int) -> int | None:
    """Return the epoch microseconds of a matched RFC 3164 time, or None.

    The cache holds times in the year of the latest arrivals and starts
    over when arrivals move to another year.
    """
    if not _year_span[0] <= received < _year_span[1]:
        _enter_year(received)
    seconds = _bsd_cache.get(match[1])
    if seconds is None:
        seconds = _bsd_seconds(match, _year_span[2])
        if seconds is None and not match[4]:
            # Feb 29 when this year has none: last year's, if that had one.
            seconds = _bsd_seconds(match, _year_span[2] - 1)
        if seconds is None:
            return None
        if len(_bsd_cache) >= _CACHE_LIMIT:
            _bsd_cache.clear()
        _bsd_cache[match[1]] = seconds
    micros = seconds * _MICROS
    if not match[4] and not received - _PAST_LIMIT < micros <= received + _FUTURE_SLACK:
        micros = _other_year(match, micros, received)
    fraction = match[8]
    if fraction is None:
        return micros
    fraction = fraction[:6]
    return micros + int(fraction) * _SCALE[len(fraction)]


def _other_year(match: re.Match[str], micros: int, received: int) -> int:
    """Move a time without year that is far ahead to last year, far behind to next."""
    year = _year_span[2] + (-1 if micros > received else 1)
    seconds = _bsd_seconds(match, year)
    return micros if seconds is None else seconds * _MICROS


def _bsd_seconds(match: re.Match[str], year: int) -> int | None:
    """Convert a matched RFC 3164 time to epoch seconds; ``year`` if it has none."""
    if match[4]:
        year = int(match[4])
    hour, minute, sec = int(match[5]), int(match[6]), int(match[7])
    return _civil(year, _MONTHS[match[2]], int(match[3]), hour, minute, sec)


def _enter_year(received: int) -> None:
    """Point the year cache at the UTC year of ``received``; forget old times."""
    _bsd_cache.clear()
    try:
        year = datetime.fromtimestamp(received / _MICROS, UTC).year
        start = calendar.timegm((year, 1, 1, 0, 0, 0)) * _MICROS
        end = calendar.timegm((year + 1, 1, 1, 0, 0, 0)) * _MICROS
    except (ValueError, OverflowError, OSError):
        # Outside datetime's years 1-9998: year 0 makes every such time invalid.
        _year_span[:] = [received, received + 1, 0]
        return
    _year_span[:] = [start, end, year]
