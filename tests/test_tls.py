"""The sans-IO TLS session against Python's own TLS client, over memory."""

from __future__ import annotations

import contextlib
import ssl
from pathlib import Path

import pytest
import trustme

from logd import tls


@pytest.fixture(scope="module")
def ca_and_context(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[Path, ssl.SSLContext]:
    folder = tmp_path_factory.mktemp("tls-unit")
    ca = trustme.CA()
    issued = ca.issue_cert("127.0.0.1")
    pem = folder / "server.pem"
    issued.private_key_and_cert_chain_pem.write_to_path(str(pem))
    ca_file = folder / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return ca_file, tls.server_context(str(pem), str(pem))


class _Client:
    def __init__(self, ca: Path) -> None:
        context = ssl.create_default_context(cafile=str(ca))
        self.incoming = ssl.MemoryBIO()
        self.outgoing = ssl.MemoryBIO()
        self.tls = context.wrap_bio(
            self.incoming, self.outgoing, server_hostname="127.0.0.1"
        )


def _pump(client: _Client, server: tls.Session) -> bytes:
    """Run the handshake to its end; return the plaintext the server read."""
    plain = b""
    for _ in range(10):
        with contextlib.suppress(ssl.SSLWantReadError):
            client.tls.do_handshake()
        plain += server.receive(client.outgoing.read())
        client.incoming.write(server.outgoing())
        if server.established:
            try:
                client.tls.do_handshake()
                return plain
            except ssl.SSLWantReadError:
                continue
    raise AssertionError("handshake did not finish")


def test_plaintext_comes_out_after_the_handshake_in_any_chunking(
    ca_and_context: tuple[Path, ssl.SSLContext],
) -> None:
    ca, context = ca_and_context
    client, server = _Client(ca), tls.Session(context)
    _pump(client, server)
    client.tls.write(b"<14>1 - h app - - - one\n<14>1 - h app - - - two\n")
    wire = client.outgoing.read()
    plain = b"".join(server.receive(wire[i : i + 7]) for i in range(0, len(wire), 7))
    assert plain == b"<14>1 - h app - - - one\n<14>1 - h app - - - two\n"


def test_a_plaintext_peer_fails_the_handshake(
    ca_and_context: tuple[Path, ssl.SSLContext],
) -> None:
    server = tls.Session(ca_and_context[1])
    with pytest.raises(ssl.SSLError):
        server.receive(b"<14>1 - h app - - - not tls at all\n")
    assert not server.established


def test_close_notify_is_answered(ca_and_context: tuple[Path, ssl.SSLContext]) -> None:
    ca, context = ca_and_context
    client, server = _Client(ca), tls.Session(context)
    _pump(client, server)
    with pytest.raises(ssl.SSLWantReadError):
        client.tls.unwrap()
    server.receive(client.outgoing.read())
    assert server.closed
    client.incoming.write(server.outgoing())
    client.tls.unwrap()


def test_the_server_sends_no_session_tickets(
    ca_and_context: tuple[Path, ssl.SSLContext],
) -> None:
    assert ca_and_context[1].num_tickets == 0
