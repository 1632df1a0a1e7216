"""Syslog listeners: UDP, TCP and TLS (RFC 5425), each behind an allowlist.

These protocols only move bytes: framing and parsing are sans-IO modules,
and every frame goes to one `Ingest` callback with the peer's address and
the listener's name. Whatever a listener refuses is counted with a reason:
a peer outside the allowlist, a connection past the limit, a failed TLS
handshake, a connection idle too long, or one that leaves a frame
unfinished too long (slowloris). A refused or closed peer never holds up
the others.

Backpressure: while the spool is over its quota, stream listeners stop
reading (the senders' own buffers hold the lines) and UDP lines are read
and dropped, counted.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import platform
import socket
import ssl
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from logd import log, recvmmsg, tls
from logd.framing import Framer, datagram

# frames, the peer as "ip:port", the listener ("udp", "tcp", "tls")
Ingest = Callable[[list[bytes], str, str], None]

_UDP_READ = 65535
# Datagrams read in one wake-up before yielding to the loop, so a flood on
# UDP cannot starve the TCP connections.
_UDP_BURST = 2048
# After a wake-up that emptied the socket, how long datagrams gather in the
# kernel before the next read (seconds): like a network card's interrupt
# coalescing, it trades a little latency for fewer, fuller reads.
_UDP_SETTLE = 0.002
# Room in the kernel for a burst that arrives while the loop is busy (a
# batch being sealed, a GC pass) instead of dropping it.
_RECV_BUFFER = 32 * 1024 * 1024
# Linux reports back twice the size set: the kernel's bookkeeping is counted.
_RECV_BUFFER_SCALE = 2 if sys.platform.startswith("linux") else 1
_TLS_HANDSHAKE_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Limits:
    """What one stream connection may do before it is closed."""

    max_frame: int = 65536
    max_connections: int = 4096
    idle_timeout: float = 600.0
    frame_timeout: float = 30.0


class Allowlist:
    """Source networks a listener accepts; empty means every address."""

    def __init__(self, networks: Iterable[str] = ()) -> None:
        self.networks = [ipaddress.ip_network(n, strict=False) for n in networks]
        self._seen: dict[str, bool] = {}

    def allows(self, host: str) -> bool:
        if not self.networks:
            return True
        known = self._seen.get(host)
        if known is None:
            address = ipaddress.ip_address(host.partition("%")[0])
            if address.version == 6 and address.ipv4_mapped:
                address = address.ipv4_mapped
            known = any(address in net for net in self.networks)
            if len(self._seen) > 65536:
                self._seen.clear()
            self._seen[host] = known
        return known


def peer_name(address: Any) -> str:
    """Format a socket address as "ip:port" ("[ip]:port" for IPv6)."""
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Stats:
    """Counters every listener shares, read by /metrics."""

    def __init__(self) -> None:
        self.connections: Counter[str] = Counter()
        self.open: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        # (listener, reason) of every refused or closed peer, dropped datagram
        self.refused: Counter[tuple[str, str]] = Counter()


class StreamProtocol(asyncio.Protocol):
    """One TCP or TLS connection: bytes in, frames out."""

    def __init__(self, listener: StreamListener) -> None:
        self._listener = listener
        self._framer = Framer(listener.limits.max_frame)
        self._tls = tls.Session(listener.tls) if listener.tls else None
        self.peer = ""
        self.transport: asyncio.Transport | None = None
        self.opened_at = self.last_data = time.monotonic()
        # When the frame now buffered began waiting for its end, or 0.
        self.partial_since = 0.0

    @property
    def handshaking(self) -> bool:
        return self._tls is not None and not self._tls.established

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving it.
        raw = cast(asyncio.Transport, transport)
        address = raw.get_extra_info("peername")
        self.peer = peer_name(address)
        if self._listener.admit(self, address[0]):
            raw.abort()
            return
        self.transport = raw
        self._listener.opened(self)

    def data_received(self, data: bytes) -> None:
        listener = self._listener
        listener.stats.bytes[listener.name] += len(data)
        if self._tls is not None:
            data = self._decrypt(data)
            if not data:
                return
        frames = self._framer.feed(data)
        self.last_data = now = time.monotonic()
        if frames:
            self.partial_since = now if self._framer.buffered else 0.0
            listener.ingest(frames, self.peer, listener.name)
        elif not self.partial_since and self._framer.buffered:
            self.partial_since = now

    def eof_received(self) -> bool | None:
        self.finish()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is None:
            return
        self.finish()
        self._listener.forget(self)
        self.transport = None

    def finish(self) -> None:
        """Pass on what the framer holds: the stream has ended."""
        frames = self._framer.close()
        if frames:
            self._listener.ingest(frames, self.peer, self._listener.name)

    def _decrypt(self, data: bytes) -> bytes:
        assert self._tls is not None and self.transport is not None
        was_handshaking = self.handshaking
        try:
            plain = self._tls.receive(data)
        except ssl.SSLError as exc:
            reason = "tls_handshake" if was_handshaking else "tls_error"
            self._listener.refuse(self.peer, reason, exc.reason or str(exc))
            self.transport.write(self._tls.outgoing())
            self.transport.close()
            return b""
        reply = self._tls.outgoing()
        if reply:
            self.transport.write(reply)
        if self._tls.closed:
            self.transport.close()
        if was_handshaking:
            # Time spent in the handshake is not idle time.
            self.last_data = time.monotonic()
        return plain


class StreamListener:
    """A TCP or TLS listener and the connections it has open."""

    def __init__(
        self,
        name: str,
        ingest: Ingest,
        allow: Allowlist,
        stats: Stats,
        limits: Limits,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.name = name
        self.ingest = ingest
        self.allow = allow
        self.stats = stats
        self.limits = limits
        self.tls = tls
        self.paused = False
        self._connections: set[StreamProtocol] = set()
        self._server: asyncio.Server | None = None

    async def start(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: StreamProtocol(self), host, port, reuse_address=True
        )

    def admit(self, conn: StreamProtocol, host: str) -> bool:
        """Check a new peer; True when it was refused."""
        if not self.allow.allows(host):
            self.refuse(conn.peer, "allowlist", "not in the allowlist")
            return True
        if len(self._connections) >= self.limits.max_connections:
            self.refuse(conn.peer, "max_connections", "too many connections")
            return True
        return False

    def opened(self, conn: StreamProtocol) -> None:
        assert conn.transport is not None
        self._connections.add(conn)
        self.stats.connections[self.name] += 1
        self.stats.open[self.name] = len(self._connections)
        if self.paused:
            conn.transport.pause_reading()

    def forget(self, conn: StreamProtocol) -> None:
        self._connections.discard(conn)
        self.stats.open[self.name] = len(self._connections)

    def refuse(self, peer: str, reason: str, why: str) -> None:
        self.stats.refused[(self.name, reason)] += 1
        log.limited(
            log.source,
            f"{self.name}:{reason}",
            "%s: %s, closed (%s)",
            peer,
            why,
            self.name,
        )

    def pause(self) -> None:
        """Stop reading every connection: storage is behind."""
        if not self.paused:
            self.paused = True
            for conn in self._connections:
                if conn.transport is not None:
                    conn.transport.pause_reading()

    def resume(self) -> None:
        if self.paused:
            self.paused = False
            for conn in self._connections:
                if conn.transport is not None:
                    conn.transport.resume_reading()

    def sweep(self, now: float) -> None:
        """Close connections idle too long or stuck in the middle of a frame."""
        limits = self.limits
        for conn in list(self._connections):
            if conn.transport is None or self.paused:
                continue
            if conn.handshaking and now - conn.opened_at > _TLS_HANDSHAKE_SECONDS:
                self._close(conn, "tls_handshake", "handshake took too long")
            elif now - conn.last_data > limits.idle_timeout:
                self._close(conn, "idle", "idle too long")
            elif conn.partial_since and now - conn.partial_since > limits.frame_timeout:
                self._close(conn, "frame_timeout", "frame unfinished too long")

    async def close(self, grace: float) -> None:
        """Stop accepting; read for up to `grace` seconds while data flows."""
        if self._server is not None:
            self._server.close()
        deadline = time.monotonic() + grace
        while self._connections and time.monotonic() < deadline:
            quiet = time.monotonic() - 0.1
            if all(c.last_data < quiet for c in self._connections):
                break
            await asyncio.sleep(0.05)
        for conn in list(self._connections):
            if conn.transport is not None:
                conn.transport.pause_reading()
                conn.finish()
                conn.transport.abort()
        if self._server is not None:
            await self._server.wait_closed()

    def _close(self, conn: StreamProtocol, reason: str, why: str) -> None:
        assert conn.transport is not None
        self.refuse(conn.peer, reason, why)
        conn.transport.close()


class DatagramReceiver:
    """A UDP socket drained in a loop on every wake-up.

    asyncio's datagram transport allocates a 256 KiB buffer per datagram;
    reading the socket until it is empty is about seven times faster and
    loses far fewer datagrams under load. Where recvmmsg serves, one call
    reads up to `batch` datagrams (`reader` is set); elsewhere, or with a
    `batch` of 0, each one takes a recvfrom call.
    """

    name = "udp"

    def __init__(
        self,
        sock: socket.socket,
        ingest: Ingest,
        allow: Allowlist,
        stats: Stats,
        max_frame: int,
        *,
        batch: int = recvmmsg.SLOTS,
    ) -> None:
        self._sock = sock
        self._ingest = ingest
        self._allow = allow
        self._stats = stats
        self._max_frame = max_frame
        self.paused = False
        self.reader = recvmmsg.Reader.for_socket(sock, batch) if batch else None
        self._settling: asyncio.TimerHandle | None = None
        # Turns a peer's key into (host, port): the reader keys peers by raw
        # address, recvfrom by the (host, port) tuple itself.
        self._address: Callable[[Any], Any] = (
            self.reader.address if self.reader is not None else _same
        )

    def start(self) -> None:
        self._watch()

    def _watch(self) -> None:
        self._settling = None
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._readable)

    def pause(self) -> None:
        """Read and drop, counted: a datagram cannot wait in the sender."""
        self.paused = True

    def resume(self) -> None:
        self.paused = False

    def close(self) -> None:
        if self._settling is not None:
            self._settling.cancel()
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        # Whatever the kernel still holds was received before the stop.
        self._drain()
        self._sock.close()

    def _readable(self) -> None:
        if self._drain() < _UDP_BURST:
            # The socket is empty: let the next datagrams gather instead of
            # waking for each. Under a steady sender most wake-ups read a
            # few dozen datagrams, and each costs a parse, an encode and a
            # spool write besides the reads.
            loop = asyncio.get_running_loop()
            loop.remove_reader(self._sock.fileno())
            self._settling = loop.call_later(_UDP_SETTLE, self._watch)

    def _drain(self) -> int:
        """Read what the socket holds, up to a burst; return how many."""
        if self.reader is not None:
            received = self._read_batches(self.reader)
        else:
            received = self._read_each()
        self._deliver(received)
        return len(received)

    def _read_batches(self, reader: recvmmsg.Reader) -> list[tuple[bytes, Any]]:
        received: list[tuple[bytes, Any]] = []
        while len(received) < _UDP_BURST:
            want = min(reader.slots, _UDP_BURST - len(received))
            try:
                got = reader.read(want)
            except OSError as exc:
                log.source.warning("udp: receive failed: %s", exc)
                break
            received += got
            # Fewer than asked means the socket is empty: one more call
            # would only say so. What arrives later wakes the loop again.
            if len(got) < want:
                break
        return received

    def _read_each(self) -> list[tuple[bytes, Any]]:
        received: list[tuple[bytes, Any]] = []
        recvfrom = self._sock.recvfrom
        for _ in range(_UDP_BURST):
            try:
                received.append(recvfrom(_UDP_READ))
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.source.warning("udp: receive failed: %s", exc)
                break
        return received

    def _deliver(self, received: list[tuple[bytes, Any]]) -> None:
        by_peer: dict[Any, list[bytes]] = {}
        address = self._address
        max_frame = self._max_frame
        size = refused = 0
        for data, key in received:
            size += len(data)
            frame = datagram(data, max_frame)
            if not frame:
                # Only trailers, or nothing: no message to keep.
                continue
            frames = by_peer.get(key)
            if frames is None:
                if not self._allow.allows(address(key)[0]):
                    refused += 1
                    continue
                frames = by_peer[key] = []
            frames.append(frame)
        self._stats.bytes["udp"] += size
        if refused:
            self._stats.refused[("udp", "allowlist")] += refused
        if self.paused:
            dropped = sum(len(f) for f in by_peer.values())
            self._stats.refused[("udp", "spool_full")] += dropped
            return
        for key, frames in by_peer.items():
            self._ingest(frames, peer_name(address(key)), "udp")


def _same(address: Any) -> Any:
    return address


def bind_udp(host: str, port: int) -> socket.socket:
    """Open a non-blocking UDP socket with a large receive buffer.

    When the kernel caps the buffer (net.core.rmem_max), SO_RCVBUFFORCE
    lifts the cap where the process may (CAP_NET_ADMIN). The size obtained
    is logged.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    _grow_receive_buffer(sock)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _grow_receive_buffer(sock: socket.socket) -> None:
    # Linux caps the size silently; macOS refuses it (ENOBUFS) and keeps
    # the default. Either way the size read back is the one that counts.
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECV_BUFFER)
    wanted = _RECV_BUFFER * _RECV_BUFFER_SCALE
    obtained = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    force = _so_rcvbufforce()
    if obtained < wanted and force is not None:
        # Refused (EPERM) without CAP_NET_ADMIN: the capped size stays.
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, force, _RECV_BUFFER)
        obtained = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
    log.source.info(
        "udp: receive buffer of %d bytes (asked for %d)",
        obtained // _RECV_BUFFER_SCALE,
        _RECV_BUFFER,
    )


def _so_rcvbufforce() -> int | None:
    # Python 3.11's socket module does not name the option; 33 is its
    # number on every Linux but alpha, parisc and sparc.
    number: int | None = getattr(socket, "SO_RCVBUFFORCE", None)
    if number is None and sys.platform.startswith("linux"):
        if not platform.machine().startswith(("alpha", "parisc", "sparc")):
            number = 33
    return number
