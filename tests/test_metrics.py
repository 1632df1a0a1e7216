"""/metrics of a running logd, and the Metrics registry behind it."""

from __future__ import annotations

import re
import socket
import time
import urllib.request
from pathlib import Path

from logd.metrics import Metrics
from tests.serve import LogdServer


def test_counters_and_readings_are_exposed_with_their_labels() -> None:
    metrics = Metrics()
    received = metrics.counter("t_lines", "Lines", ("listener",))
    received[("tcp",)] += 3
    metrics.gauge("t_open", "Open", lambda: {("udp",): 2.0}, ("listener",))
    metrics.counter_from("t_events", "Events", lambda: {("x",): 5.0}, ("event",))
    text = metrics.exposition().decode()
    assert 't_lines_total{listener="tcp"} 3.0' in text
    assert 't_open{listener="udp"} 2.0' in text
    assert "# TYPE t_events_total counter" in text
    assert metrics.value("t_lines", ("tcp",)) == 3.0


def _scrape(server: LogdServer) -> str:
    with urllib.request.urlopen(f"{server.base_url}/metrics", timeout=10) as r:
        return r.read().decode()


def test_lines_per_app_inserts_and_the_spool_are_measured(
    tmp_path: Path, app: str
) -> None:
    with LogdServer(tmp_path) as server:
        with socket.create_connection(("127.0.0.1", server.ports.tcp)) as sock:
            for i in range(3):
                sock.sendall(f"<14>1 - h {app} - - - {i}\n".encode())
            sock.sendall(f"<14>1 - h {app}-other - - - x\n".encode())
        server.wait_for(app, 3)
        deadline = time.monotonic() + 30
        while f'logd_app_lines_total{{app="{app}-other"}} 1.0' not in _scrape(server):
            assert time.monotonic() < deadline
            time.sleep(0.2)
        text = _scrape(server)
        assert f'logd_app_lines_total{{app="{app}"}} 3.0' in text
        batch = re.search(r"^logd_insert_last_batch_lines (\S+)$", text, re.M)
        assert batch and float(batch.group(1)) >= 1
        assert re.search(r"^logd_insert_seconds_total [0-9.e-]+$", text, re.M)
        assert re.search(r"^logd_spool_age_seconds 0\.0$", text, re.M)
