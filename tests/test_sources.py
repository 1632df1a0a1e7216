"""Tests for logd.sources: the UDP receiver, on real loopback sockets.

Every test runs on each way of reading a datagram: recvmmsg with all its
slots, recvmmsg with fewer slots than a wake-up reads, and recvfrom.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import time
from collections.abc import Callable, Iterator

import pytest

from logd import recvmmsg, sources
from logd.sources import Allowlist, DatagramReceiver, Stats

HOST = "127.0.0.1"
MAX_FRAME = 65536

Call = tuple[list[bytes], str, str]
# A receiver on a free loopback port, and that port's address.
MakeReceiver = Callable[..., tuple[DatagramReceiver, tuple[str, int]]]


@pytest.fixture(params=[recvmmsg.SLOTS, 4, 0], ids=["recvmmsg", "4slots", "recvfrom"])
def batch(request: pytest.FixtureRequest) -> int:
    return int(request.param)


@pytest.fixture
def calls() -> list[Call]:
    return []


@pytest.fixture
def stats() -> Stats:
    return Stats()


@pytest.fixture
def make_receiver(
    batch: int, calls: list[Call], stats: Stats
) -> Iterator[MakeReceiver]:
    made: list[socket.socket] = []

    def make(
        allow: Allowlist | None = None,
    ) -> tuple[DatagramReceiver, tuple[str, int]]:
        sock = sources.bind_udp(HOST, 0)
        made.append(sock)
        receiver = DatagramReceiver(
            sock,
            lambda frames, peer, name: calls.append((frames, peer, name)),
            allow or Allowlist(),
            stats,
            MAX_FRAME,
            batch=batch,
        )
        assert (receiver.reader is not None) == bool(batch)
        return receiver, sock.getsockname()

    yield make
    for sock in made:
        sock.close()


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        yield sock


async def received(stats: Stats, size: int) -> None:
    """Wait until the receiver has read `size` bytes."""
    for _ in range(200):
        if stats.bytes["udp"] >= size:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"read {stats.bytes['udp']} of {size} bytes")


async def test_frames_are_grouped_per_peer_in_the_order_they_arrived(
    make_receiver: MakeReceiver,
    calls: list[Call],
    stats: Stats,
    sender: socket.socket,
) -> None:
    receiver, address = make_receiver()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind((HOST, 0))
        sent = [
            (sender, b"<13>a1\n"),
            (other, b"<13>b1"),
            (sender, b""),
            (sender, b"<13>a2\r\n\x00"),
            (other, b"\n"),
            (other, b"<13>b2"),
            (sender, b"<13>a3"),
        ]
        for sock, data in sent:
            sock.sendto(data, address)
        # Sent before the first wake-up, so one drain reads them all.
        receiver.start()
        await received(stats, sum(len(data) for _, data in sent))
        receiver.close()

        assert calls == [
            (
                [b"<13>a1", b"<13>a2", b"<13>a3"],
                sources.peer_name(sender.getsockname()),
                "udp",
            ),
            ([b"<13>b1", b"<13>b2"], sources.peer_name(other.getsockname()), "udp"),
        ]


async def test_peers_outside_the_allowlist_are_refused_and_counted(
    make_receiver: MakeReceiver,
    calls: list[Call],
    stats: Stats,
    sender: socket.socket,
) -> None:
    receiver, address = make_receiver(Allowlist(["192.0.2.0/24"]))
    receiver.start()
    sent = [b"<13>one", b"", b"<13>two", b"<13>three"]
    for data in sent:
        sender.sendto(data, address)

    await received(stats, sum(map(len, sent)))
    receiver.close()

    assert calls == []
    assert stats.refused[("udp", "allowlist")] == 3


async def test_a_paused_receiver_reads_and_drops_counted_then_resumes(
    make_receiver: MakeReceiver,
    calls: list[Call],
    stats: Stats,
    sender: socket.socket,
) -> None:
    receiver, address = make_receiver()
    receiver.start()
    receiver.pause()
    dropped = [b"<13>one", b"<13>two", b"\n", b"<13>three"]
    for data in dropped:
        sender.sendto(data, address)
    await received(stats, sum(map(len, dropped)))

    receiver.resume()
    sender.sendto(b"<13>kept", address)
    await received(stats, sum(map(len, dropped)) + len(b"<13>kept"))
    receiver.close()

    assert stats.refused[("udp", "spool_full")] == 3
    assert calls == [([b"<13>kept"], sources.peer_name(sender.getsockname()), "udp")]


async def test_a_wake_up_reads_at_most_a_burst(
    make_receiver: MakeReceiver,
    calls: list[Call],
    sender: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sources, "_UDP_BURST", 10)
    receiver, address = make_receiver()
    sent = [b"<13>%d" % i for i in range(25)]
    for data in sent:
        sender.sendto(data, address)

    # Sent before the first wake-up: the loop wakes again while any are left.
    receiver.start()
    for _ in range(200):
        if sum(len(frames) for frames, _, _ in calls) == len(sent):
            break
        await asyncio.sleep(0.01)
    receiver.close()

    assert [len(frames) for frames, _, _ in calls] == [10, 10, 5]
    assert [frame for frames, _, _ in calls for frame in frames] == sent


async def test_a_trickle_is_read_at_most_once_a_settle_window(
    make_receiver: MakeReceiver,
    calls: list[Call],
    sender: socket.socket,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(sources, "_UDP_SETTLE", 0.05)
    receiver, address = make_receiver()
    receiver.start()
    sent = [b"<13>%d" % i for i in range(40)]
    started = time.monotonic()
    for data in sent:
        sender.sendto(data, address)
        await asyncio.sleep(0.005)
    elapsed = time.monotonic() - started
    receiver.close()

    assert [frame for frames, _, _ in calls for frame in frames] == sent
    # Read once when the first arrived, then once a window, then at close;
    # a read for each datagram would be 40.
    assert len(calls) <= elapsed / 0.05 + 2


async def test_close_reads_what_the_kernel_still_holds(
    make_receiver: MakeReceiver, calls: list[Call], sender: socket.socket
) -> None:
    receiver, address = make_receiver()
    receiver.start()
    sender.sendto(b"<13>last words", address)

    receiver.close()

    assert calls == [
        ([b"<13>last words"], sources.peer_name(sender.getsockname()), "udp")
    ]


def test_bind_udp_logs_the_receive_buffer_it_obtained(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.INFO, logger="logd.source"):
        sock = sources.bind_udp(HOST, 0)
    with sock:
        # Linux reports twice the size that was set.
        obtained = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF) // 2

    (record,) = caplog.records
    assert record.getMessage() == (
        f"udp: receive buffer of {obtained} bytes (asked for {32 * 1024 * 1024})"
    )
