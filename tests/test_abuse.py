"""Hostile input and abuse on the listeners, against a real `logd serve`.

Each case must be handled without harming other senders, and counted in
/metrics with its reason.
"""

from __future__ import annotations

import socket
import ssl
import time
from pathlib import Path

from tests.senders import TcpLoad, numbers
from tests.serve import LogdServer, TlsFiles


def _wait_closed_by_logd(sock: socket.socket) -> None:
    """Read until logd closes the connection; a timeout fails the test."""
    sock.settimeout(10)
    try:
        while sock.recv(4096):
            pass
    except ConnectionResetError:
        pass


def _wait_metric(server: LogdServer, key: str, at_least: float) -> float:
    deadline = time.monotonic() + 30
    while True:
        value = server.metrics().get(key, 0.0)
        if value >= at_least or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_idle_crowd_slowloris_and_oversize_frames_do_not_cost_a_normal_sender(
    tmp_path: Path, app: str
) -> None:
    args = ("--max-frame", "1024", "--frame-timeout", "2s")
    with LogdServer(tmp_path, extra_args=args) as server:
        port = server.ports.tcp
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(1000)]
        slow = socket.create_connection(("127.0.0.1", port))
        slow.sendall(b"<14>1 - h slowloris - - - never end")
        huge = socket.create_connection(("127.0.0.1", port))
        huge.sendall(
            b"<14>1 - h " + app.encode() + b"-huge - - - " + b"x" * 5000 + b"\n"
        )

        load = TcpLoad(port, app, total=20_000, chunk=200, pause=0.002)
        load.start()
        closed_by_logd = False
        for _ in range(40):
            # Keep the slowloris dripping, never finishing a frame, until
            # logd closes it.
            try:
                slow.sendall(b".")
            except (BrokenPipeError, ConnectionResetError):
                closed_by_logd = True
                break
            time.sleep(0.25)
        assert closed_by_logd
        load.join(timeout=60)
        assert load.error is None and load.sent == 20_000

        lines = server.wait_for(app, 20_000, timeout=60)
        assert sorted(numbers(lines)) == list(range(20_000))
        [cut] = server.wait_for(f"{app}-huge", 1)
        assert cut["truncated"] is True
        assert len(cut["message"]) < 1024

        metrics = server.metrics()
        assert metrics['logd_source_open_connections{listener="tcp"}'] >= 1000
        assert (
            _wait_metric(
                server,
                'logd_source_refused_total{listener="tcp",reason="frame_timeout"}',
                1,
            )
            == 1
        )
        # The slowloris's unfinished frame is stored, not lost.
        assert server.wait_for("slowloris", 1)[0]["message"].startswith("never end")
        for sock in [*idle, slow, huge]:
            sock.close()


def test_idle_connections_are_closed_after_the_idle_timeout(tmp_path: Path) -> None:
    with LogdServer(tmp_path, extra_args=("--idle-timeout", "2s")) as server:
        sock = socket.create_connection(("127.0.0.1", server.ports.tcp))
        sock.settimeout(10)
        assert sock.recv(1) == b""  # closed by logd
        key = 'logd_source_refused_total{listener="tcp",reason="idle"}'
        assert _wait_metric(server, key, 1) == 1


def test_connections_past_the_limit_are_refused_and_counted(
    tmp_path: Path, app: str
) -> None:
    with LogdServer(tmp_path, extra_args=("--max-connections", "5")) as server:
        held = [
            socket.create_connection(("127.0.0.1", server.ports.tcp)) for _ in range(5)
        ]
        key = 'logd_source_open_connections{listener="tcp"}'
        assert _wait_metric(server, key, 5) == 5
        extra = socket.create_connection(("127.0.0.1", server.ports.tcp))
        _wait_closed_by_logd(extra)
        refused = 'logd_source_refused_total{listener="tcp",reason="max_connections"}'
        assert _wait_metric(server, refused, 1) == 1
        held[0].sendall(b"<14>1 - h " + app.encode() + b" - - - still served\n")
        assert server.wait_for(app, 1)[0]["message"] == "still served"
        for sock in [*held, extra]:
            sock.close()


def test_garbage_and_half_frames_are_stored_flagged_and_others_unharmed(
    tmp_path: Path, app: str
) -> None:
    with LogdServer(tmp_path) as server:
        port = server.ports.tcp
        with socket.create_connection(("127.0.0.1", port)) as bad:
            bad.sendall(b"\x00\xff\xfe garbage \x80\n<99999>no\n")
        with socket.create_connection(("127.0.0.1", port)) as half:
            half.sendall(b"120 <14>1 - h " + app.encode() + b" - - - half of it")
        with socket.create_connection(("127.0.0.1", port)) as good:
            good.sendall(b"<14>1 - h " + app.encode() + b" - - - fine\n")
        lines = server.wait_for(app, 2)
        by_message = {ln["message"]: ln for ln in lines}
        assert by_message["fine"]["parse_error"] == ""
        assert by_message["half of it"]["truncated"] is True
        unknown = server.wait_for("unknown", 2)
        assert all(ln["parse_error"] for ln in unknown)
        assert any(ln["invalid_utf8"] for ln in unknown)
        assert server.metrics()['logd_lines_malformed_total{listener="tcp"}'] == 2


def test_a_failed_tls_handshake_is_counted_and_tls_keeps_serving(
    tmp_path: Path, tls_files: TlsFiles, app: str
) -> None:
    with LogdServer(tmp_path, tls=tls_files) as server:
        with socket.create_connection(("127.0.0.1", server.ports.tls)) as plain:
            plain.sendall(b"<14>1 - h not-tls - - - plain text on the TLS port\n")
            _wait_closed_by_logd(plain)
        key = 'logd_source_refused_total{listener="tls",reason="tls_handshake"}'
        assert _wait_metric(server, key, 1) == 1

        context = ssl.create_default_context(cafile=str(tls_files.ca))
        with (
            socket.create_connection(("127.0.0.1", server.ports.tls)) as raw,
            context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            tls.sendall(b"<14>1 - h " + app.encode() + b" - - - over tls\n")
        assert server.wait_for(app, 1)[0]["message"] == "over tls"


def test_empty_datagrams_are_no_lines(tmp_path: Path, app: str) -> None:
    with LogdServer(tmp_path) as server:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            for data in (b"", b"\n", b"\r\n\x00"):
                udp.sendto(data, ("127.0.0.1", server.ports.udp))
            udp.sendto(
                f"<14>1 - h {app} - - - real\n".encode(),
                ("127.0.0.1", server.ports.udp),
            )
        assert server.wait_for(app, 1)[0]["message"] == "real"
        key = 'logd_lines_received_total{listener="udp"}'
        assert server.metrics()[key] == 1
