"""`logd apps`, `logd query` and `logd tail` as subprocesses against a real server."""

from __future__ import annotations

import json
import os
import pty
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import IO

import pytest

from logd.client import PAGE
from tests.senders import numbered
from tests.serve import HOST, REPO, LogdServer, free_ports

StartLogd = Callable[..., LogdServer]
PATIENCE = 30.0
ESC = "\x1b"


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("LOGD_") and k != "NO_COLOR"
    }
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
    )
    env.update(extra)
    return env


def _logd(
    server: LogdServer, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    """Run `python -m logd ARGS --url <server>` with stdout and stderr piped."""
    return subprocess.run(
        [sys.executable, "-m", "logd", *args, "--url", server.base_url],
        env=_env(**env),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )


def _send(server: LogdServer, payload: bytes) -> None:
    with socket.create_connection((HOST, server.ports.tcp), timeout=PATIENCE) as sock:
        sock.sendall(payload)


def _frame(app: str, severity: int, message: str) -> bytes:
    return f"<{8 + severity}>1 - web-1 {app} - - - {message}\n".encode()


def _store(server: LogdServer, app: str, payload: bytes, count: int) -> None:
    _send(server, payload)
    server.wait_for(app, count)


# ---------------------------------------------------------------- apps


def test_apps_lists_an_app_with_its_line_count(
    logd_server: LogdServer, app: str
) -> None:
    _store(logd_server, app, numbered(app, 0, 3), 3)
    result = _logd(logd_server, "apps")
    assert result.returncode == 0, result.stderr
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["APP", "LINES", "LAST"]
    [mine] = [row.split() for row in rows if row.startswith(app + " ")]
    assert mine[1] == "3"
    assert mine[2].endswith("Z")
    assert ESC not in result.stdout


def test_apps_json_prints_one_api_object_a_row(
    logd_server: LogdServer, app: str
) -> None:
    _store(logd_server, app, numbered(app, 0, 2), 2)
    result = _logd(logd_server, "apps", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(row) for row in result.stdout.splitlines()]
    assert {"app": app, "lines": 2} == {
        k: v for k, v in next(r for r in rows if r["app"] == app).items() if k != "last"
    }


# ---------------------------------------------------------------- query


def test_query_prints_lines_oldest_first_in_plain_text_in_a_pipe(
    logd_server: LogdServer, app: str
) -> None:
    payload = _frame(app, 3, "disk full") + _frame(app, 6, "request served")
    _store(logd_server, app, payload, 2)
    result = _logd(logd_server, "query", app)
    assert result.returncode == 0, result.stderr
    first, second = result.stdout.splitlines()
    assert first.split()[2:] == ["err", app, "disk", "full"]
    assert second.split()[2:] == ["info", app, "request", "served"]
    assert ESC not in result.stdout


def test_query_json_prints_the_api_line_objects(
    logd_server: LogdServer, app: str
) -> None:
    _store(logd_server, app, numbered(app, 0, 3), 3)
    result = _logd(logd_server, "query", app, "--json")
    assert result.returncode == 0, result.stderr
    printed = [json.loads(row) for row in result.stdout.splitlines()]
    stored = logd_server.logs(app)
    assert printed == list(reversed(stored))


def test_query_follows_next_cursors_past_one_page(
    logd_server: LogdServer, app: str
) -> None:
    total = PAGE + 700
    _store(logd_server, app, numbered(app, 0, total), total)
    wanted = PAGE + 200
    result = _logd(logd_server, "query", app, "--limit", str(wanted))
    assert result.returncode == 0, result.stderr
    shown = [row.rsplit("n=", 1)[1] for row in result.stdout.splitlines()]
    assert shown == [f"{n:08d}" for n in range(total - wanted, total)]


def test_query_grep_prints_only_matching_lines(
    logd_server: LogdServer, app: str
) -> None:
    payload = _frame(app, 6, "payment accepted") + _frame(app, 6, "cart viewed")
    _store(logd_server, app, payload, 2)
    result = _logd(logd_server, "query", app, "--grep", "payment")
    assert result.returncode == 0, result.stderr
    [row] = result.stdout.splitlines()
    assert row.endswith("payment accepted")


def test_query_escapes_control_characters_in_messages(
    logd_server: LogdServer, app: str
) -> None:
    _store(logd_server, app, _frame(app, 6, "red \x1b[31mtext"), 1)
    result = _logd(logd_server, "query", app)
    assert result.returncode == 0, result.stderr
    assert result.stdout.rstrip("\n").endswith("red \\x1b[31mtext")
    assert ESC not in result.stdout


def _on_a_terminal(server: LogdServer, *args: str, **env: str) -> str:
    """Run `logd ARGS` with stdout on a pseudo-terminal; return what it printed."""
    main, child = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "logd", *args, "--url", server.base_url],
        env=_env(**env),
        stdout=child,
        stderr=subprocess.PIPE,
    )
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    assert process.wait(timeout=PATIENCE) == 0
    return b"".join(chunks).decode()


def test_query_colors_severities_on_a_terminal_unless_no_color(
    logd_server: LogdServer, app: str
) -> None:
    _store(logd_server, app, _frame(app, 3, "disk full"), 1)
    colored = _on_a_terminal(logd_server, "query", app)
    plain = _on_a_terminal(logd_server, "query", app, NO_COLOR="1")
    assert f"{ESC}[31merr" in colored
    assert ESC not in plain
    assert "err" in plain and "disk full" in plain


def test_query_names_a_bad_parameter_and_fails(logd_server: LogdServer) -> None:
    result = _logd(logd_server, "query", "any", "--since", "yesterday")
    assert result.returncode == 1
    assert "since" in result.stderr
    assert "400" in result.stderr


def test_a_server_that_is_not_there_is_reported() -> None:
    ports = free_ports()
    result = subprocess.run(
        [sys.executable, "-m", "logd", "apps"],
        env=_env(LOGD_URL=f"http://{HOST}:{ports.http}"),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert result.returncode == 1
    assert "cannot reach" in result.stderr


# ---------------------------------------------------------------- tail


class TailProcess:
    """`logd tail` in the background, its stdout read line by line."""

    def __init__(self, server: LogdServer, *args: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "logd", "tail", *args, "--url", server.base_url],
            env=_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.rows: list[str] = []
        self._new = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        stdout: IO[str] | None = self.process.stdout
        assert stdout is not None
        for row in stdout:
            with self._new:
                self.rows.append(row.rstrip("\n"))
                self._new.notify_all()

    def wait_rows(self, count: int, timeout: float = PATIENCE) -> list[str]:
        """Wait until `count` rows were printed; return every row so far."""
        return self.wait_until(lambda rows: len(rows) >= count, timeout)

    def wait_until(
        self, done: Callable[[list[str]], bool], timeout: float = PATIENCE
    ) -> list[str]:
        """Wait until the rows printed so far satisfy `done`; return them."""
        with self._new:
            self._new.wait_for(lambda: done(self.rows), timeout)
            return list(self.rows)

    def finish(self) -> tuple[int, str]:
        code = self.process.wait(timeout=PATIENCE)
        self._reader.join(timeout=PATIENCE)
        assert self.process.stderr is not None
        return code, self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def tails() -> Iterator[list[TailProcess]]:
    started: list[TailProcess] = []
    yield started
    for tail in started:
        tail.kill()


def _start_tail(
    tails: list[TailProcess], server: LogdServer, app: str, *args: str
) -> TailProcess:
    """Start `logd tail APP` and return once it prints what is sent to APP."""
    tail = TailProcess(server, app, *args)
    tails.append(tail)
    deadline = time.monotonic() + PATIENCE
    while not tail.rows:
        assert time.monotonic() < deadline, "logd tail printed nothing"
        assert tail.process.poll() is None, tail.finish()
        _send(server, _frame(app, 7, "probe"))
        tail.wait_rows(1, timeout=0.5)
    return tail


def test_tail_prints_lines_as_they_arrive_until_interrupted(
    logd_server: LogdServer, app: str, tails: list[TailProcess]
) -> None:
    tail = _start_tail(tails, logd_server, app)
    _send(logd_server, numbered(app, 0, 5))
    rows = tail.wait_until(lambda rows: rows[-1].endswith("n=00000004"))
    tail.process.send_signal(signal.SIGINT)
    code, _ = tail.finish()
    shown = [row.rsplit(" ", 1)[1] for row in rows if "n=" in row]
    assert shown == [f"n={n:08d}" for n in range(5)]
    assert code == 130
    assert all(ESC not in row for row in rows)


def test_tail_grep_prints_only_matching_lines(
    logd_server: LogdServer, app: str, tails: list[TailProcess]
) -> None:
    tail = _start_tail(tails, logd_server, app, "--grep", "probe")
    _send(logd_server, _frame(app, 6, "other") + _frame(app, 6, "probe last"))
    rows = tail.wait_until(lambda rows: rows[-1].endswith("probe last"))
    assert rows[-1].endswith("probe last")
    assert not any(row.endswith("other") for row in rows)


def test_tail_reports_how_to_resume_when_the_server_stops(
    start_logd: StartLogd, tails: list[TailProcess]
) -> None:
    server = start_logd()
    app = "client-tail-stop"
    tail = _start_tail(tails, server, app, "--json")
    server.stop()
    code, stderr = tail.finish()
    assert code == 0
    assert "shutting down" in stderr
    last = json.loads(tail.rows[-1])
    assert last["message"] == "probe"
    assert "--cursor " in stderr
