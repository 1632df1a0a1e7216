"""Turn query-string parameters into a parameterized WHERE clause.

User text only ever reaches ClickHouse as a bound parameter; the SQL
around it is built from fixed fragments. A bad parameter raises
`BadParameter`, which the API answers with 400 and the parameter's name.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from multidict import MultiMapping

from logd.config import parse_duration
from logd.errors import ConfigError

DEFAULT_LIMIT = 100
MAX_LIMIT = 100_000
_MAX_TEXT = 1024


class BadParameter(ValueError):
    """A request parameter the API cannot use; its message names it."""

    def __init__(self, name: str, value: str, expected: str) -> None:
        shown = value if len(value) <= 64 else value[:64] + "..."
        super().__init__(f"parameter {name}={shown!r}: expected {expected}")
        self.name = name


@dataclass(slots=True)
class Filters:
    """What a request asks for, in the units the SQL binds."""

    apps: list[str] = field(default_factory=list)
    since: int | None = None
    until: int | None = None
    limit: int = DEFAULT_LIMIT

    def where(self) -> tuple[str, dict[str, Any]]:
        """Build the WHERE clause and its bound parameters."""
        clauses: list[str] = []
        params: dict[str, Any] = {}
        if self.apps:
            clauses.append("app IN {apps:Array(String)}")
            params["apps"] = self.apps
        if self.since is not None:
            clauses.append("ts >= fromUnixTimestamp64Micro({since:Int64}, 'UTC')")
            params["since"] = self.since
        if self.until is not None:
            clauses.append("ts < fromUnixTimestamp64Micro({until:Int64}, 'UTC')")
            params["until"] = self.until
        sql = " AND ".join(clauses) if clauses else "1"
        return sql, params


def parse_time(name: str, text: str, now: float | None = None) -> int:
    """Read RFC 3339 or a duration before now ("15m") as unix microseconds."""
    now = time.time() if now is None else now
    if text[:1].isdigit() and text[-1:] in "smhdw" and text.rstrip("smhdw").isdigit():
        try:
            return int((now - parse_duration(text, name)) * 1_000_000)
        except ConfigError:
            pass
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise BadParameter(
            name, text, "RFC 3339 time (2026-12-03T17:00:00Z) or a duration (15m)"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1_000_000)


def parse_int(name: str, text: str, low: int, high: int) -> int:
    if not text.isdigit() or not low <= int(text) <= high:
        raise BadParameter(name, text, f"a whole number from {low} to {high}")
    return int(text)


def from_query(query: MultiMapping[str]) -> Filters:
    """Read the filters of /api/v1/logs from a request's query string."""
    filters = Filters()
    for app in query.getall("app", []):
        filters.apps.extend(_names("app", app))
    if "since" in query:
        filters.since = parse_time("since", query["since"])
    if "until" in query:
        filters.until = parse_time("until", query["until"])
    if "limit" in query:
        filters.limit = parse_int("limit", query["limit"], 1, MAX_LIMIT)
    return filters


def _names(name: str, text: str) -> list[str]:
    names = [part for part in text.split(",") if part]
    if not names or any(len(n) > _MAX_TEXT for n in names):
        raise BadParameter(name, text, "one or more comma separated names")
    return names
