"""TLS for the syslog stream listener (RFC 5425), over memory buffers.

The listener's protocol owns the socket; this session only turns the
ciphertext it reads into plaintext and says what to write back. Doing the
handshake here, rather than in the event loop's own TLS layer, lets logd
time it out and count every failed handshake with its reason.
"""

from __future__ import annotations

import contextlib
import ssl

_READ = 256 * 1024


def server_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context: TLS 1.2 or newer, with the given certificate and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    # A syslog sender never reads; TLS 1.3 session tickets it leaves unread
    # turn its close into a reset, and the kernel then drops lines logd has
    # not read yet.
    context.num_tickets = 0
    context.load_cert_chain(cert, key)
    return context


class Session:
    """One server-side TLS connection: feed it bytes, take plaintext out.

    `receive` raises `ssl.SSLError` when the peer breaks the protocol (a
    failed handshake included); the caller writes `outgoing()` (the alert)
    and closes.
    """

    def __init__(self, context: ssl.SSLContext) -> None:
        self._incoming = ssl.MemoryBIO()
        self._outgoing = ssl.MemoryBIO()
        self._tls = context.wrap_bio(self._incoming, self._outgoing, server_side=True)
        self.established = False
        self.closed = False

    def receive(self, data: bytes) -> bytes:
        """Take ciphertext from the peer; return the plaintext it completes."""
        self._incoming.write(data)
        if not self.established:
            try:
                self._tls.do_handshake()
            except ssl.SSLWantReadError:
                return b""
            self.established = True
        return self._read()

    def outgoing(self) -> bytes:
        """Ciphertext to send to the peer now (handshake, alerts)."""
        return self._outgoing.read()

    def _read(self) -> bytes:
        chunks = []
        while True:
            try:
                chunk = self._tls.read(_READ)
            except ssl.SSLWantReadError:
                break
            except ssl.SSLZeroReturnError:
                chunk = b""
            if not chunk:
                # An empty read is the peer's close_notify: answer it; the
                # caller then closes the connection.
                self.closed = True
                with contextlib.suppress(ssl.SSLError):
                    self._tls.unwrap()
                break
            chunks.append(chunk)
        return b"".join(chunks)
