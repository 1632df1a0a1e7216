from __future__ import annotations

import logging

import pytest

from logd import log


def test_a_repeated_warning_is_logged_once_then_counted(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    monkeypatch.setattr(log.time, "monotonic", lambda: clock[0])
    caplog.set_level(logging.WARNING, logger="logd.source")
    for _ in range(5):
        log.limited(log.source, "test-key", "peer %s refused", "a")
    clock[0] += 11
    log.limited(log.source, "test-key", "peer %s refused", "b")
    assert [r.getMessage() for r in caplog.records] == [
        "peer a refused",
        "peer b refused (and 4 more like it)",
    ]
