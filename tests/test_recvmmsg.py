"""Tests for logd.recvmmsg: many datagrams per call, on real loopback sockets."""

from __future__ import annotations

import socket
import time
from collections.abc import Iterator

import pytest

from logd import recvmmsg
from logd.framing import TruncatedFrame
from logd.recvmmsg import Reader
from logd.sources import peer_name

V4 = "127.0.0.1"
V6 = "::1"
# The largest UDP payload each IP version can carry.
V4_MAX = 65507
V6_MAX = 65527


def udp(family: socket.AddressFamily, host: str) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.bind((host, 0))
    return sock


@pytest.fixture
def receiver() -> Iterator[socket.socket]:
    with udp(socket.AF_INET, V4) as sock:
        yield sock


@pytest.fixture
def sender() -> Iterator[socket.socket]:
    with udp(socket.AF_INET, V4) as sock:
        yield sock


def reader_for(sock: socket.socket, slots: int = recvmmsg.SLOTS) -> Reader:
    reader = Reader.for_socket(sock, slots)
    assert reader is not None, "recvmmsg should serve on Linux"
    return reader


def read_all(reader: Reader) -> list[tuple[bytes, bytes]]:
    """Read until the socket is empty."""
    found: list[tuple[bytes, bytes]] = []
    while got := reader.read():
        found += got
    return found


def test_datagrams_of_every_size_arrive_whole_and_in_order(
    receiver: socket.socket, sender: socket.socket
) -> None:
    sizes = [0, 1, 2, 199, 1472, 1473, 9000, V4_MAX, 0, 1]
    sent = [bytes([i]) * size for i, size in enumerate(sizes)]
    for data in sent:
        sender.sendto(data, receiver.getsockname())

    got = read_all(reader_for(receiver))

    assert [data for data, _ in got] == sent
    assert all(type(data) is bytes for data, _ in got)


def test_more_datagrams_than_slots_are_read_across_calls(
    receiver: socket.socket, sender: socket.socket
) -> None:
    sent = [b"<13>line %d" % i for i in range(10)]
    for data in sent:
        sender.sendto(data, receiver.getsockname())
    reader = reader_for(receiver, slots=4)

    calls = [reader.read() for _ in range(4)]

    assert [len(call) for call in calls] == [4, 4, 2, 0]
    assert [data for call in calls for data, _ in call] == sent


def test_a_read_takes_no_more_than_asked(
    receiver: socket.socket, sender: socket.socket
) -> None:
    for i in range(5):
        sender.sendto(b"%d" % i, receiver.getsockname())
    reader = reader_for(receiver)

    assert [data for data, _ in reader.read(2)] == [b"0", b"1"]
    assert [data for data, _ in reader.read()] == [b"2", b"3", b"4"]


def test_peers_of_two_sockets_are_told_apart_and_named_by_ip_and_port(
    receiver: socket.socket, sender: socket.socket
) -> None:
    with udp(socket.AF_INET, V4) as other:
        for i in range(3):
            sender.sendto(b"a%d" % i, receiver.getsockname())
            other.sendto(b"b%d" % i, receiver.getsockname())
        reader = reader_for(receiver)

        got = read_all(reader)

        keys = {data[:1]: key for data, key in got}
        assert keys[b"a"] != keys[b"b"]
        assert [key == keys[data[:1]] for data, key in got] == [True] * 6
        assert reader.address(keys[b"a"]) == sender.getsockname()
        assert reader.address(keys[b"b"]) == other.getsockname()
        port = other.getsockname()[1]
        assert peer_name(reader.address(keys[b"b"])) == f"127.0.0.1:{port}"


def test_ipv6_datagrams_and_peers_read_like_recvfrom_reads_them() -> None:
    with udp(socket.AF_INET6, V6) as receiver, udp(socket.AF_INET6, V6) as sender:
        sent = [b"", b"<13>over ipv6", b"x" * V6_MAX]
        for data in [*sent, b"for recvfrom"]:
            sender.sendto(data, receiver.getsockname())
        reader = reader_for(receiver)

        got = reader.read(len(sent))
        _, address = receiver.recvfrom(100)

        assert [data for data, _ in got] == sent
        host, port = reader.address(got[0][1])
        assert (host, port) == address[:2] == sender.getsockname()[:2]
        assert peer_name((host, port)) == f"[::1]:{port}"


def test_an_ipv4_peer_of_an_ipv6_socket_is_named_as_recvfrom_names_it() -> None:
    # The IPv6 socket listens on 127.0.0.1 only, in its IPv4-mapped form.
    with (
        udp(socket.AF_INET6, "::ffff:" + V4) as receiver,
        udp(socket.AF_INET, V4) as sender,
    ):
        port = receiver.getsockname()[1]
        for data in (b"one", b"two"):
            sender.sendto(data, (V4, port))
        reader = reader_for(receiver)

        ((data, key),) = reader.read(1)
        _, address = receiver.recvfrom(100)

        assert data == b"one"
        assert reader.address(key) == address[:2]
        assert reader.address(key) == ("::ffff:127.0.0.1", sender.getsockname()[1])


def test_an_empty_socket_returns_nothing_without_blocking(
    receiver: socket.socket,
) -> None:
    receiver.setblocking(True)
    reader = reader_for(receiver)

    started = time.monotonic()
    assert reader.read() == []
    assert time.monotonic() - started < 1.0


def test_a_datagram_longer_than_a_slot_comes_back_truncated(
    receiver: socket.socket, sender: socket.socket
) -> None:
    reader = Reader.for_socket(receiver, slots=2, size=8)
    assert reader is not None
    for data in (b"0123456789abcdef", b"short"):
        sender.sendto(data, receiver.getsockname())

    (cut, _), (whole, _) = reader.read()

    assert cut == b"01234567"
    assert type(cut) is TruncatedFrame
    assert whole == b"short"
    assert type(whole) is bytes


def test_a_closed_socket_raises_oserror_with_its_errno(
    receiver: socket.socket,
) -> None:
    reader = reader_for(receiver)
    receiver.close()

    with pytest.raises(OSError) as raised:
        reader.read()

    assert raised.value.errno is not None
    assert raised.value.strerror


def test_there_is_no_reader_without_recvmmsg_or_for_a_stream_socket(
    monkeypatch: pytest.MonkeyPatch, receiver: socket.socket
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as stream:
        assert Reader.for_socket(stream) is None
    monkeypatch.setattr(recvmmsg, "_recvmmsg", None)
    assert Reader.for_socket(receiver) is None
