"""Lose nothing: a crash, a storage outage and a stop under load.

Each test runs a real `logd serve` on the embedded engine and a sender of
numbered lines, so that what is stored can be checked line by line: over
one TCP connection, logd reads lines in order, so every line it read is
stored exactly once if and only if the stored numbers are 0..K-1 with no
repeat.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest

from tests.senders import TcpLoad, numbers
from tests.serve import LogdServer


def _stored_numbers(server: LogdServer, app: str, expect_at_least: int) -> list[int]:
    """Wait until the app's count stops growing; return the stored numbers."""
    server.wait_for(app, expect_at_least, timeout=120)
    last = -1
    while True:
        count = next(a["lines"] for a in server.apps() if a["app"] == app)
        if count == last:
            break
        last = count
        time.sleep(1.5)
    return numbers(server.logs(app, limit=100_000))


def _assert_prefix_exactly_once(stored: list[int]) -> int:
    ordered = sorted(stored)
    assert len(ordered) == len(set(ordered)), "a line was stored twice"
    assert ordered == list(range(len(ordered))), (
        f"lines missing among the first {len(ordered)}: "
        f"{sorted(set(range(len(ordered))) - set(ordered))[:10]}"
    )
    return len(ordered)


def test_kill_9_under_load_then_restart_stores_every_line_read_once(
    tmp_path: Path, app: str
) -> None:
    server = LogdServer(tmp_path)
    server.start()
    # About 20k lines a second, so the kill lands mid-stream and what is
    # stored stays within one API page.
    load = TcpLoad(server.ports.tcp, app, total=1_000_000, chunk=200, pause=0.01)
    load.start()
    server.wait_for(app, 1, timeout=60)
    time.sleep(0.3)
    assert server.process is not None
    server.process.kill()
    server.process.wait()
    server.process = None
    load.join(timeout=30)
    assert load.error is not None, "the sender finished before the kill"

    restarted = LogdServer(tmp_path)
    with restarted:
        stored = _stored_numbers(restarted, app, 1)
    kept = _assert_prefix_exactly_once(stored)
    print(f"sent {load.sent}, stored {kept}, in flight at the kill {load.sent - kept}")
    assert 0 < kept <= load.sent
    assert kept < 100_000, "more lines than one page shows; slow the sender"


def test_storage_outage_spools_everything_and_a_restart_replays_it(
    tmp_path: Path, app: str
) -> None:
    closed_port = "http://127.0.0.1:9"
    outage = LogdServer(
        tmp_path,
        extra_args=("--clickhouse", closed_port, "--drain-timeout", "1s"),
    )
    with outage:
        load = TcpLoad(outage.ports.tcp, app, total=50_000, chunk=1000, pause=0.001)
        load.start()
        load.join(timeout=60)
        assert load.sent == 50_000
        deadline = time.monotonic() + 30
        while outage.metric_sum("logd_lines_received_total") < 50_000:
            assert time.monotonic() < deadline, "logd did not read every line"
            time.sleep(0.2)
        assert outage.metric_sum("logd_spool_bytes") > 50_000 * 40
        assert outage.metric_sum("logd_spool_age_seconds") > 0
        assert outage.metric_sum("logd_writer_events_total") == outage.metric_sum(
            'logd_writer_events_total{event="insert_errors"}'
        )
        assert outage.process is not None
        rss_kb = _rss_kb(outage.process.pid)
        print(f"RSS with 50k lines spooled and storage down: {rss_kb // 1024} MiB")
        assert rss_kb < 400 * 1024

    with LogdServer(tmp_path) as embedded:
        kept = _assert_prefix_exactly_once(_stored_numbers(embedded, app, 50_000))
    assert kept == 50_000


def test_sigterm_under_load_stores_every_line_it_read(tmp_path: Path, app: str) -> None:
    server = LogdServer(tmp_path)
    server.start()
    load = TcpLoad(server.ports.tcp, app, total=1_000_000, chunk=200, pause=0.01)
    load.start()
    server.wait_for(app, 1, timeout=60)
    server.stop()
    load.stop()
    said = re.search(r"stopped: (\d+) lines received, (\d+) inserted", server.stderr())
    assert said, server.stderr()
    received = int(said.group(1))

    with LogdServer(tmp_path) as restarted:
        kept = _assert_prefix_exactly_once(_stored_numbers(restarted, app, 1))
    print(f"sent {load.sent}, logd read {received} before it stopped, stored {kept}")
    assert kept == received
    assert kept < 100_000, "more lines than one page shows; slow the sender"


def _rss_kb(pid: int) -> int:
    for row in Path(f"/proc/{pid}/status").read_text().splitlines():
        if row.startswith("VmRSS:"):
            return int(row.split()[1])
    pytest.fail(f"no VmRSS for pid {pid}")
