"""The aiohttp application: query API, live tail, health and metrics."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from aiohttp import web

from logd.hub import Hub
from logd.metrics import CONTENT_TYPE, Metrics
from logd.store import Store
from query import access, api, tail
from query.access import Tokens
from query.keys import HUB, METRICS, READY, STORE, STORED_SEQ, TOKENS

# Every parameter at its longest (query.filters.MAX_TEXT characters),
# percent-encoded, still fits: such a request gets the API's own 400 naming
# the parameter rather than the HTTP parser's.
MAX_REQUEST_LINE = 128 * 1024


def build(
    store: Store,
    metrics: Metrics,
    ready: asyncio.Event,
    *,
    hub: Hub | None = None,
    tokens: Tokens | None = None,
    stored_seq: Callable[[], int] | None = None,
) -> web.Application:
    """Assemble the HTTP application over a running pipeline's parts.

    `hub` feeds the live tail (a hub of its own when not given, which no
    one publishes to); `tokens` turns on per-app access (None: every reader
    sees every app; pair that with a loopback address, see
    `access.check_bind`); `stored_seq` gives the highest sequence storage
    holds, which saves /logs a query for it (None, or 0 returned: it asks
    storage).
    """
    app = web.Application(
        middlewares=[access.guard, api.bad_parameters],
        handler_args={"max_line_size": MAX_REQUEST_LINE},
    )
    app[STORE] = store
    app[METRICS] = metrics
    app[READY] = ready
    app[HUB] = Hub(metrics) if hub is None else hub
    if tokens is not None:
        app[TOKENS] = tokens
    if stored_seq is not None:
        app[STORED_SEQ] = stored_seq
    app.add_routes(api.routes)
    app.add_routes(tail.routes)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics_page)
    return app


async def healthz(request: web.Request) -> web.Response:
    """200 once logd accepts lines and storage is open, 503 before."""
    if request.app[READY].is_set():
        return web.json_response({"status": "ok"})
    return web.json_response({"status": "starting"}, status=503)


async def metrics_page(request: web.Request) -> web.Response:
    body = request.app[METRICS].exposition()
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE})
