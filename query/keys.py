"""Typed keys for the state the HTTP application shares with its handlers."""

from __future__ import annotations

import asyncio

from aiohttp import web

from logd.metrics import Metrics
from logd.store import Store

STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
# Set once every listener accepts lines and storage is open.
READY = web.AppKey("ready", asyncio.Event)
