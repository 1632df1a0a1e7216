"""The query API on a real aiohttp server over the real engine."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from aiohttp.test_utils import TestClient, TestServer

from logd.batch import encode
from logd.line import Line
from logd.metrics import Metrics
from logd.store import Store
from query import app as http_app

HOUR = 3600 * 1_000_000


@pytest.fixture
async def client(store: Store) -> AsyncIterator[TestClient]:  # type: ignore[type-arg]
    ready = asyncio.Event()
    ready.set()
    server = TestServer(http_app.build(store, Metrics(), ready))
    async with TestClient(server) as test_client:
        yield test_client


def _store_lines(store: Store, app: str, times: list[int]) -> None:
    lines = [
        Line(
            ts=t,
            received=t,
            app=app,
            app_name=app,
            message=f"at {i}",
            seq=t + i,
            severity=i % 8,
            host="web-1",
        )
        for i, t in enumerate(times)
    ]
    store.insert(encode(lines))


async def test_logs_are_newest_first_within_the_time_range(
    client: TestClient,
    store: Store,
    app_name: str,  # type: ignore[type-arg]
) -> None:
    now = time.time_ns() // 1000
    _store_lines(store, app_name, [now - 3 * HOUR, now - 2 * HOUR, now - 60_000_000])
    response = await client.get(
        "/api/v1/logs", params={"app": app_name, "since": "150m"}
    )
    assert response.status == 200
    lines = (await response.json())["lines"]
    assert [ln["message"] for ln in lines] == ["at 2", "at 1"]
    assert lines[0]["host"] == "web-1"
    assert lines[0]["severity"] == 2
    assert lines[0]["ts"].endswith("Z")


async def test_limit_and_until_bound_the_answer(
    client: TestClient,
    store: Store,
    app_name: str,  # type: ignore[type-arg]
) -> None:
    base = 1_750_000_000_000_000
    _store_lines(store, app_name, [base + i * 1_000_000 for i in range(10)])
    response = await client.get(
        "/api/v1/logs",
        params={"app": app_name, "until": "2025-06-15T15:06:45Z", "limit": "3"},
    )
    lines = (await response.json())["lines"]
    # until is exclusive: base + 5 s is 2025-06-15T15:06:45Z.
    assert [ln["message"] for ln in lines] == ["at 4", "at 3", "at 2"]


async def test_apps_lists_counts_and_newest_time(
    client: TestClient,
    store: Store,
    app_name: str,  # type: ignore[type-arg]
) -> None:
    _store_lines(store, app_name, [1_750_000_000_000_000, 1_750_000_001_000_000])
    apps = (await (await client.get("/api/v1/apps")).json())["apps"]
    [mine] = [a for a in apps if a["app"] == app_name]
    assert mine == {"app": app_name, "lines": 2, "last": "2025-06-15T15:06:41.000000Z"}


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("since", "yesterday"),
        ("until", "2026-13-45"),
        ("limit", "0"),
        ("limit", "-1"),
        ("limit", "1e9"),
        ("limit", "100001"),
        ("since", "'; DROP TABLE logs; --"),
        ("app", ","),
    ],
)
async def test_bad_parameters_get_400_naming_the_parameter(
    client: TestClient,
    param: str,
    value: str,  # type: ignore[type-arg]
) -> None:
    response = await client.get("/api/v1/logs", params={param: value})
    assert response.status == 400
    body = await response.json()
    assert body["parameter"] == param
    assert param in body["error"]


async def test_sql_in_an_app_name_is_only_ever_a_value(
    client: TestClient,
    store: Store,  # type: ignore[type-arg]
) -> None:
    hostile = "x' OR 1=1 --"
    _store_lines(store, hostile, [1_750_000_000_000_000])
    response = await client.get("/api/v1/logs", params={"app": hostile})
    assert [ln["app"] for ln in (await response.json())["lines"]] == [hostile]
    assert store.rows("SELECT count() > 0 FROM logs")[0][0]


async def test_healthz_and_metrics_answer(client: TestClient) -> None:  # type: ignore[type-arg]
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
