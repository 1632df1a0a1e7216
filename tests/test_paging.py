"""Cursor paging on a real server while lines keep arriving.

50,000 lines are stored, then a sender keeps sending: new lines, and late
lines whose timestamps fall inside the range being paged. Paging backward
through the first set must return every line stored when the first page
was read exactly once, and none of what arrived after (query.cursor).
"""

from __future__ import annotations

import random
import socket
import threading
import time
from datetime import UTC, datetime
from typing import Any

from tests.conftest import StartLogd
from tests.serve import LogdServer

TOTAL = 50_000
PAGE = 1000
SPACING_US = 1000


def _stamp(micros: int) -> bytes:
    moment = datetime.fromtimestamp(micros / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ").encode()


def _frame(app: str, ts: int, message: str) -> bytes:
    return b"<14>1 %s pager %s - - - %s\n" % (
        _stamp(ts),
        app.encode(),
        message.encode(),
    )


class Sender(threading.Thread):
    """Keep sending new lines and late ones (timestamps inside `late_range`)."""

    def __init__(self, port: int, app: str, late_range: tuple[int, int]) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.app = app
        self.late_range = late_range
        self.sent = 0
        self.error: OSError | None = None
        self._stop_event = threading.Event()
        self._random = random.Random(7)

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port)) as sock:
                while not self._stop_event.wait(0.05):
                    sock.sendall(self._batch(100))
        except OSError as error:
            self.error = error

    def _batch(self, count: int) -> bytes:
        frames = []
        now = time.time_ns() // 1000
        for _ in range(count):
            if self.sent % 2:
                ts = self._random.randrange(*self.late_range)
                frames.append(_frame(self.app, ts, f"late={self.sent}"))
            else:
                frames.append(_frame(self.app, now, f"new={self.sent}"))
            self.sent += 1
        return b"".join(frames)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=10)


def _send_initial(server: LogdServer, app: str, base: int) -> None:
    body = b"".join(_frame(app, base + i * SPACING_US, f"n={i}") for i in range(TOTAL))
    with socket.create_connection(("127.0.0.1", server.ports.tcp)) as sock:
        sock.sendall(body)


def _stored(server: LogdServer, app: str) -> int:
    return sum(entry["lines"] for entry in server.apps() if entry["app"] == app)


def _wait_stored(server: LogdServer, app: str, count: int) -> None:
    deadline = time.monotonic() + 120
    while _stored(server, app) < count:
        assert time.monotonic() < deadline, f"only {_stored(server, app)} stored"
        time.sleep(0.5)


def _page(server: LogdServer, **params: Any) -> dict[str, Any]:
    page: dict[str, Any] = server.get("/api/v1/logs", limit=PAGE, **params)
    return page


def _ts_of(cursor: str) -> int:
    return int(cursor[:16], 16)


def _late_line_below(server: LogdServer, app: str, cursor: str) -> bool:
    """Tell whether a late line the paging has not reached yet is stored."""
    params = {"app": app, "q": "late", "until": _stamp(_ts_of(cursor)).decode()}
    return bool(server.get("/api/v1/logs", limit=1, **params)["lines"])


def _page_through(server: LogdServer, app: str) -> tuple[list[dict[str, Any]], str]:
    """Page to the end; halfway, wait until late lines lie ahead of the cursor."""
    page = _page(server, app=app)
    lines = list(page["lines"])
    first_next = page["next"]
    while "next" in page:
        if len(lines) == TOTAL // 2:
            deadline = time.monotonic() + 30
            while not _late_line_below(server, app, page["next"]):
                assert time.monotonic() < deadline, "no late line was stored"
                time.sleep(0.2)
        page = _page(server, app=app, cursor=page["next"])
        lines += page["lines"]
    return lines, first_next


def test_paging_50k_lines_while_ingest_goes_on_returns_each_once(
    start_logd: StartLogd,
) -> None:
    server = start_logd()
    app = "pager"
    base = time.time_ns() // 1000 - 3600 * 1_000_000
    _send_initial(server, app, base)
    _wait_stored(server, app, TOTAL)

    sender = Sender(server.ports.tcp, app, (base, base + TOTAL * SPACING_US))
    sender.start()
    try:
        paged, first_next = _page_through(server, app)
    finally:
        sender.stop()
    assert sender.error is None
    assert sender.sent > 0

    # Exactly the 50k lines, once each, newest first; nothing that arrived
    # after the first page, though late lines landed among them meanwhile.
    messages = [line["message"] for line in paged]
    assert len(messages) == len(set(messages)) == TOTAL
    assert set(messages) == {f"n={i}" for i in range(TOTAL)}
    keys = [(line["ts"], line["seq"]) for line in paged]
    assert keys == sorted(keys, reverse=True)
    snapshot = int(first_next[32:], 16)
    assert all(line["seq"] <= snapshot for line in paged)

    # A paging begun now sees the late lines too.
    _wait_stored(server, app, TOTAL + sender.sent)
    page = server.get("/api/v1/logs", app=app, q="late", limit=1)
    assert page["lines"] and page["lines"][0]["seq"] > snapshot
