"""The HTTP query API: /api/v1/logs and /api/v1/apps.

Rows leave ClickHouse as JSON and are passed through as they are: the
engine formats times and escapes text, so a response costs Python no work
per line.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from aiohttp import web

from logd import log
from logd.errors import StorageError
from query import filters
from query.keys import STORE

routes = web.RouteTableDef()
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

LINE_COLUMNS = (
    "ts, received, seq, app, service, container, host, facility, severity, "
    "app_name, procid, msgid, message, structured_data, labels, source, "
    "parse_error, invalid_utf8, truncated, base64Encode(raw) AS raw"
)


@routes.get("/api/v1/logs")
async def logs(request: web.Request) -> web.Response:
    """Lines matching the filters, newest first."""
    query = filters.from_query(request.query)
    where, params = query.where()
    params["limit"] = query.limit
    sql = (
        f"SELECT {LINE_COLUMNS} FROM logs WHERE {where} "
        "ORDER BY ts DESC, seq DESC LIMIT {limit:UInt32}"
    )
    rows = await _json_rows(request, sql, params)
    return _json_list("lines", rows)


@routes.get("/api/v1/apps")
async def apps(request: web.Request) -> web.Response:
    """Every app with its line count and the time of its newest line."""
    sql = (
        "SELECT app, count() AS lines, max(ts) AS last FROM logs "
        "GROUP BY app ORDER BY app"
    )
    rows = await _json_rows(request, sql, {})
    return _json_list("apps", rows)


async def _json_rows(
    request: web.Request, sql: str, params: dict[str, object]
) -> bytes:
    store = request.app[STORE]
    try:
        return await asyncio.to_thread(store.json_rows, sql, params)
    except StorageError as exc:
        log.api.error("query failed: %s", exc)
        raise web.HTTPServiceUnavailable(
            text='{"error": "storage unavailable"}', content_type="application/json"
        ) from exc


def _json_list(key: str, rows: bytes) -> web.Response:
    items = b",".join(rows.split(b"\n")[:-1]) if rows else b""
    body = b'{"%s":[%s]}' % (key.encode(), items)
    return web.Response(body=body, content_type="application/json")


@web.middleware
async def bad_parameters(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Answer a BadParameter with 400 and a message naming the parameter."""
    try:
        return await handler(request)
    except filters.BadParameter as exc:
        return web.json_response({"error": str(exc), "parameter": exc.name}, status=400)
