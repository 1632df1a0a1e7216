"""Tests for logd.framing: RFC 6587 stream framing and UDP datagrams."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logd.framing import Framer, TruncatedFrame, datagram

OCTET_HEADER = re.compile(rb"[1-9][0-9]{0,8} ")


def feed_all(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    """Feed every chunk, then close, and return all frames in order."""
    frames: list[bytes] = []
    for chunk in chunks:
        frames.extend(framer.feed(chunk))
    frames.extend(framer.close())
    return frames


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


def flagged(frames: list[bytes]) -> list[bool]:
    return [type(frame) is TruncatedFrame for frame in frames]


# Frames


def test_newline_ends_a_frame() -> None:
    assert Framer().feed(b"<13>one\n<13>two\n") == [b"<13>one", b"<13>two"]


def test_one_cr_before_the_newline_is_dropped() -> None:
    assert Framer().feed(b"a\r\nb\r\r\nc\n") == [b"a", b"b\r", b"c"]


def test_nul_ends_a_frame_like_pythons_syslog_handler_sends() -> None:
    frames = Framer().feed(b"<14>hello\x00<14>world\x00")
    assert frames == [b"<14>hello", b"<14>world"]


def test_empty_frames_between_trailers_are_skipped() -> None:
    assert Framer().feed(b"\n\na\n\r\n\x00\nb\n\n") == [b"a", b"b"]


def test_octet_counted_frame_takes_exactly_msg_len_bytes() -> None:
    frames = Framer().feed(b"11 <13>one\ntwo5 <13>x")
    assert frames == [b"<13>one\ntwo", b"<13>x"]


def test_octet_counted_frame_may_hold_nul_and_cr() -> None:
    assert Framer().feed(b"5 a\x00b\rc") == [b"a\x00b\rc"]


def test_octet_counted_frame_drops_the_newline_srslog_counts_in() -> None:
    # Docker's syslog driver over TLS counts the LF it appends to each message.
    frames = Framer().feed(b"7 <13>ab\n8 <13>ab\r\n")
    assert frames == [b"<13>ab", b"<13>ab"]


def test_framing_is_decided_again_for_every_frame() -> None:
    data = b"<13>lf\n6 <13>oc<13>lf2\x003 abc\n"
    assert Framer().feed(data) == [b"<13>lf", b"<13>oc", b"<13>lf2", b"abc"]


def test_newline_between_octet_counted_frames_is_tolerated() -> None:
    assert Framer().feed(b"3 abc\n3 def\n") == [b"abc", b"def"]


def test_a_chunk_mixing_framings_is_tried_for_the_bulk_path_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Trying at every counted frame would split the rest of the chunk each
    # time: quadratic work a sender could ask for with one chunk.
    tries: list[int] = []
    bulk = Framer._counted_run

    def counted_run(self: Framer, buf: bytes, pos: int, frames: list[bytes]) -> int:
        tries.append(pos)
        return bulk(self, buf, pos, frames)

    monkeypatch.setattr(Framer, "_counted_run", counted_run)
    data = b"3 ab\nline\n" * 1000
    assert Framer().feed(data) == [b"ab", b"line"] * 1000
    assert tries == [0]


def test_digits_without_a_space_start_a_newline_framed_frame() -> None:
    data = b"2026-12-03 started\n1234567890 ten digits\n12\n"
    expected = [b"2026-12-03 started", b"1234567890 ten digits", b"12"]
    assert Framer().feed(data) == expected


def test_msg_len_split_across_reads_waits_for_the_space() -> None:
    framer = Framer()
    assert framer.feed(b"1") == []
    assert framer.feed(b"0") == []
    assert framer.feed(b" 0123456789") == [b"0123456789"]


def test_partial_frame_is_kept_until_its_trailer_arrives() -> None:
    framer = Framer()
    assert framer.feed(b"<13>a\n<13>par") == [b"<13>a"]
    assert framer.buffered == len(b"<13>par")
    assert framer.feed(b"tial\n") == [b"<13>partial"]
    assert framer.buffered == 0


def test_partial_octet_counted_frame_is_kept_until_complete() -> None:
    framer = Framer()
    assert framer.feed(b"10 01234") == []
    assert framer.buffered == len(b"10 01234")
    assert framer.feed(b"56789") == [b"0123456789"]


def test_close_returns_a_last_frame_without_trailer() -> None:
    framer = Framer()
    assert framer.feed(b"<13>a\n<13>b\r") == [b"<13>a"]
    assert framer.close() == [b"<13>b"]
    assert framer.buffered == 0


def test_close_returns_an_octet_counted_frame_cut_by_the_peer_as_truncated() -> None:
    framer = Framer()
    assert framer.feed(b"20 <13>short") == []
    frames = framer.close()
    assert frames == [b"<13>short"]
    assert flagged(frames) == [True]


def test_close_on_empty_stream_returns_nothing() -> None:
    assert Framer().close() == []


# Oversized frames


def test_oversized_newline_frame_is_cut_flagged_and_its_rest_skipped() -> None:
    data = b"<13>" + b"x" * 30 + b"\n<13>next\n"
    for chunks in ([data], byte_by_byte(data)):
        frames = feed_all(Framer(max_frame=10), chunks)
        assert frames == [b"<13>xxxxxx", b"<13>next"]
        assert flagged(frames) == [True, False]


def test_oversized_octet_counted_frame_is_cut_flagged_and_its_rest_skipped() -> None:
    body = b"<13>" + b"y" * 30
    data = b"%d %s5 <13>z" % (len(body), body)
    for chunks in ([data], byte_by_byte(data)):
        frames = feed_all(Framer(max_frame=10), chunks)
        assert frames == [b"<13>yyyyyy", b"<13>z"]
        assert flagged(frames) == [True, False]


def test_frame_of_exactly_max_frame_bytes_is_not_flagged() -> None:
    data = b"0123456789\r\n10 0123456789abcdefghij\n"
    for chunks in ([data], byte_by_byte(data)):
        frames = feed_all(Framer(max_frame=10), chunks)
        assert frames == [b"0123456789", b"0123456789", b"abcdefghij"]
        assert flagged(frames) == [False, False, False]


def test_buffer_stays_bounded_when_a_frame_never_ends() -> None:
    framer = Framer(max_frame=1000)
    most = 0
    frames: list[bytes] = []
    for _ in range(500):
        frames.extend(framer.feed(b"z" * 4096))
        most = max(most, framer.buffered)
    frames.extend(framer.feed(b"\n<13>after\n"))
    assert most <= 1000 + 4096
    assert frames == [b"z" * 1000, b"<13>after"]
    assert flagged(frames) == [True, False]


def test_buffer_stays_bounded_when_msg_len_is_huge() -> None:
    framer = Framer(max_frame=1000)
    frames = framer.feed(b"999999999 ")
    most = 0
    for _ in range(500):
        frames.extend(framer.feed(b"q" * 4096))
        most = max(most, framer.buffered)
    assert most <= 1000 + 4096 + len(b"999999999 ")
    assert frames == [b"q" * 1000]
    assert flagged(frames) == [True]


# Datagrams


def test_datagram_strips_trailers() -> None:
    assert datagram(b"<13>hello\r\n\x00", 100) == b"<13>hello"


def test_datagram_keeps_inner_newlines() -> None:
    assert datagram(b"<13>a\nb\n", 100) == b"<13>a\nb"


def test_datagram_over_max_frame_is_cut_and_flagged() -> None:
    frame = datagram(b"<13>" + b"d" * 100, 10)
    assert frame == b"<13>dddddd"
    assert type(frame) is TruncatedFrame


def test_datagram_at_max_frame_is_not_flagged() -> None:
    assert type(datagram(b"0123456789\n", 10)) is bytes


def test_datagram_cut_short_by_the_receiver_stays_flagged() -> None:
    frame = datagram(TruncatedFrame(b"<13>cut\n"), 100)
    assert frame == b"<13>cut"
    assert type(frame) is TruncatedFrame


# Properties

lf_frames = st.binary(min_size=1, max_size=40).filter(
    lambda f: (
        b"\n" not in f
        and b"\x00" not in f
        and not f.endswith(b"\r")
        and not OCTET_HEADER.match(f)
    )
)
counted_frames = st.binary(min_size=1, max_size=40).filter(
    lambda f: not f.endswith(b"\n")
)
# "octet-lf": the LF is inside the count, as loggen, rsyslog and syslog-ng
# send it; runs of these take the framer's bulk path.
framings = st.sampled_from(
    ["lf", "crlf", "nul", "octet", "octet+lf", "octet-lf", "octet-lf", "octet-lf"]
)


@st.composite
def streams(draw: st.DrawFn, max_size: int = 8) -> tuple[list[bytes], bytes]:
    """A list of frames and their encoding with a random mix of framings."""
    frames: list[bytes] = []
    data = b""
    for _ in range(draw(st.integers(0, max_size))):
        framing = draw(framings)
        if framing == "octet-lf":
            # A CR before the counted LF would go with it.
            frame = draw(counted_frames.filter(lambda f: not f.endswith(b"\r")))
            data += b"%d %s\n" % (len(frame) + 1, frame)
        elif framing.startswith("octet"):
            frame = draw(counted_frames)
            data += b"%d %s" % (len(frame), frame)
            data += b"\n" if framing == "octet+lf" else b""
        else:
            frame = draw(lf_frames)
            data += frame + {"lf": b"\n", "crlf": b"\r\n", "nul": b"\x00"}[framing]
        frames.append(frame)
    return frames, data


@settings(max_examples=150)
@given(streams())
def test_feeding_whole_gives_the_frames_encoded(
    stream: tuple[list[bytes], bytes],
) -> None:
    frames, data = stream
    assert feed_all(Framer(), [data]) == frames


@settings(max_examples=60)
@given(streams())
def test_splitting_at_any_byte_boundary_gives_the_same_frames(
    stream: tuple[list[bytes], bytes],
) -> None:
    frames, data = stream
    for cut in range(len(data) + 1):
        assert feed_all(Framer(), [data[:cut], data[cut:]]) == frames
    assert feed_all(Framer(), byte_by_byte(data)) == frames


@settings(max_examples=100)
@given(streams(), st.lists(st.integers(1, 30), min_size=1, max_size=40))
def test_random_chunking_gives_the_same_frames(
    stream: tuple[list[bytes], bytes], sizes: list[int]
) -> None:
    frames, data = stream
    chunks: list[bytes] = []
    pos = 0
    while pos < len(data):
        size = sizes[len(chunks) % len(sizes)]
        chunks.append(data[pos : pos + size])
        pos += size
    assert feed_all(Framer(), chunks) == frames


@settings(max_examples=100)
@given(streams(), st.integers(1, 30))
def test_oversized_frames_come_back_cut_and_flagged_and_the_rest_intact(
    stream: tuple[list[bytes], bytes], max_frame: int
) -> None:
    frames, data = stream
    expected = [frame[:max_frame] for frame in frames]
    expected_flags = [len(frame) > max_frame for frame in frames]
    for chunks in ([data], byte_by_byte(data)):
        got = feed_all(Framer(max_frame=max_frame), chunks)
        assert got == expected
        assert flagged(got) == expected_flags


@settings(max_examples=100)
@given(st.binary(max_size=200), st.integers(1, 50))
def test_any_bytes_keep_the_buffer_bounded(data: bytes, max_frame: int) -> None:
    framer = Framer(max_frame=max_frame)
    for chunk in byte_by_byte(data):
        for frame in framer.feed(chunk):
            assert 0 < len(frame) <= max_frame
        assert framer.buffered <= max_frame + len(b"999999999 ") + 1
    assert all(0 < len(frame) <= max_frame for frame in framer.close())
