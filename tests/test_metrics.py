"""/metrics of a running logd, and the Metrics registry behind it."""

from __future__ import annotations

import socket
import time
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
        other = f'logd_app_lines_total{{app="{app}-other"}}'
        while server.metrics().get(other) != 1.0:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        metrics = server.metrics()
        assert metrics[f'logd_app_lines_total{{app="{app}"}}'] == 3.0
        assert metrics["logd_insert_last_batch_lines"] >= 1
        assert metrics["logd_insert_seconds_total"] >= 0
        assert metrics["logd_spool_age_seconds"] == 0.0
