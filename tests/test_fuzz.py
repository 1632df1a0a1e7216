"""A fuzz of framing, parsing and storage: every frame is stored, parsed or flagged.

Hypothesis builds streams of frames: well-formed RFC 5424 and RFC 3164,
bytes at random, and well-formed frames with bytes flipped or cut. Each
stream goes through the real framer in random chunks and the real parser,
and every line goes to the embedded engine. About 100k frames run by
default; LOGD_FUZZ_EXAMPLES raises the count for a longer run.
"""

from __future__ import annotations

import itertools
import os
import random
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from logd.batch import encode
from logd.framing import Framer
from logd.line import Line
from logd.parser import parse
from logd.store import Store

EXAMPLES = int(os.environ.get("LOGD_FUZZ_EXAMPLES", "1250"))
MAX_FRAME = 2048

_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-._"
_STAMPS = ["-", "2026-12-03T17:43:20.123456Z", "2026-12-03T18:00:00+05:30", "2026-1"]
_SDS = ["-", '[a@1 k="v"]', '[x y="a\\"b\\]"][z]', "[broken", '[a k="v]']


def _word(rng: random.Random) -> str:
    return "".join(rng.choices(_ALPHABET, k=rng.randint(1, 12)))


def _text(rng: random.Random) -> str:
    # Any code point but the surrogates, which UTF-8 cannot carry.
    points = rng.choices(_CODE_POINTS, k=rng.randint(0, 60))
    return "".join(points).replace("\n", " ").replace("\x00", " ")


def _rfc5424(rng: random.Random) -> bytes:
    words = " ".join(_word(rng) for _ in range(4))
    pri = rng.randint(0, 191)
    head = f"<{pri}>1 {rng.choice(_STAMPS)} {words} {rng.choice(_SDS)}"
    return f"{head} {_text(rng)}".encode()


def _rfc3164(rng: random.Random) -> bytes:
    pri = rng.randint(0, 191)
    head = f"<{pri}>Dec  3 17:43:20 {_word(rng)} {_word(rng)}[{rng.randint(1, 99)}]:"
    return f"{head} {_text(rng)}".encode()


def _mangled(rng: random.Random) -> bytes:
    frame = bytearray(rng.choice([_rfc5424, _rfc3164])(rng))
    for _ in range(rng.randint(1, 4)):
        frame[rng.randrange(len(frame))] = rng.randint(0, 255)
    return bytes(frame[: rng.randint(1, len(frame))])


def _noise(rng: random.Random) -> bytes:
    return rng.randbytes(rng.choice([1, 10, 200, 3000]))


_CODE_POINTS = [chr(c) for c in range(1, 0xD800, 7)]
_KINDS = [_rfc5424, _rfc3164, _mangled, _noise]


def _frame(seed: int) -> bytes:
    """One frame from a seed hypothesis draws and shrinks; it picks the kind.

    A frame of nothing but trailers (LF, CR, NUL) is no message: the framer
    skips it, as it skips empty frames, so it is made into one that is.
    """
    frame = _KINDS[seed % len(_KINDS)](random.Random(seed))
    return frame if frame.strip(b"\r\n\x00") else b"x" + frame


def _octet_counted(frames: list[bytes]) -> bytes:
    return b"".join(b"%d %s" % (len(f), f) for f in frames)


def _chunks(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    edges = [0, *points, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(edges)]


def test_every_fuzzed_frame_is_stored_parsed_or_flagged(
    store: Store, app_name: str
) -> None:
    sent: list[int] = []
    lines: list[Line] = []

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(
        st.lists(st.integers(0, 2**32), min_size=80, max_size=120),
        st.lists(st.integers(0, 10**6), max_size=20),
    )
    def one_stream(seeds: list[int], cuts: list[int]) -> None:
        frames = [_frame(seed) for seed in seeds]
        framer = Framer(MAX_FRAME)
        received = time.time_ns() // 1000
        out: list[bytes] = []
        for chunk in _chunks(_octet_counted(frames), cuts):
            out.extend(framer.feed(chunk))
        out.extend(framer.close())
        assert len(out) == len(frames)
        for frame in out:
            line = parse(frame, received, "127.0.0.1:1")
            flagged = line.parse_error or line.invalid_utf8 or line.truncated
            assert not flagged or line.raw or line.truncated
            line.app = app_name
            lines.append(line)
        sent.append(len(frames))

    one_stream()
    for seq, line in enumerate(lines, start=1):
        line.seq = seq
    for start in range(0, len(lines), 50_000):
        store.insert(encode(lines[start : start + 50_000]))
    stored = store.rows(
        "SELECT count(), countIf(parse_error != '' OR invalid_utf8 OR truncated) "
        "FROM logs WHERE app = {a:String}",
        {"a": app_name},
    )[0]
    flagged = sum(
        1 for ln in lines if ln.parse_error or ln.invalid_utf8 or ln.truncated
    )
    print(f"{sum(sent)} frames fuzzed, {flagged} flagged")
    assert stored == (sum(sent), flagged)
    assert sum(sent) >= EXAMPLES * 80
