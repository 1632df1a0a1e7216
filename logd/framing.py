"""Cut a syslog byte stream into frames (RFC 6587), without doing any I/O.

Stream transports (TCP, TLS) carry many messages back to back. RFC 6587
allows two framings and senders mix them, so the choice is made again at
the start of every frame:

- octet counting: the frame starts with MSG-LEN (``[1-9][0-9]{0,8}``) and
  one space, then exactly MSG-LEN bytes of message;
- non-transparent framing: anything else, ended by LF. NUL ends a frame
  too, because Python's ``SysLogHandler`` ends its TCP messages with it.

Trailers are not content: one CR before the LF is dropped, and so is the
LF that srslog (Docker's syslog driver) counts into an octet-counted
frame. Empty frames are skipped.

A frame longer than ``max_frame`` comes back cut to ``max_frame`` bytes as
a `TruncatedFrame`; the rest of it is skipped, so the buffer stays near
``max_frame`` plus one read whatever the peer sends. A stream that ends in
the middle of an octet-counted frame yields what arrived, also flagged as a
`TruncatedFrame`.

UDP carries one message per datagram: see `datagram`.
"""

from __future__ import annotations

import re

__all__ = ["Framer", "TruncatedFrame", "datagram"]

_LF = 0x0A
_NUL = 0x00
# A digit right after a trailer may open an octet-counted frame. Searching
# for one is the C-speed test that lets newline-only chunks skip the loop.
# A literal first byte lets the regex engine scan fast; a character class
# such as [\n\x00] would make it about 15 times slower.
_COUNTED_AFTER_LF = re.compile(rb"\n[1-9]")
_COUNTED_AFTER_NUL = re.compile(rb"\x00[1-9]")
_MSG_LEN = re.compile(rb"([1-9][0-9]{0,8}) ")
_MAX_LEN_DIGITS = 9
# Why `Framer._counted` stopped.
_TAKEN = "taken"
_LINE = "line"
_WAIT = "wait"


class TruncatedFrame(bytes):
    """A frame cut short: longer than the maximum, or ended by the stream.

    It is a plain ``bytes`` for everyone else; the parser checks
    ``type(frame) is TruncatedFrame`` to set ``Line.truncated``.
    """

    __slots__ = ()


def datagram(data: bytes, max_frame: int) -> bytes:
    """Return the one message a UDP datagram carries.

    Trailing LF, CR and NUL are trailers, not content. A message longer
    than ``max_frame`` comes back as a `TruncatedFrame` of ``max_frame``
    bytes, and so does one already cut short by the receiver (given as a
    `TruncatedFrame`). An empty result means the datagram held nothing.
    """
    frame = data.rstrip(b"\r\n\x00")
    if len(frame) > max_frame:
        return TruncatedFrame(frame[:max_frame])
    if type(data) is TruncatedFrame:
        return TruncatedFrame(frame)
    return frame


class Framer:
    """Split one stream connection's bytes into syslog frames.

    Feed it every chunk the transport reads, in order; call `close` once at
    end of stream. One `Framer` per connection: it keeps the partial frame
    between reads.
    """

    def __init__(self, max_frame: int = 65536) -> None:
        self._max = max_frame
        # The unfinished frame, kept in the pieces it came in: joining them
        # only when they can complete a frame keeps a peer that drips one
        # byte at a time from costing time quadratic in the frame's size.
        self._parts: list[bytes] = []
        self._held = 0
        # What the unfinished frame waits for: a trailer (LF framing), or
        # this many bytes held (octet counting).
        self._needs_trailer = False
        self._needs_bytes = 0
        # Bytes of an oversized octet-counted frame still to be thrown away.
        self._skip_count = 0
        # An oversized LF-framed frame is being thrown away up to its trailer.
        self._skip_to_trailer = False

    @property
    def buffered(self) -> int:
        """Bytes held back: the start of a frame whose end has not arrived."""
        return self._held

    def feed(self, data: bytes) -> list[bytes]:
        """Return the frames completed by ``data``; keep the partial rest."""
        if self._skip_count or self._skip_to_trailer:
            data = self._skip(data)
        if not data:
            return []
        if self._held:
            if self._still_waiting(data):
                self._parts.append(data)
                self._held += len(data)
                return []
            buf = b"".join([*self._parts, data])
            self._parts = []
            self._held = 0
        else:
            buf = data
        has_nul = b"\x00" in buf
        if (
            0x31 <= buf[0] <= 0x39
            or _COUNTED_AFTER_LF.search(buf)
            or (has_nul and _COUNTED_AFTER_NUL.search(buf))
        ):
            return self._feed_mixed(buf, has_nul)
        return self._feed_lines(buf, has_nul)

    def close(self) -> list[bytes]:
        """Return what is left at end of stream, then forget it.

        A last frame without a trailer is still a frame; an octet-counted
        frame whose declared length never arrived comes back truncated.
        """
        buf = b"".join(self._parts)
        self._parts = []
        self._held = 0
        frames = self._feed_mixed(buf, b"\x00" in buf) if buf else []
        rest = b"".join(self._parts)
        self._parts = []
        self._held = 0
        self._skip_count = 0
        self._skip_to_trailer = False
        header = _MSG_LEN.match(rest)
        if header is None:
            frames.extend(self._finish(rest))
        elif len(rest) > header.end():
            frames.append(TruncatedFrame(rest[header.end() :]))
        return frames

    def _still_waiting(self, data: bytes) -> bool:
        """Tell whether ``data`` cannot yet finish (or overfill) the held frame."""
        held = self._held + len(data)
        if self._needs_trailer:
            no_trailer = b"\n" not in data and b"\x00" not in data
            return no_trailer and held <= self._max + 1
        return held < self._needs_bytes

    def _keep(self, rest: bytes, needs_trailer: bool, needs_bytes: int = 0) -> None:
        """Hold the unfinished frame ``rest`` until what it needs arrives."""
        self._parts = [rest] if rest else []
        self._held = len(rest)
        self._needs_trailer = needs_trailer
        self._needs_bytes = needs_bytes

    def _skip(self, data: bytes) -> bytes:
        """Drop the rest of an oversized frame; return what follows it."""
        if self._skip_count:
            dropped = min(self._skip_count, len(data))
            self._skip_count -= dropped
            return data[dropped:]
        end = _trailer(data, 0, b"\x00" in data)
        if end < 0:
            return b""
        self._skip_to_trailer = False
        return data[end + 1 :]

    def _feed_lines(self, buf: bytes, has_nul: bool) -> list[bytes]:
        """Split a chunk in which no frame is octet counted.

        This is the hot path: a handful of C-level scans and one split,
        with Python-level work per frame only when a chunk needs it.
        """
        if has_nul:
            buf = buf.replace(b"\x00", b"\n")
        frames = buf.split(b"\n")
        rest = frames.pop()
        if b"\r" in buf:
            frames = [f[:-1] if f.endswith(b"\r") else f for f in frames]
        if not all(frames):
            frames = [f for f in frames if f]
        if len(buf) > self._max and frames and max(map(len, frames)) > self._max:
            frames = [self._cut(f) for f in frames]
        self._hold_line(rest, frames)
        return frames

    def _feed_mixed(self, buf: bytes, has_nul: bool) -> list[bytes]:
        """Split a chunk frame by frame, deciding each frame's framing."""
        frames: list[bytes] = []
        pos = 0
        end = len(buf)
        while pos < end:
            first = buf[pos]
            if first in (_LF, _NUL):
                pos += 1
                continue
            if 0x31 <= first <= 0x39:
                pos, counted = self._counted(buf, pos, frames)
                if counted is _WAIT:
                    return frames
                if counted is _TAKEN:
                    continue
            trailer = _trailer(buf, pos, has_nul)
            if trailer < 0:
                self._hold_line(buf[pos:], frames)
                return frames
            frames.extend(self._finish(buf[pos:trailer]))
            pos = trailer + 1
        self._keep(b"", needs_trailer=False)
        return frames

    def _counted_run(self, buf: bytes, pos: int, frames: list[bytes]) -> int:
        """Take, in bulk, counted frames from ``pos`` that each end in LF.

        Most senders that count octets end each message with LF as well
        (loggen, rsyslog, syslog-ng). Splitting at LF then yields one
        "MSG-LEN SP MSG" piece per frame, and the run is taken when every
        declared length, written out again, equals the one the piece has:
        one comparison for all of them. Returns where the run ended: ``pos``
        itself when the chunk is not of this form and the loop in
        `_counted` reads it frame by frame.
        """
        last = buf.rfind(b"\n", pos)
        if last < 0:
            return pos
        run = buf[pos:last]
        if b"\r" in run:
            return pos
        pieces = run.split(b"\n")
        heads = [piece.partition(b" ") for piece in pieces]
        digits = [head[0] for head in heads]
        messages = [head[2] for head in heads]
        sizes = list(map(len, messages))
        # A piece without its space would still add up if only the digits
        # were compared; the byte count catches it.
        spaces = len(run) - sum(map(len, digits)) - sum(sizes) - (len(pieces) - 1)
        if spaces != len(pieces) or max(sizes) > self._max:
            return pos
        declared = " ".join(map(str, [size + 1 for size in sizes]))
        if b" ".join(digits) != declared.encode():
            return pos
        if not all(messages):
            messages = [message for message in messages if message]
        frames.extend(messages)
        return last + 1

    def _counted(self, buf: bytes, pos: int, frames: list[bytes]) -> tuple[int, str]:
        """Take the octet-counted frames that follow one another from ``pos``.

        Returns where it stopped and why: `_TAKEN` when the next frame is
        not octet counted or the chunk ended between frames, `_LINE` when
        the frame at ``pos`` turned out to be LF-framed, `_WAIT` when the
        frame at ``pos`` needs more bytes (it is then held). Consecutive
        frames are taken in one loop because a sender that counts octets
        counts them all.
        """
        if pos == 0:
            # Once per chunk, at its start: a chunk that mixes framings
            # would otherwise be split again at every counted frame in it.
            pos = self._counted_run(buf, pos, frames)
        end = len(buf)
        limit = self._max
        while pos < end and 0x31 <= buf[pos] <= 0x39:
            # MSG-LEN is 1 to 9 digits, so its space is in the next 10 bytes.
            space = buf.find(b" ", pos + 1, pos + _MAX_LEN_DIGITS + 1)
            if space < 0:
                tail = buf[pos:]
                if len(tail) <= _MAX_LEN_DIGITS and tail.isdigit():
                    self._keep(tail, needs_trailer=False, needs_bytes=len(tail) + 1)
                    return pos, _WAIT
                return pos, _LINE
            digits = buf[pos:space]
            if not digits.isdigit():
                return pos, _LINE
            start = space + 1
            stop = start + int(digits)
            # One byte over may be the LF a sender counts in, not content.
            if stop - start > limit + 1:
                # Cut an oversized frame as soon as max_frame bytes are in.
                if start + limit > end:
                    self._keep(
                        buf[pos:], needs_trailer=False, needs_bytes=start + limit - pos
                    )
                    return pos, _WAIT
                pos = self._oversized(buf, start, stop, frames)
                continue
            if stop > end:
                self._keep(buf[pos:], needs_trailer=False, needs_bytes=stop - pos)
                return pos, _WAIT
            frame = buf[start:stop]
            if frame[-1] == _LF:
                frame = frame[:-2] if frame.endswith(b"\r\n") else frame[:-1]
            if len(frame) > limit:
                frame = TruncatedFrame(frame[:limit])
            if frame:
                frames.append(frame)
            pos = stop
        return pos, _TAKEN

    def _oversized(self, buf: bytes, start: int, stop: int, frames: list[bytes]) -> int:
        """Cut an octet-counted frame that is over the maximum; skip the rest."""
        frames.append(TruncatedFrame(buf[start : start + self._max]))
        taken = min(len(buf), stop)
        self._skip_count = stop - taken
        return taken

    def _hold_line(self, rest: bytes, frames: list[bytes]) -> None:
        """Keep the unfinished LF-framed ``rest``, or cut it if already too long.

        One byte of slack leaves room for the CR that a CRLF trailer would
        strip, so a frame of exactly ``max_frame`` bytes is never flagged.
        """
        if len(rest) > self._max + 1:
            frames.append(TruncatedFrame(rest[: self._max]))
            self._skip_to_trailer = True
            rest = b""
        self._keep(rest, needs_trailer=True)

    def _finish(self, frame: bytes) -> list[bytes]:
        """Return a complete LF-framed frame, without CR, as a list of 0 or 1."""
        if frame.endswith(b"\r"):
            frame = frame[:-1]
        return [self._cut(frame)] if frame else []

    def _cut(self, frame: bytes) -> bytes:
        """Flag and cut a complete frame that is over the maximum."""
        if len(frame) > self._max:
            return TruncatedFrame(frame[: self._max])
        return frame


def _trailer(buf: bytes, pos: int, has_nul: bool) -> int:
    """Return the index of the first LF or NUL at or after ``pos``, or -1."""
    lf = buf.find(b"\n", pos)
    if not has_nul:
        return lf
    nul = buf.find(b"\x00", pos)
    if lf < 0 or 0 <= nul < lf:
        return nul
    return lf
