"""Read many UDP datagrams with one recvmmsg(2) call, through ctypes.

A `recvfrom` call costs about 2.4 us of CPU per 200-byte datagram, half of
it in Python: the call and the objects it makes. Under a flood the event
loop spends its time there and the kernel drops what it cannot queue. One
`recvmmsg` call fills up to `SLOTS` preallocated slots, and what Python
still does per datagram is one copy of the payload and one of the peer's
address into ``bytes``: about 1.3 us in all, most of it now the kernel's
own work per datagram.

This is the only module that touches the syscall. A `Reader` is bound to
one socket and reuses its buffers on every call, so it is not safe to share
between threads; what `Reader.read` returns is copied out and stays valid.
A peer is returned as the raw socket address the kernel wrote (its key in
a dict); `Reader.address` turns one into ``(host, port)`` as ``recvfrom``
would, and remembers the answer.

Scope: Linux (glibc or musl) only, unconnected AF_INET and AF_INET6
datagram sockets, one buffer per datagram and no control messages
(no timestamps, no destination address). Elsewhere `Reader.for_socket`
returns None and the caller reads with ``recvfrom``. The slots take up to
`SLOTS` times 64 KiB of memory (16 MiB), reached only once datagrams that
large have filled every slot.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import socket
import sys
from typing import Any

from logd.framing import TruncatedFrame

__all__ = ["DATAGRAM_MAX", "SLOTS", "Reader"]

# The largest payload a UDP header can describe: a slot this big never cuts
# a datagram short.
DATAGRAM_MAX = 65535
# Datagrams one call can return. More slots save calls, but each one keeps
# up to DATAGRAM_MAX bytes of memory once a datagram that big has used it.
SLOTS = 256

# Bytes of the socket address the kernel writes, by family; also the
# length of a peer key.
_NAME_SIZE = {socket.AF_INET: 16, socket.AF_INET6: 28}
_EMPTY = frozenset({errno.EAGAIN, errno.EWOULDBLOCK})
# Peers remembered by `Reader.address` before the memory is cleared.
_KNOWN_PEERS = 65536


class _IoVec(ctypes.Structure):
    _fields_ = [("iov_base", ctypes.c_void_p), ("iov_len", ctypes.c_size_t)]


class _MsgHdr(ctypes.Structure):
    # glibc's layout; musl pads its int lengths so that size_t fits as well.
    _fields_ = [
        ("msg_name", ctypes.c_void_p),
        ("msg_namelen", ctypes.c_uint32),
        ("msg_iov", ctypes.c_void_p),
        ("msg_iovlen", ctypes.c_size_t),
        ("msg_control", ctypes.c_void_p),
        ("msg_controllen", ctypes.c_size_t),
        ("msg_flags", ctypes.c_int),
    ]


class _MMsgHdr(ctypes.Structure):
    _fields_ = [("msg_hdr", _MsgHdr), ("msg_len", ctypes.c_uint)]


def _offset(struct: type[ctypes.Structure], field: str) -> int:
    return int(getattr(struct, field).offset)


_HEADER_SIZE = ctypes.sizeof(_MMsgHdr)
_WORD = ctypes.sizeof(ctypes.c_uint)
# Where the kernel writes each message's length and flags, counted in
# unsigned ints from the start of its header.
_STRIDE = _HEADER_SIZE // _WORD
_LEN_AT = _offset(_MMsgHdr, "msg_len") // _WORD
_FLAGS_AT = (_offset(_MMsgHdr, "msg_hdr") + _offset(_MsgHdr, "msg_flags")) // _WORD


def _bind() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        function = ctypes.CDLL(None, use_errno=True).recvmmsg
    except (AttributeError, OSError):
        return None
    function.argtypes = [
        ctypes.c_int,
        ctypes.c_void_p,
        ctypes.c_uint,
        ctypes.c_int,
        ctypes.c_void_p,
    ]
    function.restype = ctypes.c_int
    return function


# libc's recvmmsg, or None where there is none.
_recvmmsg = _bind()


class Reader:
    """A socket's datagrams, read up to `slots` at a time with recvmmsg.

    Make one with `for_socket`. It never blocks: the socket is read with
    MSG_DONTWAIT whether it is blocking or not.
    """

    def __init__(
        self, sock: socket.socket, slots: int = SLOTS, size: int = DATAGRAM_MAX
    ) -> None:
        if _recvmmsg is None:
            raise RuntimeError("recvmmsg is not available: use Reader.for_socket")
        if sock.family not in _NAME_SIZE or sock.type != socket.SOCK_DGRAM:
            raise ValueError(
                f"need an AF_INET or AF_INET6 datagram socket, got {sock!r}"
            )
        if slots < 1 or size < 1:
            raise ValueError(f"need at least one slot of one byte, got {slots}x{size}")
        self.slots = slots
        self.size = size
        self._sock = sock
        self._family = sock.family
        self._name_size = _NAME_SIZE[sock.family]
        self._peers: dict[bytes, tuple[str, int]] = {}

        # Anonymous memory is zero pages until written, so a slot costs only
        # what its largest datagram so far has used; and slicing an mmap
        # makes a payload's bytes in one step.
        self._data = mmap.mmap(-1, slots * size)
        self._names = (ctypes.c_char * (slots * self._name_size))()
        self._vectors = (_IoVec * slots)()
        self._headers = (_MMsgHdr * slots)()
        self._point_headers()
        self._headers_at = ctypes.addressof(self._headers)
        self._pristine = bytes(self._headers)
        self._names_view = memoryview(self._names).cast("B")
        self._words = memoryview(self._headers).cast("B").cast("I")

    @classmethod
    def for_socket(
        cls, sock: socket.socket, slots: int = SLOTS, size: int = DATAGRAM_MAX
    ) -> Reader | None:
        """Return a reader for this socket, or None where recvmmsg cannot serve.

        None means: not Linux, a libc without recvmmsg, or a socket that is
        not an AF_INET or AF_INET6 datagram socket.
        """
        if _recvmmsg is None or sock.family not in _NAME_SIZE:
            return None
        if sock.type != socket.SOCK_DGRAM:
            return None
        return cls(sock, slots, size)

    def read(self, most: int | None = None) -> list[tuple[bytes, bytes]]:
        """Return the datagrams one call reads, oldest first, with their peer keys.

        At most `most` datagrams (all the slots when None); an empty list
        when the socket holds none. A datagram longer than a slot comes back
        as a `TruncatedFrame` of its first `size` bytes. A receive error
        other than "nothing to read" raises OSError with its errno.
        """
        want = self.slots if most is None else min(most, self.slots)
        if want < 1:
            return []
        count = self._call(want)
        if not count:
            return []

        # One C-level pass each for the lengths and the flags the kernel
        # wrote, then one copy per datagram.
        end = count * _STRIDE
        lengths = self._words[_LEN_AT:end:_STRIDE].tolist()
        flags = self._words[_FLAGS_AT:end:_STRIDE].tolist()
        data = self._data
        names = self._names_view[: count * self._name_size].tobytes()
        name_size = self._name_size
        read = [
            (data[start : start + length], names[at : at + name_size])
            for start, length, at in zip(
                range(0, count * self.size, self.size),
                lengths,
                range(0, len(names), name_size),
                strict=True,
            )
        ]
        # msg_flags stays 0 unless the kernel had to cut a datagram short.
        if any(flags):
            _mark_truncated(read, flags)

        # The kernel writes back each used header's name length and flags:
        # put them back so every call starts from the same headers.
        ctypes.memmove(self._headers_at, self._pristine, count * _HEADER_SIZE)
        return read

    def address(self, key: bytes) -> tuple[str, int]:
        """Return a peer key as ``(host, port)``, in the form recvfrom gives."""
        known = self._peers.get(key)
        if known is None:
            known = _address(self._family, key)
            if len(self._peers) >= _KNOWN_PEERS:
                self._peers.clear()
            self._peers[key] = known
        return known

    def _call(self, want: int) -> int:
        assert _recvmmsg is not None
        while True:
            count = int(
                _recvmmsg(
                    self._sock.fileno(),
                    self._headers_at,
                    want,
                    socket.MSG_DONTWAIT,
                    None,
                )
            )
            if count >= 0:
                return count
            code = ctypes.get_errno()
            if code in _EMPTY:
                return 0
            if code != errno.EINTR:
                raise OSError(code, os.strerror(code))

    def _point_headers(self) -> None:
        # Each header names its own slot of data and of address; nothing
        # moves, so this is done once. Exporting the mmap to ctypes also
        # keeps it from being closed while the kernel may write into it.
        self._data_export = ctypes.c_char.from_buffer(self._data)
        data_at = ctypes.addressof(self._data_export)
        names_at = ctypes.addressof(self._names)
        for i, (header, vector) in enumerate(
            zip(self._headers, self._vectors, strict=True)
        ):
            vector.iov_base = data_at + i * self.size
            vector.iov_len = self.size
            header.msg_hdr.msg_name = names_at + i * self._name_size
            header.msg_hdr.msg_namelen = self._name_size
            header.msg_hdr.msg_iov = ctypes.addressof(vector)
            header.msg_hdr.msg_iovlen = 1


def _mark_truncated(read: list[tuple[bytes, bytes]], flags: list[int]) -> None:
    for i, flag in enumerate(flags):
        if flag & socket.MSG_TRUNC:
            payload, key = read[i]
            read[i] = (TruncatedFrame(payload), key)


def _address(family: int, key: bytes) -> tuple[str, int]:
    # sockaddr_in and sockaddr_in6 both keep the port, big-endian, in
    # bytes 2-3; the rest is laid out per family.
    port = int.from_bytes(key[2:4], "big")
    if family == socket.AF_INET:
        return socket.inet_ntop(socket.AF_INET, key[4:8]), port
    host = socket.inet_ntop(socket.AF_INET6, key[8:24])
    scope = int.from_bytes(key[24:28], sys.byteorder)
    if scope:
        # getnameinfo names the scope as recvfrom does: by interface for a
        # link-local address, by number otherwise.
        flags = socket.NI_NUMERICHOST | socket.NI_NUMERICSERV
        host = socket.getnameinfo((host, port, 0, scope), flags)[0]
    return host, port
