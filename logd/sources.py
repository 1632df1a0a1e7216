"""Syslog listeners: UDP, TCP and TLS (RFC 5425), each behind an allowlist.

These protocols only move bytes: framing and parsing are sans-IO modules,
and every frame goes to one `Ingest` callback with the peer's address and
the listener's name. A peer outside the allowlist is closed (TCP, TLS) or
ignored (UDP) and counted.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import ssl
from collections import Counter
from collections.abc import Callable, Iterable
from typing import Any, cast

from logd import log
from logd.framing import Framer, datagram

# frames, the peer as "ip:port", the listener ("udp", "tcp", "tls")
Ingest = Callable[[list[bytes], str, str], None]

_UDP_READ = 65535
# Datagrams read in one wake-up before yielding to the loop, so a flood on
# UDP cannot starve the TCP connections.
_UDP_BURST = 2048
_RECV_BUFFER = 8 * 1024 * 1024


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
        self.rejected: Counter[str] = Counter()
        self.bytes: Counter[str] = Counter()
        self.open = Counter[str]()


class StreamProtocol(asyncio.Protocol):
    """One TCP or TLS connection: bytes in, frames out."""

    def __init__(
        self, name: str, ingest: Ingest, allow: Allowlist, stats: Stats, max_frame: int
    ) -> None:
        self._name = name
        self._ingest = ingest
        self._allow = allow
        self._stats = stats
        self._framer = Framer(max_frame)
        self._peer = ""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without deriving it.
        transport = cast(asyncio.Transport, transport)
        address = transport.get_extra_info("peername")
        self._peer = peer_name(address)
        if not self._allow.allows(address[0]):
            self._stats.rejected[self._name] += 1
            log.source.warning(
                "%s: not in the %s allowlist, closed", self._peer, self._name
            )
            transport.abort()
            return
        self._transport = transport
        self._stats.connections[self._name] += 1
        self._stats.open[self._name] += 1

    def data_received(self, data: bytes) -> None:
        self._stats.bytes[self._name] += len(data)
        frames = self._framer.feed(data)
        if frames:
            self._ingest(frames, self._peer, self._name)

    def eof_received(self) -> bool | None:
        self._finish()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._transport is None:
            return
        self._finish()
        self._stats.open[self._name] -= 1
        self._transport = None

    def _finish(self) -> None:
        frames = self._framer.close()
        if frames:
            self._ingest(frames, self._peer, self._name)


class DatagramReceiver:
    """A UDP socket drained in a loop on every wake-up.

    asyncio's datagram transport allocates a 256 KiB buffer per datagram;
    reading the socket until it is empty is about seven times faster and
    loses far fewer datagrams under load.
    """

    def __init__(
        self,
        sock: socket.socket,
        ingest: Ingest,
        allow: Allowlist,
        stats: Stats,
        max_frame: int,
    ) -> None:
        self._sock = sock
        self._ingest = ingest
        self._allow = allow
        self._stats = stats
        self._max_frame = max_frame

    def start(self) -> None:
        asyncio.get_running_loop().add_reader(self._sock.fileno(), self._drain)

    def close(self) -> None:
        asyncio.get_running_loop().remove_reader(self._sock.fileno())
        self._sock.close()

    def _drain(self) -> None:
        by_peer: dict[Any, list[bytes]] = {}
        recvfrom = self._sock.recvfrom
        size = 0
        for _ in range(_UDP_BURST):
            try:
                data, address = recvfrom(_UDP_READ)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                log.source.warning("udp receive failed: %s", exc)
                break
            size += len(data)
            frames = by_peer.get(address)
            if frames is None:
                if not self._allow.allows(address[0]):
                    self._stats.rejected["udp"] += 1
                    continue
                frames = by_peer[address] = []
            frames.append(datagram(data, self._max_frame))
        self._stats.bytes["udp"] += size
        for address, frames in by_peer.items():
            self._ingest(frames, peer_name(address), "udp")


def _family(host: str) -> socket.AddressFamily:
    return socket.AF_INET6 if ":" in host else socket.AF_INET


def bind_udp(host: str, port: int) -> socket.socket:
    """Open a non-blocking UDP socket with a large receive buffer."""
    sock = socket.socket(_family(host), socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, _RECV_BUFFER)
    except OSError:
        log.source.info("udp: kernel refused a %d byte receive buffer", _RECV_BUFFER)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


async def serve_stream(
    name: str,
    host: str,
    port: int,
    ingest: Ingest,
    allow: Allowlist,
    stats: Stats,
    max_frame: int,
    tls: ssl.SSLContext | None = None,
) -> asyncio.Server:
    """Listen for syslog over TCP, or TLS when given a context."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: StreamProtocol(name, ingest, allow, stats, max_frame),
        host,
        port,
        ssl=tls,
        ssl_handshake_timeout=10.0 if tls else None,
        reuse_address=True,
    )


def tls_context(cert: str, key: str) -> ssl.SSLContext:
    """A server context for RFC 5425: TLS 1.2 or newer, the given pair."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    return context
