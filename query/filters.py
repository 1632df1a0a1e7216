"""Turn query-string parameters into a parameterized WHERE clause, or a test.

One `Filters` serves storage (`where`: SQL and its bound parameters) and
the live tail (`matches`: the same test on one `Line`), so a search and a
tail agree on what matches. User text only ever reaches ClickHouse as a
bound parameter; the SQL around it is built from fixed fragments. A bad
parameter raises `BadParameter`, which the API answers with 400 and the
parameter's name.

Parameters (every one optional):

- `app`, `service`, `container`, `host`: one or more names, repeated or
  comma separated; a line matches any of them.
- `label.NAME=VALUE`: the line's label NAME is VALUE (repeat for any of
  several values; a missing label reads as "").
- `since`, `until`: RFC 3339 or a duration before now ("15m"); since is
  inclusive, until exclusive.
- `severity`: the least severe level wanted, 0-7 or a name (`err` keeps
  emerg, alert, crit and err).
- `q`: words and "quoted phrases", all of which must occur, ignoring case.
  A word (letters and digits only) matches a whole word; anything quoted,
  or a bare term with punctuation in it (`user@example.com`), matches
  anywhere in the message. The token skip index on the lowercased message
  (schema 005) finds a rare word without reading every line, and a phrase
  by the whole words inside it; a term that is only part of a word is read
  from every line of the time range, unless logd runs with
  `--substring-index` (an n-gram index, `logd.store`), which the same
  condition uses.
- `regex`: an RE2 pattern the message must match (case-sensitive unless it
  starts with `(?i)`). It has no index: combine it with the others.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import Collection
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, unquote_to_bytes

import re2
from multidict import MultiMapping

from logd.config import parse_duration
from logd.errors import ConfigError
from logd.line import Line

DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
# NDJSON streams, so an export may ask for far more lines than a JSON page.
MAX_EXPORT = 10_000_000
MAX_TEXT = 1024
MAX_NAMES = 1000
MAX_TERMS = 32
SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
_SEVERITY_ALIASES = {
    "emergency": 0,
    "panic": 0,
    "critical": 2,
    "error": 3,
    "warn": 4,
    "informational": 6,
}
FIELDS = ("service", "container", "host")
LABEL_PREFIX = "label."
FILTER_PARAMS = ("app", *FIELDS, "since", "until", "severity", "q", "regex")
# DateTime64(6)'s range; times outside it are clamped, which keeps meaning.
MIN_TS = 0
MAX_TS = 10_413_791_999_000_000
# ClickHouse's hasToken splits on ASCII characters other than letters and
# digits; bytes of other UTF-8 characters belong to words.
_SEPARATORS = re.compile(r"[\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+")
_WORD = re.compile(r"[^\x00-\x2f\x3a-\x40\x5b-\x60\x7b-\x7f]+")
_TERMS = re.compile(r'"([^"]*)"|([^\s"]+)|(")')
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_UNITS = ("s", "m", "h", "d", "w")
_TIME_EXPECTED = "RFC 3339 time (2026-12-03T17:00:00Z) or a duration (15m)"


class BadParameter(ValueError):
    """A request parameter the API cannot use; its message names it."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        shown = value if len(value) <= 64 else value[:64] + "..."
        super().__init__(f"parameter {name}={shown!r}: expected {expected}")
        self.name = name


@dataclass(slots=True)
class Filters:
    """What a request asks for, in the units the SQL binds.

    Text terms are kept lowercased; times are unix microseconds.
    """

    apps: tuple[str, ...] = ()
    fields: dict[str, tuple[str, ...]] = field(default_factory=dict)
    labels: dict[str, tuple[str, ...]] = field(default_factory=dict)
    since: int | None = None
    until: int | None = None
    severity: int | None = None
    words: tuple[str, ...] = ()
    phrases: tuple[str, ...] = ()
    regex: str | None = None

    def where(self) -> tuple[str, dict[str, Any]]:
        """Build the WHERE clause and its bound parameters (names start f_)."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if len(self.apps) == 1:
            # Equality, unlike IN, lets the engine read one app's lines in
            # (ts, seq) order and stop at the limit.
            clauses.append("app = {f_app:String}")
            params["f_app"] = self.apps[0]
        elif self.apps:
            clauses.append("app IN {f_apps:Array(String)}")
            params["f_apps"] = list(self.apps)
        for name, values in self.fields.items():
            # The column name comes from FIELDS, never from the request.
            clauses.append(f"{name} IN {{f_{name}:Array(String)}}")
            params[f"f_{name}"] = list(values)
        self._time_where(clauses, params)
        for i, (label, values) in enumerate(sorted(self.labels.items())):
            clauses.append(f"labels[{{f_lk{i}:String}}] IN {{f_lv{i}:Array(String)}}")
            params[f"f_lk{i}"] = label
            params[f"f_lv{i}"] = list(values)
        self._text_where(clauses, params)
        return (" AND ".join(clauses) if clauses else "1"), params

    def matches(self, line: Line) -> bool:
        """Tell whether one line passes every filter (the tail's test)."""
        if self.apps and line.app not in self.apps:
            return False
        if self.severity is not None and line.severity > self.severity:
            return False
        if self.since is not None and line.ts < self.since:
            return False
        if self.until is not None and line.ts >= self.until:
            return False
        for name, values in self.fields.items():
            if getattr(line, name) not in values:
                return False
        for label, values in self.labels.items():
            if line.labels.get(label, "") not in values:
                return False
        return self._text_matches(line.message)

    def _time_where(self, clauses: list[str], params: dict[str, Any]) -> None:
        if self.since is not None:
            clauses.append("ts >= fromUnixTimestamp64Micro({f_since:Int64}, 'UTC')")
            params["f_since"] = self.since
        if self.until is not None:
            clauses.append("ts < fromUnixTimestamp64Micro({f_until:Int64}, 'UTC')")
            params["f_until"] = self.until
        if self.severity is not None:
            clauses.append("severity <= {f_severity:UInt8}")
            params["f_severity"] = self.severity

    def _text_where(self, clauses: list[str], params: dict[str, Any]) -> None:
        # The token index answers hasToken on lowerUTF8(message), and a
        # phrase's substring search by the words inside it.
        for i, word in enumerate(self.words):
            clauses.append(f"hasToken(lowerUTF8(message), {{f_w{i}:String}})")
            params[f"f_w{i}"] = word
        for i, phrase in enumerate(self.phrases):
            clauses.append(f"multiSearchAny(lowerUTF8(message), [{{f_p{i}:String}}])")
            params[f"f_p{i}"] = phrase
        if self.regex is not None:
            clauses.append("match(message, {f_regex:String})")
            params["f_regex"] = self.regex

    def _text_matches(self, message: str) -> bool:
        if self.words or self.phrases:
            lowered = message.lower()
            if any(phrase not in lowered for phrase in self.phrases):
                return False
            if self.words:
                words = set(_SEPARATORS.split(lowered))
                if any(word not in words for word in self.words):
                    return False
        if self.regex is not None:
            return compile_regex("regex", self.regex).search(message) is not None
        return True


def from_query(
    query: MultiMapping[str], *, accept: Collection[str] | None = None
) -> Filters:
    """Read the filters from a request's query string.

    With `accept`, any other parameter that is not a filter is refused with
    400, so a misspelt filter never silently widens a search; without it
    (callers that read more parameters themselves) others are ignored.
    """
    if accept is not None:
        check_names(query, accept)
    filters = Filters()
    for name, value in query.items():
        _check_text(name, value)
    filters.apps = _names(query, "app")
    filters.fields = {n: _names(query, n) for n in FIELDS if n in query}
    filters.labels = _labels(query)
    if "since" in query:
        filters.since = parse_time("since", _one(query, "since"))
    if "until" in query:
        filters.until = parse_time("until", _one(query, "until"))
    if "severity" in query:
        filters.severity = parse_severity("severity", _one(query, "severity"))
    if "q" in query:
        filters.words, filters.phrases = parse_terms("q", _one(query, "q"))
    if "regex" in query:
        filters.regex = _one(query, "regex")
        compile_regex("regex", filters.regex)
    return filters


def check_encoding(raw_query: str) -> None:
    """Refuse a raw query string whose percent-encoded bytes are not UTF-8.

    The decoded query would carry U+FFFD instead, and a search for the
    replacement character is not what such a client asked for.
    """
    for pair in raw_query.split("&"):
        name, _, value = pair.partition("=")
        for part in (name, value):
            try:
                unquote_to_bytes(part.replace("+", " ")).decode("utf-8")
            except UnicodeDecodeError:
                shown = unquote(name, errors="replace")
                raise BadParameter(
                    shown, unquote(value, errors="replace"), "percent-encoded UTF-8"
                ) from None


def restricted(filters: Filters, apps: tuple[str, ...]) -> Filters:
    """Return a copy of `filters` that reads only `apps`."""
    return replace(filters, apps=apps)


def check_names(query: MultiMapping[str], accept: Collection[str]) -> None:
    """Refuse any parameter that is neither a filter nor in `accept`."""
    for name in query:
        if name in FILTER_PARAMS or name in accept:
            continue
        if name.startswith(LABEL_PREFIX):
            continue
        known = ", ".join([*FILTER_PARAMS, *accept, LABEL_PREFIX + "NAME"])
        raise BadParameter(name, query[name], f"a known parameter: {known}")


def parse_time(name: str, text: str, now: float | None = None) -> int:
    """Read RFC 3339 or a duration before now ("15m") as unix microseconds."""
    now = time.time() if now is None else now
    if text.isascii() and text[-1:] in _UNITS and text[:-1].isdigit():
        try:
            return _clamp(int((now - parse_duration(text, name)) * 1_000_000))
        except (ConfigError, OverflowError):
            raise BadParameter(name, text, _TIME_EXPECTED) from None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter(name, text, _TIME_EXPECTED) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    try:
        return _clamp(int(moment.timestamp() * 1_000_000))
    except (OverflowError, ValueError):
        raise BadParameter(name, text, _TIME_EXPECTED) from None


def parse_int(name: str, text: str, low: int, high: int) -> int:
    """Read a whole number in [low, high]; raise BadParameter naming `name`."""
    expected = f"a whole number from {low} to {high}"
    if not (text.isascii() and text.isdigit() and len(text) <= 18):
        raise BadParameter(name, text, expected)
    if not low <= int(text) <= high:
        raise BadParameter(name, text, expected)
    return int(text)


def parse_severity(name: str, text: str) -> int:
    """Read a syslog severity as a number 0-7 or a name (err, warning...)."""
    lowered = text.strip().lower()
    if lowered in SEVERITIES:
        return SEVERITIES.index(lowered)
    if lowered in _SEVERITY_ALIASES:
        return _SEVERITY_ALIASES[lowered]
    if len(lowered) == 1 and lowered in "01234567":
        return int(lowered)
    raise BadParameter(name, text, "0-7 or one of " + ", ".join(SEVERITIES))


def parse_terms(name: str, text: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Split a search into whole words and phrases, both lowercased."""
    words: list[str] = []
    phrases: list[str] = []
    for match in _TERMS.finditer(text):
        quoted, bare, stray = match.groups()
        if stray is not None:
            raise BadParameter(name, text, 'words and "phrases" with closed quotes')
        term = (bare if quoted is None else quoted).lower()
        if not term:
            continue
        if quoted is None and _WORD.fullmatch(term):
            words.append(term)
        else:
            phrases.append(term)
    if len(words) + len(phrases) > MAX_TERMS:
        raise BadParameter(name, text, f"at most {MAX_TERMS} words and phrases")
    return tuple(dict.fromkeys(words)), tuple(dict.fromkeys(phrases))


@functools.lru_cache(maxsize=256)
def compile_regex(name: str, pattern: str) -> Any:
    """Compile an RE2 pattern as ClickHouse's match() reads it, or refuse it.

    RE2 is what the engine runs, so a pattern passes here exactly when it
    runs there, and it matches in linear time: a hostile pattern cannot
    stall the tail, which evaluates it on the event loop.
    """
    options = re2.Options()
    options.log_errors = False
    try:
        return re2.compile(pattern, options=options)
    except re2.error as exc:
        reason = exc.args[0] if exc.args else "invalid"
        if isinstance(reason, bytes):
            reason = reason.decode(errors="replace")
        expected = f"an RE2 regular expression ({reason})"
        raise BadParameter(name, pattern, expected) from None


def _one(query: MultiMapping[str], name: str) -> str:
    values = query.getall(name)
    if len(values) > 1:
        raise BadParameter(name, ",".join(values), "the parameter once")
    return values[0]


def _names(query: MultiMapping[str], name: str) -> tuple[str, ...]:
    names: list[str] = []
    for text in query.getall(name, []):
        parts = [part for part in text.split(",") if part]
        if not parts:
            raise BadParameter(name, text, "one or more comma separated names")
        names.extend(parts)
    if len(names) > MAX_NAMES:
        raise BadParameter(name, ",".join(names), f"at most {MAX_NAMES} names")
    return tuple(dict.fromkeys(names))


def _labels(query: MultiMapping[str]) -> dict[str, tuple[str, ...]]:
    labels: dict[str, list[str]] = {}
    for name, value in query.items():
        if not name.startswith(LABEL_PREFIX):
            continue
        label = name[len(LABEL_PREFIX) :]
        if not label:
            raise BadParameter(name, value, "label.NAME=VALUE with a NAME")
        labels.setdefault(label, []).append(value)
    if len(labels) > MAX_TERMS:
        raise BadParameter("label.*", "", f"at most {MAX_TERMS} label filters")
    return {label: tuple(dict.fromkeys(values)) for label, values in labels.items()}


def _check_text(name: str, value: str) -> None:
    if len(name) > MAX_TEXT or _CONTROL.search(name):
        raise BadParameter(name[:64], value, "a parameter name of printable text")
    if len(value) > MAX_TEXT:
        raise BadParameter(name, value, f"at most {MAX_TEXT} characters")
    if _CONTROL.search(value):
        raise BadParameter(name, value, "text without control characters")


def _clamp(micros: int) -> int:
    return min(max(micros, MIN_TS), MAX_TS)
