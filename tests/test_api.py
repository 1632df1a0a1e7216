"""The query API on a real aiohttp server over the real engine."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logd.batch import encode
from logd.line import Line
from logd.metrics import Metrics
from logd.store import Store
from query import app as http_app
from query import cursor

HOUR = 3600 * 1_000_000
MINUTE = 60 * 1_000_000
BASE = 1_750_000_000_000_000
NDJSON = {"Accept": "application/x-ndjson"}
_seqs = itertools.count(int(time.time() * 1_000_000) - 10**12)

Client = TestClient[web.Request, web.Application]


@pytest.fixture
async def client(store: Store) -> AsyncIterator[Client]:
    ready = asyncio.Event()
    ready.set()
    server = TestServer(http_app.build(store, Metrics(), ready))
    async with TestClient(server) as test_client:
        yield test_client


def _store_lines(store: Store, app: str, times: list[int], **fields: Any) -> list[Line]:
    lines = [
        Line(
            ts=t,
            received=t,
            app=app,
            app_name=app,
            message=f"at {i}",
            seq=next(_seqs),
            severity=i % 8,
            host="web-1",
            **fields,
        )
        for i, t in enumerate(times)
    ]
    store.insert(encode(lines))
    return lines


async def _get(client: Client, path: str, **params: str) -> Any:
    response = await client.get(path, params=params)
    assert response.status == 200, await response.text()
    return await response.json()


async def _page_all(client: Client, **params: str) -> list[dict[str, Any]]:
    """Follow `next` to the end; return every line in the order served."""
    lines: list[dict[str, Any]] = []
    while True:
        body = await _get(client, "/api/v1/logs", **params)
        lines += body["lines"]
        if "next" not in body:
            return lines
        params["cursor"] = body["next"]


async def test_logs_are_newest_first_within_the_time_range(
    client: Client, store: Store, app_name: str
) -> None:
    now = time.time_ns() // 1000
    _store_lines(store, app_name, [now - 3 * HOUR, now - 2 * HOUR, now - 60_000_000])
    body = await _get(client, "/api/v1/logs", app=app_name, since="150m")
    lines = body["lines"]
    assert [ln["message"] for ln in lines] == ["at 2", "at 1"]
    assert lines[0]["host"] == "web-1"
    assert lines[0]["severity"] == 2
    assert lines[0]["ts"].endswith("Z")
    assert "next" not in body


async def test_limit_and_until_bound_the_answer(
    client: Client, store: Store, app_name: str
) -> None:
    _store_lines(store, app_name, [BASE + i * 1_000_000 for i in range(10)])
    body = await _get(
        client, "/api/v1/logs", app=app_name, until="2025-06-15T15:06:45Z", limit="3"
    )
    # until is exclusive: BASE + 5 s is 2025-06-15T15:06:45Z.
    assert [ln["message"] for ln in body["lines"]] == ["at 4", "at 3", "at 2"]
    assert "next" in body


async def test_each_line_carries_the_cursor_of_its_ts_and_seq(
    client: Client, store: Store, app_name: str
) -> None:
    [line] = _store_lines(store, app_name, [BASE + 123_456])
    [served] = (await _get(client, "/api/v1/logs", app=app_name))["lines"]
    assert served["cursor"] == cursor.encode(line.ts, line.seq)
    assert cursor.decode("cursor", served["cursor"]) == (line.ts, line.seq)


@pytest.mark.parametrize("direction", ["backward", "forward"])
async def test_paging_returns_every_line_once_in_order(
    client: Client, store: Store, app_name: str, direction: str
) -> None:
    # Pairs of lines share a timestamp, so seq has to break the ties.
    times = [BASE + (i // 2) * 1_000 for i in range(25)]
    _store_lines(store, app_name, times[:13])
    _store_lines(store, app_name, times[13:])
    lines = await _page_all(client, app=app_name, limit="4", direction=direction)
    keys = [(ln["ts"], ln["seq"]) for ln in lines]
    assert len(keys) == 25
    assert keys == sorted(keys, reverse=direction == "backward")


async def test_a_last_page_that_is_exactly_full_has_no_next(
    client: Client, store: Store, app_name: str
) -> None:
    _store_lines(store, app_name, [BASE + i for i in range(10)])
    first = await _get(client, "/api/v1/logs", app=app_name, limit="5")
    second = await _get(
        client, "/api/v1/logs", app=app_name, limit="5", cursor=first["next"]
    )
    assert len(second["lines"]) == 5
    assert "next" not in second


async def test_paging_keeps_to_what_was_stored_when_it_began(
    client: Client, store: Store, app_name: str
) -> None:
    stored = _store_lines(store, app_name, [BASE + i * MINUTE for i in range(20)])
    first = await _get(client, "/api/v1/logs", app=app_name, limit="5")

    # Newer lines, and late lines whose times fall on both sides of the
    # cursor, arrive while the reader pages.
    late = [BASE + 30 * MINUTE, BASE + 17 * MINUTE + 1, BASE + 2 * MINUTE + 1]
    _store_lines(store, app_name, late)
    params = {"app": app_name, "limit": "5", "cursor": first["next"]}
    rest = await _page_all(client, **params)

    seen = [ln["seq"] for ln in first["lines"] + rest]
    assert sorted(seen) == sorted(line.seq for line in stored)
    # A new paging sees them all.
    assert len(await _page_all(client, app=app_name, limit="7")) == 23


async def test_the_writers_stored_sequence_is_the_snapshot_of_a_new_paging(
    store: Store, app_name: str
) -> None:
    # Lines stored under a sequence the writer has not reported yet are in
    # flight as far as a paging is concerned: it starts below them.
    stored = _store_lines(store, app_name, [BASE + i for i in range(6)])
    reported = stored[3].seq
    ready = asyncio.Event()
    ready.set()
    application = http_app.build(store, Metrics(), ready, stored_seq=lambda: reported)
    async with TestClient(TestServer(application)) as writer_client:
        first = await _get(writer_client, "/api/v1/logs", app=app_name, limit="2")
        rest = await _page_all(
            writer_client, app=app_name, limit="2", cursor=first["next"]
        )

    served = [ln["seq"] for ln in first["lines"] + rest]
    assert served == [line.seq for line in reversed(stored[:4])]
    assert cursor.decode_page("cursor", first["next"]).snapshot == reported


async def test_a_line_cursor_reads_the_lines_after_it(
    client: Client, store: Store, app_name: str
) -> None:
    lines = _store_lines(store, app_name, [BASE + i for i in range(6)])
    after = cursor.encode(lines[2].ts, lines[2].seq)
    body = await _get(
        client, "/api/v1/logs", app=app_name, cursor=after, direction="forward"
    )
    assert [ln["message"] for ln in body["lines"]] == ["at 3", "at 4", "at 5"]


async def test_ndjson_streams_the_same_lines_then_next(
    client: Client, store: Store, app_name: str
) -> None:
    _store_lines(store, app_name, [BASE + i for i in range(7)])
    params = {"app": app_name, "limit": "5"}
    page = await _get(client, "/api/v1/logs", **params)
    response = await client.get("/api/v1/logs", params=params, headers=NDJSON)
    assert response.headers["Content-Type"] == "application/x-ndjson"
    objects = [orjson.loads(row) for row in (await response.read()).splitlines()]
    assert objects[:-1] == page["lines"]
    assert objects[-1] == {"next": page["next"]}


async def test_ndjson_without_more_lines_ends_with_the_last_line(
    client: Client, store: Store, app_name: str
) -> None:
    _store_lines(store, app_name, [BASE + i for i in range(3)])
    params = {"app": app_name, "limit": "3"}
    response = await client.get("/api/v1/logs", params=params, headers=NDJSON)
    objects = [orjson.loads(row) for row in (await response.read()).splitlines()]
    assert [o["message"] for o in objects] == ["at 2", "at 1", "at 0"]


async def test_ndjson_exports_take_limits_beyond_a_json_page(
    client: Client, store: Store, app_name: str
) -> None:
    _store_lines(store, app_name, [BASE + i for i in range(3)])
    params = {"app": app_name, "limit": "5000000"}
    assert (await client.get("/api/v1/logs", params=params)).status == 400
    response = await client.get("/api/v1/logs", params=params, headers=NDJSON)
    assert response.status == 200
    assert len((await response.read()).splitlines()) == 3


async def test_search_severity_label_and_field_filters_combine(
    client: Client, store: Store, app_name: str
) -> None:
    store.insert(
        encode(
            [
                Line(BASE, BASE, seq=next(_seqs), app=app_name, severity=3,
                     service="api", labels={"env": "prod"},
                     message="Payment FAILED for order 8812"),
                Line(BASE, BASE, seq=next(_seqs), app=app_name, severity=6,
                     service="api", labels={"env": "prod"},
                     message="payment failed, retrying"),
                Line(BASE, BASE, seq=next(_seqs), app=app_name, severity=3,
                     service="worker", labels={"env": "prod"},
                     message="payment failed"),
                Line(BASE, BASE, seq=next(_seqs), app=app_name, severity=3,
                     service="api", labels={"env": "dev"},
                     message="payment failed"),
            ]
        )
    )  # fmt: skip
    body = await _get(
        client,
        "/api/v1/logs",
        app=app_name,
        q="failed PAYMENT",
        severity="err",
        service="api",
        **{"label.env": "prod"},
    )
    assert [ln["message"] for ln in body["lines"]] == ["Payment FAILED for order 8812"]
    body = await _get(client, "/api/v1/logs", app=app_name, regex=r"order \d+$")
    assert len(body["lines"]) == 1
    body = await _get(client, "/api/v1/logs", app=app_name, q='"ed, ret"')
    assert [ln["severity"] for ln in body["lines"]] == [6]


async def test_histogram_counts_lines_per_interval_and_severity(
    client: Client, store: Store, app_name: str
) -> None:
    times = [BASE + 10, BASE + 20, BASE + 2 * MINUTE + 5]
    _store_lines(store, app_name, times)
    body = await _get(
        client,
        "/api/v1/histogram",
        app=app_name,
        since="2025-06-15T15:06:40Z",
        until="2025-06-15T15:09:40Z",
        step="1m",
    )
    assert body["step"] == 60
    assert body["total"] == 3
    assert [b["ts"] for b in body["buckets"]] == [
        "2025-06-15T15:06:00.000000Z",
        "2025-06-15T15:07:00.000000Z",
        "2025-06-15T15:08:00.000000Z",
        "2025-06-15T15:09:00.000000Z",
    ]
    assert [b["severity"] for b in body["buckets"]] == [
        {"emerg": 1, "alert": 1},
        {},
        {"crit": 1},
        {},
    ]


async def test_histogram_picks_a_step_when_none_is_given(
    client: Client, app_name: str
) -> None:
    body = await _get(client, "/api/v1/histogram", app=app_name, since="1d")
    assert body["step"] == 900
    assert 96 <= len(body["buckets"]) <= 97


async def test_histogram_refuses_a_range_that_ends_before_it_starts(
    client: Client,
) -> None:
    params = {"since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}
    response = await client.get("/api/v1/histogram", params=params)
    assert response.status == 400
    assert (await response.json())["parameter"] == "since"


@pytest.mark.parametrize("step", ["0", "1x", "-5", "400d", "1s"])
async def test_histogram_refuses_steps_it_cannot_use(
    client: Client, app_name: str, step: str
) -> None:
    params = {"app": app_name, "since": "30d", "step": step}
    response = await client.get("/api/v1/histogram", params=params)
    assert response.status == 400
    assert (await response.json())["parameter"] == "step"


async def test_apps_lists_counts_and_newest_time(
    client: Client, store: Store, app_name: str
) -> None:
    _store_lines(store, app_name, [1_750_000_000_000_000, 1_750_000_001_000_000])
    apps = (await _get(client, "/api/v1/apps"))["apps"]
    [mine] = [a for a in apps if a["app"] == app_name]
    assert mine == {"app": app_name, "lines": 2, "last": "2025-06-15T15:06:41.000000Z"}


async def test_labels_lists_fixed_fields_then_label_names(
    client: Client, store: Store, app_name: str
) -> None:
    _store_lines(store, app_name, [BASE], labels={"zone": "a", "com.x/y": "1"})
    body = await _get(client, "/api/v1/labels", app=app_name)
    assert body["labels"] == [
        "app",
        "service",
        "container",
        "host",
        "label.com.x/y",
        "label.zone",
    ]


async def test_values_of_fields_and_labels_are_distinct_and_sorted(
    client: Client, store: Store, app_name: str
) -> None:
    _store_lines(store, app_name, [BASE, BASE + 1], labels={"zone": "b"})
    _store_lines(store, app_name, [BASE + 2], labels={"zone": "a"}, service="api")
    zones = await _get(client, "/api/v1/labels/label.zone/values", app=app_name)
    assert zones == {"name": "label.zone", "values": ["a", "b"]}
    services = await _get(client, "/api/v1/labels/service/values", app=app_name)
    assert services["values"] == ["api"]
    response = await client.get("/api/v1/labels/message/values")
    assert response.status == 400
    assert (await response.json())["parameter"] == "name"


async def test_openapi_document_describes_every_route(client: Client) -> None:
    document = await _get(client, "/api/v1/openapi.json")
    assert document["openapi"].startswith("3.")
    assert set(document["paths"]) >= {
        "/api/v1/logs",
        "/api/v1/histogram",
        "/api/v1/apps",
        "/api/v1/labels",
        "/api/v1/labels/{name}/values",
        "/api/v1/tail",
    }


@pytest.mark.parametrize(
    ("path", "param", "value"),
    [
        ("/api/v1/logs", "since", "yesterday"),
        ("/api/v1/logs", "until", "2026-13-45"),
        ("/api/v1/logs", "limit", "0"),
        ("/api/v1/logs", "limit", "-1"),
        ("/api/v1/logs", "limit", "1e9"),
        ("/api/v1/logs", "limit", "100001"),
        ("/api/v1/logs", "limit", "9" * 40),
        ("/api/v1/logs", "limit", "²"),
        ("/api/v1/logs", "since", "'; DROP TABLE logs; --"),
        ("/api/v1/logs", "app", ","),
        ("/api/v1/logs", "direction", "sideways"),
        ("/api/v1/logs", "cursor", "' OR 1=1 --"),
        ("/api/v1/logs", "cursor", "0" * 31),
        ("/api/v1/logs", "severity", "1; DROP TABLE logs"),
        ("/api/v1/logs", "regex", "(?<=x)y"),
        ("/api/v1/logs", "q", '"unclosed'),
        ("/api/v1/logs", "q", "a" * 5000),
        ("/api/v1/logs", "host", "a\x00b"),
        ("/api/v1/logs", "{{f_apps:String}}", "x"),
        ("/api/v1/histogram", "limit", "5"),
        ("/api/v1/apps", "limit", "5"),
        ("/api/v1/labels", "cursor", "x"),
        ("/api/v1/labels/host/values", "limit", "100000"),
    ],
)
async def test_bad_parameters_get_400_naming_the_parameter(
    client: Client, path: str, param: str, value: str
) -> None:
    response = await client.get(path, params={param: value})
    assert response.status == 400
    body = await response.json()
    assert body["parameter"] == param
    assert param in body["error"]


async def test_bad_percent_encoding_gets_400(client: Client) -> None:
    response = await client.get("/api/v1/logs?q=%C3%28&app=x")
    assert response.status == 400
    assert (await response.json())["parameter"] == "q"


async def test_sql_in_an_app_name_is_only_ever_a_value(
    client: Client, store: Store
) -> None:
    hostile = "x' OR 1=1 --"
    _store_lines(store, hostile, [1_750_000_000_000_000])
    body = await _get(client, "/api/v1/logs", app=hostile)
    assert [ln["app"] for ln in body["lines"]] == [hostile]
    assert store.rows("SELECT count() > 0 FROM logs")[0][0]


_PARAMS = [
    "app", "service", "host", "since", "until", "severity", "q", "regex",
    "limit", "direction", "cursor", "step", "label.x", "label.",
]  # fmt: skip
_PATHS = ["/api/v1/logs", "/api/v1/histogram", "/api/v1/labels", "/api/v1/apps"]


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    path=st.sampled_from(_PATHS),
    params=st.dictionaries(st.sampled_from(_PARAMS), st.text(max_size=40), max_size=3),
)
async def test_any_parameter_text_gets_an_answer_or_a_400(
    client: Client, path: str, params: dict[str, str]
) -> None:
    response = await client.get(path, params=params)
    assert response.status in (200, 400), await response.text()
    if response.status == 400:
        assert (await response.json())["parameter"]


async def test_healthz_and_metrics_answer(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.headers["Content-Type"].startswith("text/plain")
