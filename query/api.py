"""The HTTP query API: logs, histogram, apps, labels and their values.

Rows leave ClickHouse as JSON and are passed through as they are: the
engine formats times and escapes text, so a response costs Python no work
per line. `/api/v1/logs` pages with cursors (query.cursor says exactly what
paging guarantees) and streams NDJSON for `Accept: application/x-ndjson`,
chunk by chunk from the engine, so an export of millions of lines holds
one chunk in memory at a time.

Every handler reads its parameters through query.filters (400 naming the
parameter) and narrows them to the caller's token (query.access) before
any SQL runs.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson
from aiohttp import web

from logd import log
from logd.config import parse_duration
from logd.errors import ConfigError, StorageError
from logd.store import Reader, Store
from query import access, cursor, filters, openapi
from query.cursor import Page, Position
from query.filters import BadParameter, Filters
from query.keys import STORE, STORED_SEQ

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LINE_COLUMNS = (
    "ts, received, seq, app, service, container, host, facility, severity, "
    "app_name, procid, msgid, message, structured_data, labels, source, "
    "parse_error, invalid_utf8, truncated, base64Encode(raw) AS raw"
)
NDJSON = "application/x-ndjson"
# Stored lines the snapshot query looks at first: those from the last ten
# minutes, found through the seq minmax index without reading the rest.
_RECENT_US = 600 * 1_000_000
_CHUNK = 256 * 1024
HISTOGRAM_RANGE_US = 3600 * 1_000_000
MAX_BUCKETS = 20_000
_AUTO_BUCKETS = 120
_STEPS = (
    *(1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200),
    *(10800, 21600, 43200, 86400, 172800, 604800),
)
MAX_STEP = 366 * 86400
DEFAULT_VALUES = 1000
MAX_VALUES = 10_000
# Label names and the fixed fields /labels lists and /values reads.
FIXED_NAMES = ("app", *filters.FIELDS)


@routes.get("/api/v1/logs")
async def logs(request: web.Request) -> web.StreamResponse:
    """Lines matching the filters, newest first, a page at a time."""
    export = NDJSON in request.headers.get("Accept", "")
    wanted = _filters(request, cursor.PAGE_PARAMS)
    page = cursor.page_from_query(request.query, export=export)
    store = request.app[STORE]
    snapshot = _given_snapshot(page)
    if snapshot is None:
        snapshot = _stored_seq(request) or await _snapshot(store, wanted)
    sql, params = page_query(wanted, page, snapshot)
    if export:
        return await _export(request, sql, params, page, snapshot)
    rows = (await _json_rows(store, sql, params)).splitlines()
    following = None
    if len(rows) > page.limit:
        following = _next(rows[page.limit - 1], snapshot)
    body = b'{"lines":[%s]' % b",".join(rows[: page.limit])
    if following is not None:
        body += b',"next":"%s"' % following.encode()
    return web.Response(body=body + b"}", content_type="application/json")


@routes.get("/api/v1/histogram")
async def histogram(request: web.Request) -> web.Response:
    """Line counts per interval and severity, for the filters of /logs."""
    wanted = _filters(request, ("step",))
    if wanted.until is None:
        wanted.until = time.time_ns() // 1000
    if wanted.since is None:
        wanted.since = max(wanted.until - HISTOGRAM_RANGE_US, filters.MIN_TS)
    if wanted.since >= wanted.until:
        since = request.query.get("since", "")
        raise BadParameter("since", since, "a time before until")
    step = _step(request.query, wanted.since, wanted.until)
    where, params = wanted.where()
    params["h_step"] = step * 1_000_000
    sql = (
        "SELECT intDiv(toUnixTimestamp64Micro(ts), {h_step:Int64}) "
        "* {h_step:Int64} AS bucket, severity, count() AS lines "
        f"FROM logs WHERE {where} GROUP BY bucket, severity ORDER BY bucket"
    )
    rows = await _rows(request.app[STORE], sql, params)
    return web.json_response(
        _buckets(rows, wanted.since, wanted.until, step), dumps=_dumps
    )


@routes.get("/api/v1/apps")
async def apps(request: web.Request) -> web.Response:
    """Apps the caller may read with lines matching the filters (all if none).

    Each comes with its line count and the time of its newest line.
    """
    where, params = _filters(request, ()).where()
    sql = (
        "SELECT app, count() AS lines, max(ts) AS last FROM logs "
        f"WHERE {where} GROUP BY app ORDER BY app"
    )
    rows = await _json_rows(request.app[STORE], sql, params)
    return _json_list("apps", rows)


@routes.get("/api/v1/labels")
async def labels(request: web.Request) -> web.Response:
    """Names to filter by: the fixed fields, then `label.NAME` for each label."""
    wanted = _filters(request, ())
    where, params = wanted.where()
    params["v_limit"] = MAX_VALUES
    sql = (
        "SELECT DISTINCT arrayJoin(mapKeys(labels)) AS name FROM logs "
        f"WHERE {where} ORDER BY name LIMIT {{v_limit:UInt32}}"
    )
    rows = await _rows(request.app[STORE], sql, params)
    names = [*FIXED_NAMES, *(filters.LABEL_PREFIX + row[0] for row in rows)]
    return web.json_response({"labels": names}, dumps=_dumps)


@routes.get("/api/v1/labels/{name}/values")
async def label_values(request: web.Request) -> web.Response:
    """The distinct non-empty values of one field or label, sorted."""
    name = request.match_info["name"]
    wanted = _filters(request, ("limit",))
    limit = DEFAULT_VALUES
    if "limit" in request.query:
        limit = filters.parse_int("limit", request.query["limit"], 1, MAX_VALUES)
    where, params = wanted.where()
    params["v_limit"] = limit
    column = _value_column(name, params)
    sql = (
        f"SELECT {column} AS value FROM logs WHERE {where} AND value != '' "
        "GROUP BY value ORDER BY value LIMIT {v_limit:UInt32}"
    )
    rows = await _rows(request.app[STORE], sql, params)
    return web.json_response(
        {"name": name, "values": [row[0] for row in rows]}, dumps=_dumps
    )


@routes.get("/api/v1/openapi.json")
async def openapi_document(request: web.Request) -> web.Response:
    """The OpenAPI 3 description of this API."""
    return web.Response(body=openapi.document_bytes(), content_type="application/json")


@web.middleware
async def bad_parameters(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a BadParameter with 400 and a message naming the parameter."""
    try:
        filters.check_encoding(request.rel_url.raw_query_string)
        return await handler(request)
    except BadParameter as exc:
        body = {"error": str(exc), "parameter": exc.name}
        return web.json_response(body, status=400, dumps=_dumps)


def page_query(
    wanted: Filters, page: Page, snapshot: int
) -> tuple[str, dict[str, Any]]:
    """SQL for one page: the filters, the snapshot, the cursor, the order."""
    where, params = wanted.where()
    clauses = [f"({where})", "seq <= {p_snapshot:UInt64}"]
    params["p_snapshot"] = snapshot
    if page.position is not None:
        bound, bound_params = cursor.bound(page.position, backward=page.backward)
        clauses.append(f"({bound})")
        params.update(bound_params)
    params["p_limit"] = page.limit + 1
    order = "DESC" if page.backward else "ASC"
    sql = (
        f"SELECT {LINE_COLUMNS}, {cursor.SQL} FROM logs "
        f"WHERE {' AND '.join(clauses)} "
        f"ORDER BY ts {order}, seq {order} LIMIT {{p_limit:UInt32}}"
    )
    return sql, params


def _filters(request: web.Request, accept: tuple[str, ...]) -> Filters:
    wanted = filters.from_query(request.query, accept=accept)
    return access.scoped(wanted, access.allowed_apps(request))


def _given_snapshot(page: Page) -> int | None:
    if page.position is None:
        return None
    return page.position.snapshot


def _stored_seq(request: web.Request) -> int:
    """The highest sequence the writer has stored, 0 when it cannot tell.

    Every line stored has a sequence at or below it and every line in
    flight one above, like `_snapshot`'s, without a query.
    """
    known = request.app.get(STORED_SEQ)
    return known() if known is not None else 0


async def _snapshot(store: Store, wanted: Filters) -> int:
    """The highest sequence stored now among the apps asked for.

    Asked of storage when the writer cannot tell: before this process has
    stored a batch, or where nothing in it inserts.

    Batches are stored whole and in sequence order, so every line stored
    has a sequence at or below it and every line still in flight above it.
    """
    params: dict[str, Any] = {"s_recent": time.time_ns() // 1000 - _RECENT_US}
    scope = ""
    if len(wanted.apps) == 1:
        scope = "app = {s_app:String} AND "
        params["s_app"] = wanted.apps[0]
    elif wanted.apps:
        scope = "app IN {s_apps:Array(String)} AND "
        params["s_apps"] = list(wanted.apps)
    recent = f"SELECT max(seq) FROM logs WHERE {scope}seq > {{s_recent:UInt64}}"
    rows = await _rows(store, recent, params)
    if rows[0][0]:
        return int(rows[0][0])
    every = f"SELECT max(seq) FROM logs WHERE {scope}1"
    rows = await _rows(store, every, params)
    return int(rows[0][0] or 0)


def _next(row: bytes, snapshot: int) -> str:
    ts, seq = cursor.decode("cursor", orjson.loads(row)["cursor"])
    return cursor.encode_page(Position(ts, seq, snapshot))


async def _export(
    request: web.Request,
    sql: str,
    params: dict[str, Any],
    page: Page,
    snapshot: int,
) -> web.StreamResponse:
    """Stream a page as NDJSON; a last `{"next": CURSOR}` when more remain."""
    store = request.app[STORE]
    opened = store.stream(sql, params)
    try:
        read = await asyncio.to_thread(opened.__enter__)
    except StorageError as exc:
        raise _unavailable(exc) from exc
    try:
        response = web.StreamResponse(headers={"Content-Type": NDJSON})
        await response.prepare(request)
        await _copy_lines(response, read, page.limit, snapshot)
        await response.write_eof()
        return response
    finally:
        await asyncio.to_thread(opened.__exit__, None, None, None)


async def _copy_lines(
    response: web.StreamResponse, read: Reader, limit: int, snapshot: int
) -> None:
    """Write up to `limit` lines from the engine; then `next` if one is left."""
    left = limit
    carry = last = b""
    more = False
    while left:
        try:
            chunk = await asyncio.to_thread(read, _CHUNK)
        except StorageError as exc:
            log.api.error("export failed: %s", exc)
            await response.write(b'{"error":"storage failed mid-export"}\n')
            return
        if not chunk:
            return
        data = carry + chunk
        cut = data.rfind(b"\n") + 1
        lines, carry = data[:cut], data[cut:]
        if not lines:
            continue
        count = lines.count(b"\n")
        if count > left:
            lines = b"".join(lines.splitlines(keepends=True)[:left])
            count = left
            more = True
        left -= count
        await response.write(lines)
        last = lines[lines.rfind(b"\n", 0, len(lines) - 1) + 1 :]
    # Exactly `limit` lines went out; one more means another page.
    more = more or bool(carry.strip()) or bool(await asyncio.to_thread(read, 1))
    if more and last:
        following = _next(last, snapshot).encode()
        await response.write(b'{"next":"%s"}\n' % following)


def _step(query: Mapping[str, str], since: int, until: int) -> int:
    """The interval in seconds: the `step` parameter or about 120 intervals."""
    span = max(until - since, 1)
    if "step" not in query:
        target = span / _AUTO_BUCKETS / 1_000_000
        return next((s for s in _STEPS if s >= target), _STEPS[-1])
    text = query["step"]
    expected = f"seconds or a duration (30s, 1m) from 1s to {MAX_STEP // 86400}d"
    if text.isascii() and text.isdigit() and len(text) <= 12:
        step = int(text)
    else:
        try:
            step = parse_duration(text, "step")
        except ConfigError:
            raise BadParameter("step", text, expected) from None
    if not 1 <= step <= MAX_STEP:
        raise BadParameter("step", text, expected)
    if span // (step * 1_000_000) + 1 > MAX_BUCKETS:
        raise BadParameter(
            "step", text, f"a step giving at most {MAX_BUCKETS} intervals"
        )
    return step


def _buckets(rows: list[Any], since: int, until: int, step: int) -> dict[str, Any]:
    """Every interval from since to until, zero-filled, by severity name."""
    step_us = step * 1_000_000
    first = since // step_us * step_us
    counts: dict[int, dict[str, int]] = {}
    for bucket, severity, lines in rows:
        name = filters.SEVERITIES[severity]
        counts.setdefault(bucket, {})[name] = int(lines)
    buckets = []
    for start in range(first, max(until, first + 1), step_us):
        by_severity = counts.get(start, {})
        buckets.append(
            {
                "ts": rfc3339(start),
                "total": sum(by_severity.values()),
                "severity": by_severity,
            }
        )
    return {
        "since": rfc3339(since),
        "until": rfc3339(until),
        "step": step,
        "total": sum(b["total"] for b in buckets),
        "buckets": buckets,
    }


def _value_column(name: str, params: dict[str, Any]) -> str:
    """The SQL for one name's values; the column never comes from the request."""
    if name in FIXED_NAMES:
        return name
    label = name.removeprefix(filters.LABEL_PREFIX)
    if name.startswith(filters.LABEL_PREFIX) and label:
        params["v_label"] = label
        return "labels[{v_label:String}]"
    raise BadParameter(
        "name", name, "app, service, container, host or label.NAME (see /labels)"
    )


def rfc3339(micros: int) -> str:
    """Format unix microseconds as the engine does: 2026-12-03T17:43:20.123456Z."""
    seconds, fraction = divmod(micros, 1_000_000)
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{fraction:06d}Z"


async def _json_rows(store: Store, sql: str, params: dict[str, Any]) -> bytes:
    try:
        return await asyncio.to_thread(store.json_rows, sql, params)
    except StorageError as exc:
        raise _unavailable(exc) from exc


async def _rows(store: Store, sql: str, params: dict[str, Any]) -> list[Any]:
    try:
        return await asyncio.to_thread(store.rows, sql, params)
    except StorageError as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: StorageError) -> web.HTTPServiceUnavailable:
    log.api.error("query failed: %s", exc)
    return web.HTTPServiceUnavailable(
        text='{"error": "storage unavailable"}', content_type="application/json"
    )


def _json_list(key: str, rows: bytes) -> web.Response:
    items = b",".join(rows.split(b"\n")[:-1]) if rows else b""
    body = b'{"%s":[%s]}' % (key.encode(), items)
    return web.Response(body=body, content_type="application/json")


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()
