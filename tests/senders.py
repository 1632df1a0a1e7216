"""Plain socket senders for load in end-to-end tests: numbered lines."""

from __future__ import annotations

import re
import socket
import threading
import time

_NUMBER = re.compile(r"n=(\d+)")


def numbered(app: str, start: int, count: int) -> bytes:
    """RFC 5424 lines `n=<number>`, newline framed."""
    return b"".join(
        b"<14>1 - loadhost %s - - - n=%08d\n" % (app.encode(), n)
        for n in range(start, start + count)
    )


def numbers(lines: list[dict[str, object]]) -> list[int]:
    """The numbers of stored lines sent by `numbered`, in stored order."""
    found = []
    for line in lines:
        match = _NUMBER.fullmatch(str(line["message"]))
        assert match, f"not a numbered line: {line['message']!r}"
        found.append(int(match.group(1)))
    return found


class TcpLoad(threading.Thread):
    """Send numbered lines over one TCP connection until told to stop.

    `sent` counts the lines the kernel accepted; the thread ends by itself
    when the connection breaks (the server died or closed it) or after
    `total` lines.
    """

    def __init__(
        self, port: int, app: str, *, total: int, chunk: int = 500, pause: float = 0.005
    ) -> None:
        super().__init__(daemon=True)
        self.port = port
        self.app = app
        self.total = total
        self.chunk = chunk
        self.pause = pause
        self.sent = 0
        self.error: OSError | None = None
        self._stop_event = threading.Event()

    def run(self) -> None:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=30) as sock:
                while self.sent < self.total and not self._stop_event.is_set():
                    count = min(self.chunk, self.total - self.sent)
                    sock.sendall(numbered(self.app, self.sent, count))
                    self.sent += count
                    time.sleep(self.pause)
        except OSError as error:
            self.error = error

    def stop(self) -> None:
        self._stop_event.set()
        self.join(timeout=30)
