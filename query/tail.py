"""The live tail: `GET /api/v1/tail`, a websocket of lines as they arrive.

A tail takes the filters of /api/v1/logs and subscribes to the hub, which
hands it lines straight from the ingest path. Every message is a JSON
object with a "type":

- "line": the line exactly as /api/v1/logs shows it (its "cursor" included);
- "gap": the subscriber fell behind and its buffer overflowed: "skipped"
  lines were left out; "cursor" lies just before the first of them and
  "last_cursor" on the last (fetch them from /api/v1/logs, or resume);
- "heartbeat": sent when nothing else was for `heartbeat` seconds;
- "error": the tail cannot go on; the socket closes after it.

Resume: a client passes `cursor` (of the last line it saw) and gets every
matching line that arrived after it: first from storage, then live, with no
gap and no duplicate. The tail orders lines by arrival (their sequence), so
only the cursor's sequence counts. On shutdown the server sends what it holds
and closes with 1001 (going away).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import WSCloseCode, WSMsgType, web

from logd import log
from logd.errors import StorageError
from logd.hub import Gap, Hub, Subscription
from logd.line import Line
from logd.store import Store
from query import access, api, cursor, filters
from query.keys import HUB, STORE

routes = web.RouteTableDef()

DEFAULT_HEARTBEAT = 10
MAX_HEARTBEAT = 3600
# Websocket pings find dead peers; aiohttp closes one that does not answer
# within half this time. Generous, so a slow reader is not taken for dead.
PING_SECONDS = 30.0
# Lines sent between two yields to the event loop, and per history page.
_CHUNK = 500
_HISTORY_PAGE = 5000
# How long a resume waits for storage to hold every line published before
# the tail subscribed (batches flush about once a second).
_CATCH_UP_SECONDS = 30.0
_CATCH_UP_POLL = 0.05
# How long a closing tail may take to send what it holds to its peer.
_DRAIN_SECONDS = 3.0
_GOING_AWAY = (WSCloseCode.GOING_AWAY.value, b"logd is shutting down")

Matcher = Callable[[Line], bool]
_TAIL_ONLY = ("cursor", "heartbeat", "buffer")
_LINE_PREFIX = b'{"type":"line",'
# Linux only; elsewhere each frame is its own segment.
_CORK: int | None = getattr(socket, "TCP_CORK", None)


@dataclass(slots=True)
class _Request:
    """What a tail asked for, read and checked before the upgrade."""

    matches: Matcher
    where: str
    params: dict[str, Any]
    after: int | None
    heartbeat: float
    buffer: int | None


@routes.get("/api/v1/tail")
async def tail(request: web.Request) -> web.WebSocketResponse:
    """Stream matching lines as they arrive, after history when resuming."""
    # Parameters and access first, so a bad request is a plain 400/401/403.
    asked = _read_request(request)
    hub = request.app[HUB]
    ws = web.WebSocketResponse(
        heartbeat=PING_SECONDS, compress=False, max_msg_size=65536
    )
    # Subscribe before the upgrade: a line that reaches logd after the
    # client saw its websocket open is one the client gets.
    with hub.subscribe(asked.matches, asked.buffer) as subscription:
        await ws.prepare(request)
        stream = _Stream(ws, subscription, hub, request.app[STORE], asked)
        await stream.run()
    return ws


def _read_request(request: web.Request) -> _Request:
    query = request.query
    allowed = access.allowed_apps(request)
    wanted = access.scoped(filters.from_query(query, accept=_TAIL_ONLY), allowed)
    where, params = wanted.where()
    after = None
    if "cursor" in query:
        after = cursor.decode("cursor", query["cursor"])[1]
    heartbeat = float(DEFAULT_HEARTBEAT)
    if "heartbeat" in query:
        heartbeat = filters.parse_int("heartbeat", query["heartbeat"], 1, MAX_HEARTBEAT)
    buffer = None
    if "buffer" in query:
        limit = request.app[HUB].buffer
        buffer = filters.parse_int("buffer", query["buffer"], 1, limit)
    return _Request(wanted.matches, where, params, after, heartbeat, buffer)


class _Stream:
    """One tail connection: history, then live lines, until either side ends."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        subscription: Subscription,
        hub: Hub,
        store: Store,
        asked: _Request,
    ) -> None:
        self.ws = ws
        self.subscription = subscription
        self.hub = hub
        self.store = store
        self.asked = asked
        # The newest sequence sent; live lines at or before it are not sent.
        self.sent_seq = asked.after if asked.after is not None else 0

    async def run(self) -> None:
        """Send until the peer leaves or the hub closes; then close the socket."""
        reader = asyncio.create_task(self._read())
        sender = asyncio.create_task(self._deliver())
        deadline = asyncio.create_task(self._shutdown_deadline())
        tasks = (reader, sender, deadline)
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
        # Close with nobody reading, so the close handshake can complete.
        closing = _outcome(sender)
        if closing is not None:
            await self._close(*closing)
        elif deadline.done() and not deadline.cancelled():
            self._abort()

    async def _read(self) -> None:
        # Reading is what answers pings and notices the peer's close frame;
        # the tail takes no messages from its client.
        async for _message in self.ws:
            pass

    async def _shutdown_deadline(self) -> None:
        # A peer that reads nothing must not hold up the server's shutdown.
        await self.hub.wait_closing()
        await asyncio.sleep(_DRAIN_SECONDS)

    async def _deliver(self) -> tuple[int, bytes] | None:
        """Send history and live lines; return how to close, None if gone."""
        try:
            if self.asked.after is not None:
                failed = await self._history()
                if failed is not None:
                    return failed
            await self._live()
            if self.subscription.failed:
                return await self._fail("filter failed", WSCloseCode.INTERNAL_ERROR)
        except (ConnectionError, RuntimeError) as exc:
            # The peer went away mid-send; the reader notices it too.
            log.tail.debug("tail peer gone: %s", exc)
            return None
        return _GOING_AWAY

    async def _live(self) -> None:
        subscription = self.subscription
        while True:
            if not await subscription.wait(self.asked.heartbeat):
                await self._send_json({"type": "heartbeat", "time": _now()})
                continue
            gap, lines = subscription.take(_CHUNK)
            with self._corked():
                if gap is not None:
                    await self._send_gap(gap)
                for line in lines:
                    if line.seq > self.sent_seq:
                        await self._send_line(line)
            if subscription.closing and not lines and gap is None:
                return
            # Let ingest run between chunks when a reader is far behind.
            await asyncio.sleep(0)

    async def _history(self) -> tuple[int, bytes] | None:
        """Send stored lines after the cursor; return how to close on failure."""
        through = self.subscription.after_seq
        if self.sent_seq >= through:
            return None
        try:
            failed = await self._catch_up(through)
            if failed is not None:
                return failed
            while await self._history_page(through):
                pass
        except StorageError as exc:
            log.tail.error("tail history failed: %s", exc)
            return await self._fail("storage unavailable", WSCloseCode.INTERNAL_ERROR)
        return None

    async def _catch_up(self, through: int) -> tuple[int, bytes] | None:
        """Wait until storage holds every line published up to `through`.

        The writer inserts batches in sequence order, so once the line with
        sequence `through` is stored, so is everything before it.
        """
        deadline = time.monotonic() + _CATCH_UP_SECONDS
        sql = "SELECT count() FROM logs WHERE seq = {seq:UInt64}"
        while not self.hub.closing:
            rows = await asyncio.to_thread(self.store.rows, sql, {"seq": through})
            if rows[0][0]:
                return None
            if time.monotonic() > deadline:
                return await self._fail(
                    "storage is behind the live stream; resume later",
                    WSCloseCode.TRY_AGAIN_LATER,
                )
            await asyncio.sleep(_CATCH_UP_POLL)
        return _GOING_AWAY

    async def _history_page(self, through: int) -> bool:
        """Send one page of stored lines; True when there may be more."""
        params = dict(self.asked.params)
        params.update(t_after=self.sent_seq, t_through=through, t_page=_HISTORY_PAGE)
        sql = (
            f"SELECT {api.LINE_COLUMNS}, {cursor.SQL} "
            f"FROM logs WHERE ({self.asked.where}) "
            "AND seq > {t_after:UInt64} AND seq <= {t_through:UInt64} "
            "ORDER BY seq LIMIT {t_page:UInt32}"
        )
        body = await asyncio.to_thread(self.store.json_rows, sql, params)
        rows = body.splitlines()
        with self._corked():
            for row in rows:
                # The engine's JSON of the line, with the message type put first.
                await self._send(_LINE_PREFIX + row[1:])
        if rows:
            self.sent_seq = orjson.loads(rows[-1])["seq"]
        return len(rows) == _HISTORY_PAGE

    async def _send_line(self, line: Line) -> None:
        await self._send_json({"type": "line", **line_object(line)})
        self.sent_seq = line.seq

    async def _send_gap(self, gap: Gap) -> None:
        await self._send_json(gap_message(gap))

    async def _send_json(self, message: dict[str, Any]) -> None:
        await self._send(orjson.dumps(message))

    async def _send(self, message: bytes) -> None:
        await self.ws.send_frame(message, WSMsgType.TEXT)

    @contextlib.contextmanager
    def _corked(self) -> Iterator[None]:
        """Hold small frames in the kernel until the chunk is written.

        One message a line means one small TCP segment a line otherwise,
        and on loopback each costs the receiver's work too.
        """
        sock = self.ws.get_extra_info("socket")
        corked = False
        if sock is not None and _CORK is not None:
            # A Unix socket refuses it; its frames then go out one by one.
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, _CORK, 1)
                corked = True
        try:
            yield
        finally:
            if corked:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, _CORK, 0)

    async def _fail(self, reason: str, code: int) -> tuple[int, bytes]:
        await self._send_json({"type": "error", "error": reason})
        return code, reason.encode()

    async def _close(self, code: int, reason: bytes) -> None:
        # A peer that reads nothing cannot take the close frame either.
        try:
            async with asyncio.timeout(_DRAIN_SECONDS):
                await self.ws.close(code=code, message=reason)
        except TimeoutError:
            self._abort()

    def _abort(self) -> None:
        transport = self.ws.get_extra_info("transport")
        if transport is not None:
            transport.abort()


def _outcome(
    sender: asyncio.Task[tuple[int, bytes] | None],
) -> tuple[int, bytes] | None:
    if not sender.done() or sender.cancelled():
        return None
    error = sender.exception()
    if error is not None:
        log.tail.error("tail failed", exc_info=error)
        return WSCloseCode.INTERNAL_ERROR.value, b"internal error"
    return sender.result()


def gap_message(gap: Gap) -> dict[str, Any]:
    """The "gap" message: how many lines were skipped, and where they lie.

    "cursor" sorts just before the first skipped line, so reading forward
    from it (or resuming a tail from it) starts with that line.
    """
    return {
        "type": "gap",
        "skipped": gap.skipped,
        "cursor": cursor.encode(gap.first_ts, gap.first_seq - 1),
        "last_cursor": cursor.encode(gap.last_ts, gap.last_seq),
        "first_ts": api.rfc3339(gap.first_ts),
        "last_ts": api.rfc3339(gap.last_ts),
    }


def line_object(line: Line) -> dict[str, Any]:
    """A live line in the shape /api/v1/logs gives a stored one."""
    return {
        "ts": _rfc3339(line.ts),
        "received": _rfc3339(line.received),
        "seq": line.seq,
        "app": line.app,
        "service": line.service,
        "container": line.container,
        "host": line.host,
        "facility": line.facility,
        "severity": line.severity,
        "app_name": line.app_name,
        "procid": line.procid,
        "msgid": line.msgid,
        "message": line.message,
        "structured_data": line.structured_data,
        "labels": line.labels,
        "source": line.source,
        "parse_error": line.parse_error,
        "invalid_utf8": line.invalid_utf8,
        "truncated": line.truncated,
        "raw": base64.b64encode(line.raw).decode("ascii") if line.raw else "",
        "cursor": cursor.encode(line.ts, line.seq),
    }


def _rfc3339(micros: int) -> str:
    # api.rfc3339 with the second cached: lines arriving together share it,
    # and formatting it is most of the cost of a live line.
    seconds, fraction = divmod(micros, 1_000_000)
    return f"{_second(seconds)}.{fraction:06d}Z"


@functools.lru_cache(maxsize=64)
def _second(seconds: int) -> str:
    return api.rfc3339(seconds * 1_000_000)[:19]


def _now() -> str:
    return api.rfc3339(time.time_ns() // 1000)
