"""Fixtures that run real `logd serve` processes for end-to-end tests.

One plain server and one TLS server are shared by a whole session; each test
sends under its own app name (`app` fixture) so tests never see each other's
lines. Tests whose sender cannot choose the app name (loggen) or that must
see every stored line ask `start_logd` for a server of their own.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator

import pytest
import trustme

from tests.serve import LogdServer, TlsFiles

# The embedded-engine fixtures (`store`, `app_name`) for in-process tests,
# and the Docker ones (`client`, `containers`) for tests on a real dockerd.
pytest_plugins = ["tests.engine", "tests.docker_images"]

StartLogd = Callable[..., LogdServer]


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    """Make a CA and a server certificate for 127.0.0.1 and localhost."""
    folder = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    files = TlsFiles(
        cert=folder / "server.pem", key=folder / "server.key", ca=folder / "ca.pem"
    )
    cert.cert_chain_pems[0].write_to_path(str(files.cert))
    for pem in cert.cert_chain_pems[1:]:
        pem.write_to_path(str(files.cert), append=True)
    cert.private_key_pem.write_to_path(str(files.key))
    ca.cert_pem.write_to_path(str(files.ca))
    return files


@pytest.fixture(scope="session")
def logd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LogdServer]:
    """One server for the session: UDP, TCP and HTTP on free loopback ports."""
    with LogdServer(tmp_path_factory.mktemp("logd")) as server:
        yield server


@pytest.fixture(scope="session")
def logd_tls_server(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[LogdServer]:
    """One server for the session that also listens for TLS."""
    with LogdServer(tmp_path_factory.mktemp("logd-tls"), tls=tls_files) as server:
        yield server


@pytest.fixture
def start_logd(
    tmp_path_factory: pytest.TempPathFactory, tls_files: TlsFiles
) -> Iterator[StartLogd]:
    """Start servers of the test's own; each is stopped (and must exit 0) after.

    Call it as `start_logd()` or `start_logd(tls=True)`.
    """
    servers: list[LogdServer] = []

    def start(*, tls: bool = False) -> LogdServer:
        server = LogdServer(
            tmp_path_factory.mktemp("logd-own"), tls=tls_files if tls else None
        )
        servers.append(server)
        server.start()
        return server

    yield start
    errors: list[AssertionError] = []
    for server in servers:
        try:
            server.stop()
        except AssertionError as error:
            errors.append(error)
    if errors:
        raise errors[0]


@pytest.fixture
def app(request: pytest.FixtureRequest) -> str:
    """An app name no other test uses, short enough for an RFC 3164 tag.

    RFC 3164 allows 32 characters in a TAG; the name keeps to [a-z0-9-].
    """
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")
    slug = slug.removeprefix("test-")[:24].strip("-")
    return f"{slug}-{uuid.uuid4().hex[:6]}"
