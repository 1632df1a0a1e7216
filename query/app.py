"""The aiohttp application: query API, health and metrics."""

from __future__ import annotations

import asyncio

from aiohttp import web

from logd.metrics import CONTENT_TYPE, Metrics
from logd.store import Store
from query import api
from query.keys import METRICS, READY, STORE


def build(store: Store, metrics: Metrics, ready: asyncio.Event) -> web.Application:
    """Assemble the HTTP application over a running pipeline's parts."""
    app = web.Application(middlewares=[api.bad_parameters])
    app[STORE] = store
    app[METRICS] = metrics
    app[READY] = ready
    app.add_routes(api.routes)
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
