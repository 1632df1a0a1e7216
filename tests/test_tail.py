"""The live tail, /api/v1/tail: in-process over the real engine, then on a real
server fed over syslog.

In-process tests publish to a `Hub` themselves and store lines in the session
engine, so they can place a line exactly: published, stored, or both.
Functional tests run `logd serve` and send RFC 5424 lines over TCP.
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import WSCloseCode, WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from logd.batch import encode
from logd.hub import Hub
from logd.line import Line
from logd.metrics import Metrics
from logd.store import Store
from query import access, cursor
from query import app as http_app
from tests.senders import TcpLoad, numbered, numbers
from tests.serve import HOST, LogdServer

StartLogd = Callable[..., LogdServer]
WebSocket = aiohttp.ClientWebSocketResponse
# Long enough for any step on a loaded 2-core machine; never a speed check.
PATIENCE = 30.0


# ---------------------------------------------------------------- helpers


class Lines:
    """Lines of one app with sequences no other test uses."""

    def __init__(self, app: str) -> None:
        self.app = app
        self.next_seq = time.time_ns() // 1000

    def make(self, count: int) -> list[Line]:
        made = []
        for _ in range(count):
            seq = self.next_seq
            self.next_seq += 1
            made.append(
                Line(
                    ts=seq,
                    received=seq,
                    seq=seq,
                    app=self.app,
                    app_name=self.app,
                    host="web-1",
                    severity=3,
                    message=f"line {seq}",
                    labels={"zone": "a"},
                )
            )
        return made


async def _messages(ws: WebSocket, count: int) -> list[dict[str, Any]]:
    """Read `count` messages that are not heartbeats."""
    found: list[dict[str, Any]] = []
    while len(found) < count:
        message = await ws.receive(timeout=PATIENCE)
        assert message.type is WSMsgType.TEXT, message
        event = orjson.loads(message.data)
        if event["type"] != "heartbeat":
            found.append(event)
    return found


def _kinds(events: list[dict[str, Any]]) -> list[str]:
    return [event["type"] for event in events]


def _line_seqs(events: list[dict[str, Any]]) -> list[int]:
    return [event["seq"] for event in events if event["type"] == "line"]


# ---------------------------------------------------------------- in-process


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    made = Hub(Metrics(), buffer=1000)
    yield made
    await made.close(timeout=5)


def _app(
    store: Store, hub: Hub, tokens: access.Tokens | None = None
) -> web.Application:
    ready = asyncio.Event()
    ready.set()
    return http_app.build(store, Metrics(), ready, hub=hub, tokens=tokens)


@pytest.fixture
async def client(store: Store, hub: Hub) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    async with TestClient(TestServer(_app(store, hub))) as test_client:
        yield test_client


async def test_a_live_line_looks_as_the_logs_api_shows_it_once_stored(
    client: TestClient,  # type: ignore[type-arg]
    hub: Hub,
    store: Store,
    app_name: str,
) -> None:
    [line] = Lines(app_name).make(1)
    line.raw, line.parse_error = b"\xffbad", "no PRI"
    async with client.ws_connect("/api/v1/tail", params={"app": app_name}) as ws:
        hub.publish([line])
        [event] = await _messages(ws, 1)
    store.insert(encode([line]))
    response = await client.get("/api/v1/logs", params={"app": app_name})
    [stored] = (await response.json())["lines"]
    assert event.pop("type") == "line"
    assert event == stored
    assert cursor.decode("cursor", event["cursor"]) == (line.ts, line.seq)


async def test_a_tail_gets_only_lines_matching_its_filters(
    client: TestClient,  # type: ignore[type-arg]
    hub: Hub,
    app_name: str,
) -> None:
    mine, other = Lines(app_name), Lines(app_name + "-other")
    async with client.ws_connect("/api/v1/tail", params={"app": app_name}) as ws:
        lines = mine.make(2)
        hub.publish(other.make(3) + lines[:1] + other.make(1) + lines[1:])
        events = await _messages(ws, 2)
    assert _line_seqs(events) == [line.seq for line in lines]


async def test_resume_sends_stored_then_unstored_then_live_lines_exactly_once(
    client: TestClient,  # type: ignore[type-arg]
    hub: Hub,
    store: Store,
    app_name: str,
) -> None:
    lines = Lines(app_name).make(9)
    # Lines 0-4 are stored; 5 has been published but is still in a batch.
    store.insert(encode(lines[:5]))
    hub.publish(lines[:6])
    resume_at = cursor.encode(lines[1].ts, lines[1].seq)
    params = {"app": app_name, "cursor": resume_at}
    async with client.ws_connect("/api/v1/tail", params=params) as ws:
        # Live while the tail waits for storage to catch up.
        hub.publish(lines[6:8])
        await asyncio.sleep(0.3)
        store.insert(encode(lines[5:8]))
        hub.publish(lines[8:])
        events = await _messages(ws, 7)
    assert _kinds(events) == ["line"] * 7
    assert _line_seqs(events) == [line.seq for line in lines[2:]]


async def test_resume_from_the_newest_line_goes_straight_to_live(
    client: TestClient,  # type: ignore[type-arg]
    hub: Hub,
    app_name: str,
) -> None:
    lines = Lines(app_name).make(3)
    hub.publish(lines[:2])
    params = {"app": app_name, "cursor": cursor.encode(lines[1].ts, lines[1].seq)}
    async with client.ws_connect("/api/v1/tail", params=params) as ws:
        hub.publish(lines[2:])
        events = await _messages(ws, 1)
    assert _line_seqs(events) == [lines[2].seq]


async def test_a_reader_that_stalls_gets_a_gap_with_the_exact_count_and_cursor(
    client: TestClient,  # type: ignore[type-arg]
    hub: Hub,
    store: Store,
    app_name: str,
) -> None:
    maker = Lines(app_name)
    sent: list[Line] = []
    params = {"app": app_name, "buffer": "5"}
    async with client.ws_connect("/api/v1/tail", params=params) as ws:
        # Publish while the handler cannot run: it falls behind by design.
        for _ in range(4):
            batch = maker.make(4)
            sent.extend(batch)
            hub.publish(batch)
        events = await _messages(ws, 6)
    store.insert(encode(sent))

    [gap] = [event for event in events if event["type"] == "gap"]
    assert events[0] == gap
    assert gap["skipped"] == 11
    assert _line_seqs(events) == [line.seq for line in sent[11:]]
    # The gap's cursor reads the skipped lines back from storage.
    response = await client.get(
        "/api/v1/logs",
        params={
            "app": app_name,
            "cursor": gap["cursor"],
            "direction": "forward",
            "limit": str(gap["skipped"]),
        },
    )
    fetched = (await response.json())["lines"]
    assert [line["seq"] for line in fetched] == [line.seq for line in sent[:11]]


async def test_an_idle_tail_gets_heartbeats(
    client: TestClient,  # type: ignore[type-arg]
    app_name: str,
) -> None:
    params = {"app": app_name, "heartbeat": "1"}
    async with client.ws_connect("/api/v1/tail", params=params) as ws:
        first = orjson.loads((await ws.receive(timeout=PATIENCE)).data)
        second = orjson.loads((await ws.receive(timeout=PATIENCE)).data)
    assert _kinds([first, second]) == ["heartbeat", "heartbeat"]
    assert first["time"].endswith("Z")


async def test_closing_the_hub_sends_what_is_held_then_closes_with_1001(
    client: TestClient,  # type: ignore[type-arg]
    hub: Hub,
    app_name: str,
) -> None:
    lines = Lines(app_name).make(3)
    async with client.ws_connect("/api/v1/tail", params={"app": app_name}) as ws:
        hub.publish(lines)
        await hub.close(timeout=PATIENCE)
        events = await _messages(ws, 3)
        closing = await ws.receive(timeout=PATIENCE)
    assert _line_seqs(events) == [line.seq for line in lines]
    assert closing.type is WSMsgType.CLOSE
    assert ws.close_code == WSCloseCode.GOING_AWAY
    assert hub.subscribers == 0


async def test_a_tail_that_leaves_is_unsubscribed(
    client: TestClient,  # type: ignore[type-arg]
    hub: Hub,
    app_name: str,
) -> None:
    async with client.ws_connect("/api/v1/tail", params={"app": app_name}):
        assert hub.subscribers == 1
    deadline = time.monotonic() + PATIENCE
    while hub.subscribers and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert hub.subscribers == 0


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("cursor", "not-a-cursor"),
        ("heartbeat", "0"),
        ("heartbeat", "1e9"),
        ("buffer", "0"),
        ("buffer", "1000001"),
        ("since", "'; DROP TABLE logs; --"),
    ],
)
async def test_bad_parameters_are_refused_before_the_upgrade(
    client: TestClient,  # type: ignore[type-arg]
    param: str,
    value: str,
) -> None:
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await client.ws_connect("/api/v1/tail", params={param: value})
    assert refused.value.status == 400
    response = await client.get("/api/v1/tail", params={param: value})
    assert (await response.json())["parameter"] == param


TOKEN = "t0ken-for-one-app-only"


async def test_a_token_tails_only_the_apps_it_may_read(
    store: Store, hub: Hub, app_name: str
) -> None:
    mine, other = Lines(app_name), Lines(app_name + "-other")
    tokens = access.parse(f"{TOKEN} {app_name}")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with TestClient(TestServer(_app(store, hub, tokens))) as client:
        stored = mine.make(1) + other.make(1)
        store.insert(encode(stored))
        hub.publish(stored)
        # No app named: every app the token may read, stored and live.
        params = {"cursor": cursor.encode(0, stored[0].seq - 1)}
        async with client.ws_connect(
            "/api/v1/tail", params=params, headers=headers
        ) as ws:
            live = other.make(2) + mine.make(1)
            hub.publish(live)
            events = await _messages(ws, 2)
    assert _line_seqs(events) == [stored[0].seq, live[2].seq]


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({}, 401),
        ({"Authorization": "Bearer not-a-known-token-at-all"}, 401),
        ({"Authorization": f"Bearer {TOKEN}"}, 403),
    ],
)
async def test_a_tail_without_a_token_for_its_app_is_refused(
    store: Store, hub: Hub, app_name: str, headers: dict[str, str], status: int
) -> None:
    tokens = access.parse(f"{TOKEN} {app_name}")
    async with TestClient(TestServer(_app(store, hub, tokens))) as client:
        with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
            await client.ws_connect(
                "/api/v1/tail", params={"app": app_name + "-x"}, headers=headers
            )
    assert refused.value.status == status
    assert hub.subscribers == 0


# ---------------------------------------------------------------- functional


def _send(server: LogdServer, payload: bytes) -> None:
    with socket.create_connection((HOST, server.ports.tcp), timeout=PATIENCE) as sock:
        sock.sendall(payload)


def _tail_url(server: LogdServer) -> str:
    return f"{server.base_url}/api/v1/tail"


async def test_tail_delivers_lines_before_storage_has_them(tmp_path: Path) -> None:
    app = "before-storage"
    # Batches wait a minute: anything the tail shows came from the ingest path.
    server = LogdServer(tmp_path / "logd", extra_args=("--batch-interval", "60"))
    with server:
        async with (
            aiohttp.ClientSession() as session,
            session.ws_connect(_tail_url(server), params={"app": app}) as ws,
        ):
            _send(server, numbered(app, 0, 3))
            events = await _messages(ws, 3)
            stored = server.logs(app)
    assert [event["message"] for event in events] == [
        "n=00000000",
        "n=00000001",
        "n=00000002",
    ]
    assert stored == []


async def test_resume_across_history_and_live_has_no_gap_or_duplicate(
    logd_server: LogdServer, app: str
) -> None:
    total = 4000
    load = TcpLoad(logd_server.ports.tcp, app, total=total, chunk=10, pause=0.01)
    async with aiohttp.ClientSession() as session:
        first = await _read_until(session, logd_server, app, {}, load, stop_at=600)
        # The sender goes on; lines pile up in storage, batches and the hub.
        await asyncio.sleep(1.0)
        resume = {"cursor": first[-1]["cursor"]}
        second = await _read_until(
            session, logd_server, app, resume, None, stop_at=total - 1
        )
    load.stop()
    seen = numbers(first + second)
    assert seen == list(range(total))


async def _read_until(
    session: aiohttp.ClientSession,
    server: LogdServer,
    app: str,
    extra: dict[str, str],
    start: TcpLoad | None,
    stop_at: int,
) -> list[dict[str, Any]]:
    """Tail until the line numbered `stop_at`; start `start` once subscribed."""
    params = {"app": app, **extra}
    events: list[dict[str, Any]] = []
    async with session.ws_connect(_tail_url(server), params=params) as ws:
        if start is not None:
            start.start()
        while True:
            [event] = await _messages(ws, 1)
            assert event["type"] == "line", event
            events.append(event)
            if numbers([event]) == [stop_at]:
                return events


async def test_a_slow_reader_gets_gaps_with_the_exact_skipped_count(
    logd_server: LogdServer, app: str
) -> None:
    # A small receive buffer and a small tail buffer overflow sooner.
    def small_socket(info: Any) -> socket.socket:
        sock = socket.socket(info[0], info[1], info[2])
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        return sock

    padding = "p" * 900
    skipped_before = logd_server.metric_sum("logd_tail_skipped_lines_total")
    sent = 0
    connector = aiohttp.TCPConnector(socket_factory=small_socket)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        session.ws_connect(
            _tail_url(logd_server), params={"app": app, "buffer": "50"}
        ) as ws,
    ):
        # Send without reading until logd reports that this tail skipped.
        while logd_server.metric_sum("logd_tail_skipped_lines_total") == skipped_before:
            assert sent < 100_000, "the tail never fell behind"
            payload = b"".join(
                b"<14>1 - slowhost %s - - - n=%08d %s\n"
                % (app.encode(), n, padding.encode())
                for n in range(sent, sent + 2000)
            )
            _send(logd_server, payload)
            sent += 2000
            await asyncio.to_thread(_wait_stored, logd_server, app, sent)
        received, gaps = await _read_accounting(ws, sent)

    assert gaps, "no gap message"
    assert len(received) + sum(gap["skipped"] for gap in gaps) == sent
    assert logd_server.metric_sum("logd_tail_skipped_lines_total") - skipped_before == (
        sum(gap["skipped"] for gap in gaps)
    )


def _wait_stored(server: LogdServer, app: str, count: int) -> None:
    deadline = time.monotonic() + PATIENCE
    while time.monotonic() < deadline:
        found = [a for a in server.apps() if a["app"] == app]
        if found and found[0]["lines"] >= count:
            return
        time.sleep(0.2)
    raise AssertionError(f"{count} lines of {app} not stored")


async def _read_accounting(
    ws: WebSocket, sent: int
) -> tuple[list[int], list[dict[str, Any]]]:
    """Read until every sent line is either received or inside a gap.

    Lines were sent in order, so each gap must account for exactly the
    numbers between the lines around it.
    """
    received: list[int] = []
    gaps: list[dict[str, Any]] = []
    expected = 0
    while len(received) + sum(gap["skipped"] for gap in gaps) < sent:
        [event] = await _messages(ws, 1)
        if event["type"] == "gap":
            gaps.append(event)
            expected += event["skipped"]
            continue
        number = int(event["message"].split()[0].removeprefix("n="))
        assert number == expected, f"line {number} where {expected} was due"
        received.append(number)
        expected += 1
    return received, gaps


async def test_heartbeats_reach_an_idle_tail(logd_server: LogdServer, app: str) -> None:
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            _tail_url(logd_server), params={"app": app, "heartbeat": "1"}
        ) as ws,
    ):
        message = await ws.receive(timeout=PATIENCE)
    assert orjson.loads(message.data)["type"] == "heartbeat"


async def test_sigterm_ends_a_tail_with_going_away_after_its_lines(
    start_logd: StartLogd,
) -> None:
    server = start_logd()
    app = "sigterm-tail"
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(_tail_url(server), params={"app": app}) as ws,
    ):
        _send(server, numbered(app, 0, 5))
        events = await _messages(ws, 5)
        stopping = asyncio.create_task(asyncio.to_thread(server.stop))
        closing = await ws.receive(timeout=PATIENCE)
        await stopping
    assert numbers(events) == list(range(5))
    assert closing.type is WSMsgType.CLOSE
    assert ws.close_code == WSCloseCode.GOING_AWAY
