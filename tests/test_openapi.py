"""The OpenAPI document, held to what a real server does (schemathesis).

Schemathesis generates requests from /api/v1/openapi.json, valid and
invalid, and checks every answer against the document: no 5xx, only
documented status codes and content types, bodies that fit their schemas,
and input outside the schema refused. One check is left out: that every
schema-valid request is accepted. The server accepts exactly the regexes
RE2 compiles, searches with closed quotes and times Python reads as ISO
8601, and no JSON Schema pattern can say that; a 400 there names the
parameter, which tests/test_api.py checks. For the websocket tail only the
refusals can be checked: a plain GET gets a 400 asking for the upgrade.
"""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import positive_data_acceptance

from tests.serve import LogdServer

APP = "openapi-lines"
LINES = [
    b'<11>1 2026-12-03T10:00:00.5Z web-1 openapi-lines 42 req [x@1 a="b"] failed',
    b"<14>Dec  3 10:00:01 web-2 openapi-lines[7]: started on port 8080",
    b"not syslog at all \xff\xfe",
]


@pytest.fixture(scope="module")
def api_schema(logd_server: LogdServer) -> Any:
    """The document as the session's server serves it, with a few lines stored."""
    with socket.create_connection(("127.0.0.1", logd_server.ports.tcp)) as sock:
        sock.sendall(b"".join(line + b"\n" for line in LINES))
    deadline = time.monotonic() + 30
    while not any(a["app"] == APP for a in logd_server.apps()):
        assert time.monotonic() < deadline, "the lines were not stored"
        time.sleep(0.2)
    url = f"{logd_server.base_url}/api/v1/openapi.json"
    return schemathesis.openapi.from_url(url)


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_the_server_does_what_its_openapi_document_says(case: Any) -> None:
    case.call_and_validate(timeout=30, excluded_checks=[positive_data_acceptance])
