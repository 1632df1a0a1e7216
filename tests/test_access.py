"""Tokens: the file format, the bind check, and scoping on every endpoint."""

from __future__ import annotations

import asyncio
import itertools
import json
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from aiohttp import WSServerHandshakeError, web
from aiohttp.test_utils import TestClient, TestServer

from logd.batch import encode
from logd.errors import ConfigError
from logd.hub import Hub
from logd.line import Line
from logd.metrics import Metrics
from logd.store import Store
from query import access
from query import app as http_app
from tests.serve import LogdServer

Client = TestClient[web.Request, web.Application]
ALPHA_TOKEN = "alpha-token-0123456789"
EVERY_TOKEN = "every-token-0123456789"
TOKENS = f"""
# a comment, then a blank line

{ALPHA_TOKEN} {{alpha}}
{EVERY_TOKEN} *
"""
_seqs = itertools.count(int(time.time() * 1_000_000) - 2 * 10**12)


def test_a_tokens_file_maps_each_token_to_its_apps(tmp_path: Path) -> None:
    path = tmp_path / "tokens"
    path.write_text("abcdefghijklmnop a, b\n\t# note\nqrstuvwxyz012345\t*\n")
    tokens = access.load(path)
    assert len(tokens) == 2
    assert tokens.apps("abcdefghijklmnop") == frozenset({"a", "b"})
    assert tokens.apps("qrstuvwxyz012345") is None
    with pytest.raises(KeyError):
        tokens.apps("abcdefghijklmnoq")


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("short a", "at least 16"),
        ("abcdefghijklmnop", "apps after the token"),
        ("abcdefghijklmnop a,,b", "apps after the token"),
        ("abcdefghijklmnop *,a", "apps after the token"),
        ("abcdefghijklmnop a\nabcdefghijklmnop b", "already given"),
    ],
)
def test_mistakes_in_a_tokens_file_name_the_line(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=f"line [12]: .*{problem}"):
        access.parse(text, "t.txt")


def test_an_unreadable_tokens_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="--tokens"):
        access.load(tmp_path / "missing")


@pytest.mark.parametrize("host", ["127.0.0.1", "127.8.0.1", "::1", "localhost"])
def test_loopback_needs_no_tokens(host: str) -> None:
    access.check_bind(host, None, insecure=False)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7", "logs.example"])
def test_beyond_loopback_needs_tokens_or_insecure(host: str) -> None:
    with pytest.raises(ConfigError, match="--tokens"):
        access.check_bind(host, None, insecure=False)
    access.check_bind(host, access.parse(f"{ALPHA_TOKEN} a"), insecure=False)
    access.check_bind(host, None, insecure=True)


# ------------------------------------------------------ scoping on a server


@pytest.fixture
async def hub() -> AsyncIterator[Hub]:
    hub = Hub(Metrics())
    yield hub
    await hub.close(timeout=1.0)


@pytest.fixture
def apps(store: Store, app_name: str) -> tuple[str, str]:
    """Two apps with lines and labels; tokens may read only the first."""
    alpha, beta = f"{app_name}-alpha", f"{app_name}-beta"
    now = time.time_ns() // 1000
    lines = [
        _line(alpha, now - 1000, "alpha says hello", {"zone": "a"}),
        _line(beta, now - 2000, "beta says hello", {f"secret-{beta}": "s"}),
    ]
    store.insert(encode(lines))
    return alpha, beta


def _line(app: str, ts: int, message: str, labels: dict[str, str]) -> Line:
    return Line(
        ts=ts,
        received=ts,
        seq=next(_seqs),
        app=app,
        app_name=app,
        host=f"host-{app}",
        message=message,
        labels=labels,
    )


@pytest.fixture
async def client(
    store: Store, hub: Hub, apps: tuple[str, str]
) -> AsyncIterator[Client]:
    ready = asyncio.Event()
    ready.set()
    tokens = access.parse(TOKENS.replace("{alpha}", apps[0]))
    application = http_app.build(store, Metrics(), ready, hub=hub, tokens=tokens)
    async with TestClient(TestServer(application)) as test_client:
        yield test_client


def _auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def _json(client: Client, path: str, token: str, **params: str) -> Any:
    response = await client.get(path, params=params, headers=_auth(token))
    assert response.status == 200, await response.text()
    return await response.json()


ENDPOINTS = [
    "/api/v1/logs",
    "/api/v1/histogram",
    "/api/v1/apps",
    "/api/v1/labels",
    "/api/v1/labels/app/values",
    "/api/v1/tail",
]


@pytest.mark.parametrize("path", ENDPOINTS)
@pytest.mark.parametrize("header", [None, "Bearer nope-nope-nope-nope", "Basic eA=="])
async def test_every_endpoint_needs_a_known_token(
    client: Client, path: str, header: str | None
) -> None:
    headers = {} if header is None else {"Authorization": header}
    response = await client.get(path, headers=headers)
    assert response.status == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert (await response.json())["parameter"] == "Authorization"


async def test_health_and_the_openapi_document_need_no_token(client: Client) -> None:
    assert (await client.get("/healthz")).status == 200
    assert (await client.get("/api/v1/openapi.json")).status == 200


@pytest.mark.parametrize("path", ENDPOINTS)
async def test_asking_for_another_apps_lines_is_forbidden(
    client: Client, apps: tuple[str, str], path: str
) -> None:
    params = {"app": f"{apps[0]},{apps[1]}"}
    response = await client.get(path, params=params, headers=_auth(ALPHA_TOKEN))
    assert response.status == 403
    assert (await response.json())["parameter"] == "app"


async def test_lines_counts_and_names_stay_within_the_tokens_apps(
    client: Client, apps: tuple[str, str]
) -> None:
    alpha, beta = apps
    logs = await _json(client, "/api/v1/logs", ALPHA_TOKEN, q="hello")
    assert {line["app"] for line in logs["lines"]} == {alpha}

    histogram = await _json(client, "/api/v1/histogram", ALPHA_TOKEN, q="hello")
    assert histogram["total"] == 1

    listed = await _json(client, "/api/v1/apps", ALPHA_TOKEN)
    assert [entry["app"] for entry in listed["apps"]] == [alpha]

    names = (await _json(client, "/api/v1/labels", ALPHA_TOKEN))["labels"]
    assert "label.zone" in names
    assert not [name for name in names if beta in name]

    for name in ("app", "host", f"label.secret-{beta}"):
        path = f"/api/v1/labels/{name}/values"
        values = (await _json(client, path, ALPHA_TOKEN))["values"]
        assert not [value for value in values if beta in value or value == "s"]


async def test_a_star_token_reads_every_app(
    client: Client, apps: tuple[str, str]
) -> None:
    params = {"app": ",".join(apps), "q": "hello"}
    logs = await _json(client, "/api/v1/logs", EVERY_TOKEN, **params)
    assert {line["app"] for line in logs["lines"]} == set(apps)
    listed = await _json(client, "/api/v1/apps", EVERY_TOKEN)
    assert set(apps) <= {entry["app"] for entry in listed["apps"]}


async def test_a_tail_only_hears_the_tokens_apps(
    client: Client, hub: Hub, apps: tuple[str, str]
) -> None:
    alpha, beta = apps
    with pytest.raises(WSServerHandshakeError) as refused:
        await client.ws_connect("/api/v1/tail")
    assert refused.value.status == 401

    async with client.ws_connect("/api/v1/tail", headers=_auth(ALPHA_TOKEN)) as ws:
        now = time.time_ns() // 1000
        hub.publish([_line(beta, now, "for beta", {}), _line(alpha, now, "mine", {})])
        while True:
            message = orjson.loads((await ws.receive(timeout=10)).data)
            if message["type"] == "line":
                break
    assert message["message"] == "mine"


def test_serve_refuses_http_beyond_loopback_without_tokens(tmp_path: Path) -> None:
    # Refused while reading its flags: nothing is ever bound to 0.0.0.0.
    argv = [sys.executable, "-m", "logd", "serve", "--http", "0.0.0.0:18999"]
    done = subprocess.run(
        [*argv, "--data", str(tmp_path), "--udp", "off", "--tcp", "off"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "--tokens" in done.stderr and "--insecure" in done.stderr


def test_a_running_server_scopes_each_token_to_its_apps(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens"
    tokens.write_text("reader-of-billing-0001 billing\nreader-of-all-00000001 *\n")
    data = tmp_path / "data"
    with LogdServer(data, extra_args=("--tokens", str(tokens))) as server:
        with socket.create_connection(("127.0.0.1", server.ports.tcp)) as sock:
            for app in ("billing", "search"):
                sock.sendall(f"<14>1 - h {app} - - - for {app}\n".encode())

        def get(path: str, token: str) -> tuple[int, Any]:
            request = urllib.request.Request(
                server.base_url + path, headers={"Authorization": f"Bearer {token}"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as answer:
                    return answer.status, json.loads(answer.read())
            except urllib.error.HTTPError as error:
                return error.code, None

        deadline = time.monotonic() + 30
        while get("/api/v1/apps", "reader-of-all-00000001")[1]["apps"] != [
            {"app": "billing", "lines": 1, "last": ANY_TIME},
            {"app": "search", "lines": 1, "last": ANY_TIME},
        ]:
            assert time.monotonic() < deadline
            time.sleep(0.3)
        status, body = get("/api/v1/apps", "reader-of-billing-0001")
        assert status == 200
        assert [a["app"] for a in body["apps"]] == ["billing"]
        status, body = get("/api/v1/logs", "reader-of-billing-0001")
        assert [ln["message"] for ln in body["lines"]] == ["for billing"]
        assert get("/api/v1/logs?app=search", "reader-of-billing-0001")[0] == 403
        assert get("/api/v1/apps", "not-a-token-at-all-000")[0] == 401


class _AnyTime(str):
    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and other.endswith("Z")

    def __hash__(self) -> int:
        return 0


ANY_TIME = _AnyTime()
