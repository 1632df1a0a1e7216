"""Typed keys for the state the HTTP application shares with its handlers."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

from aiohttp import web

from logd.hub import Hub
from logd.metrics import Metrics
from logd.store import Store

if TYPE_CHECKING:
    # query.access reads TOKENS, so it cannot be imported here at run time.
    from query.access import Tokens

STORE = web.AppKey("store", Store)
METRICS = web.AppKey("metrics", Metrics)
HUB = web.AppKey("hub", Hub)
# Set once every listener accepts lines and storage is open.
READY = web.AppKey("ready", asyncio.Event)
# Absent when logd runs without a tokens file: every reader sees every app.
TOKENS: web.AppKey[Tokens] = web.AppKey("tokens")
# The highest sequence storage is known to hold (0: not known), from the
# writer that inserts; absent when nothing in this process inserts.
STORED_SEQ: web.AppKey[Callable[[], int]] = web.AppKey("stored_seq")
