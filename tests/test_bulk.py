"""Tests for logd.bulk: a chunk parsed at once gives what the line parser gives."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from logd import bulk
from logd.batch import UNKNOWN_APP, Batcher, encode, encode_columns, span
from logd.framing import TruncatedFrame
from logd.line import Line
from logd.parser import parse
from logd.spool import Entry, Spool
from logd.store import Store
from logd.writer import Writer

SOURCE = "127.0.0.1:40000"
RECEIVED = 1_764_000_000_123_456
BOM = "\ufeff"

# Header pieces, well formed and not, including the edges of each grammar.
PRIS = ["0", "7", "13", "165", "191", "192", "007", "", "x"]
VERSIONS = ["1", "1", "1", "2", "01"]
SECONDS = [
    "2026-12-03T20:28:12",
    "2026-12-03t20:28:12",
    "2024-02-29T23:59:59",
    "2025-02-29T10:00:00",
    "2026-12-03T24:00:00",
    "2026-13-03T10:00:00",
    "1969-12-31T23:59:59",
    "2026-12-3T10:00:00",
]
FRACTIONS = ["", ".1", ".003", ".123456", ".1234567", ".000000001", "."]
ZONES = ["Z", "z", "+00:00", "+05:30", "-07:00", "+23:59", "+24:00", "-00:61", ""]
WORDS = ["-", "host-1", "web", "1234", "ID47", "ä", "a-b_c.d", "--", "x=y", "[x]", ""]
STRUCTURED = [
    "-",
    '[exampleSDID@32473 iut="3" eventSource="Application"]',
    '[a x="1"][b y="2"]',
    '[a x="q\\"uote"]',
    '[a x="]"]',
    "[a]",
    '[a  x="1" ]',
    "[a x=1]",
    "[]",
    '[a x="1"]x',
]
MESSAGES = [
    "",
    "hello world",
    BOM + "with a byte order mark",
    BOM,
    "tab\tand\rreturn",
    "  leading spaces",
    "ünïcödé ✓",
    "[not sd] text",
    "- dash",
]


def stamps(
    seconds: list[str], fractions: list[str], zones: list[str]
) -> st.SearchStrategy[str]:
    """A TIMESTAMP from these pieces, or the NILVALUE."""
    return st.one_of(
        st.just("-"),
        st.builds(
            lambda s, f, z: s + f + z,
            st.sampled_from(seconds),
            st.sampled_from(fractions),
            st.sampled_from(zones),
        ),
    )


def encoded(fields: list[str], message: str | None) -> bytes:
    """A frame of header fields, and MSG after a space when there is one."""
    text = " ".join(fields)
    if message is not None:
        text += " " + message
    return text.encode()


header_time = stamps(SECONDS, FRACTIONS, ZONES)


@st.composite
def frames(draw: st.DrawFn) -> bytes:
    """One frame of RFC 5424 shape, now and then off the grammar."""
    fields = [
        "<" + draw(st.sampled_from(PRIS)) + ">" + draw(st.sampled_from(VERSIONS)),
        draw(header_time),
        *(draw(st.sampled_from(WORDS)) for _ in range(4)),
        draw(st.sampled_from(STRUCTURED)),
    ]
    message = draw(st.one_of(st.none(), st.sampled_from(MESSAGES), st.text()))
    return encoded(fields, message)


def row(columns: bulk.Columns, i: int) -> Line:
    """Line i of a chunk, as the ingest view stores it (fraction added)."""
    digits = columns.fraction[i]
    fraction = int(digits[:6].ljust(6, "0")) if digits else 0
    return Line(
        ts=columns.ts[i] + fraction,
        received=columns.received,
        facility=columns.facility[i],
        severity=columns.severity[i],
        host=columns.host[i],
        app_name=columns.app_name[i],
        procid=columns.procid[i],
        msgid=columns.msgid[i],
        message=columns.message[i],
        structured_data=columns.structured_data[i],
        source=columns.source,
    )


def loggen(seq: int) -> bytes:
    return (
        f"<38>1 2026-12-03T20:28:12+00:00 localhost prg00000 1234 - - "
        f"{BOM}seq: {seq:010d}, thread: 0000, runid: 1764793692, "
        f"stamp: 2026-12-03T20:28:12 PADDPADDPADD"
    ).encode()


@settings(max_examples=1500)
@given(st.lists(frames(), min_size=1, max_size=6))
@example([b"<13>1 - - - - - -"])
@example([b"<13>1 2026-12-03T20:28:12.5Z h a p m - msg", b"<0>1 - - - - - - x"])
def test_a_chunk_it_takes_reads_as_the_line_parser_reads_it(chunk: list[bytes]) -> None:
    columns = bulk.parse(chunk, RECEIVED, SOURCE)
    lines = [parse(frame, RECEIVED, SOURCE) for frame in chunk]
    if columns is None:
        return
    assert len(columns) == len(chunk)
    for i, line in enumerate(lines):
        assert not line.parse_error, chunk[i]
        assert row(columns, i) == line, chunk[i]


@st.composite
def well_formed(draw: st.DrawFn) -> bytes:
    """One frame in the form the pattern covers."""
    time = draw(stamps(SECONDS[:3], [f for f in FRACTIONS if f != "."], ZONES[:6]))
    fields = [
        "<" + draw(st.sampled_from(PRIS[:5])) + ">1",
        time,
        *(draw(st.sampled_from(WORDS[:-1])) for _ in range(4)),
        draw(st.sampled_from(STRUCTURED[:7])),
    ]
    message = draw(st.one_of(st.none(), st.sampled_from(MESSAGES), st.text()))
    return encoded(fields, None if message is None else message.replace("\n", " "))


@settings(max_examples=500)
@given(st.lists(well_formed(), min_size=1, max_size=6))
def test_it_takes_every_chunk_of_well_formed_lines(chunk: list[bytes]) -> None:
    # The converse: without it the property above would hold for a parser
    # that never takes anything.
    lines = [parse(frame, RECEIVED, SOURCE) for frame in chunk]
    assert not any(line.parse_error for line in lines)
    columns = bulk.parse(chunk, RECEIVED, SOURCE)
    assert columns is not None, chunk
    assert [row(columns, i) for i in range(len(chunk))] == lines


@st.composite
def without_structured_data(draw: st.DrawFn) -> bytes:
    """A frame of the form the fast path reads, now and then off it."""
    time = draw(stamps(SECONDS, [""], ZONES))
    # Mostly well formed, so that whole chunks of them are common.
    fields = [
        "<"
        + draw(st.sampled_from(PRIS[:5] * 4 + PRIS))
        + ">"
        + draw(st.sampled_from(["1"] * 8 + VERSIONS)),
        time,
        *(draw(st.sampled_from(WORDS[:-1] * 8 + WORDS)) for _ in range(4)),
        draw(st.sampled_from(["-"] * 30 + STRUCTURED)),
    ]
    message = draw(st.one_of(st.none(), st.sampled_from(MESSAGES), st.text()))
    return encoded(fields, message)


@settings(max_examples=1500)
@given(st.lists(without_structured_data(), min_size=1, max_size=6))
@example(
    [b"<13>1 - h a p m -", b"<13>1 - h a p m - ", b"<0>1 - - - - - - \xef\xbb\xbfx"]
)
@example([b"<13>1 2026-12-03T20:28:12Z h  a p m - two spaces"])
def test_splitting_at_spaces_reads_what_the_pattern_reads(chunk: list[bytes]) -> None:
    # The fast path for lines without STRUCTURED-DATA must take no line the
    # pattern would not, and read each one alike.
    text = "\n".join(f.decode(errors="replace").replace("\n", " ") for f in chunk)
    split = bulk._split(text, len(chunk))
    if split is not None:
        assert split == bulk._match(text, len(chunk))


def test_lines_without_structured_data_take_the_fast_path() -> None:
    chunk = [loggen(seq) for seq in range(3)]
    text = b"\n".join(chunk).decode()
    assert bulk._split(text, 3) is not None
    with_sd = b'<13>1 - h a - - [x@1 a="b"] m'
    assert bulk._split(b"\n".join([with_sd, *chunk]).decode(), 4) is None


def test_a_loggen_chunk_is_one_pass_with_shared_values() -> None:
    chunk = [loggen(seq) for seq in range(1000)]
    columns = bulk.parse(chunk, RECEIVED, SOURCE)
    assert columns is not None
    assert len(columns) == 1000
    second = datetime(2026, 12, 3, 20, 28, 12, tzinfo=UTC).timestamp()
    assert set(columns.ts) == {int(second) * 1_000_000}
    assert set(columns.fraction) == {""}
    assert (columns.facility[0], columns.severity[0]) == (4, 6)
    assert columns.host[0] == "localhost" and columns.app_name[0] == "prg00000"
    assert columns.message[7].startswith("seq: 0000000007, thread")
    assert [row(columns, i) for i in range(1000)] == [
        parse(frame, RECEIVED, SOURCE) for frame in chunk
    ]


@pytest.mark.parametrize(
    ("chunk", "why"),
    [
        ([b"<13>Dec  3 20:28:12 host app: rfc 3164"], "RFC 3164"),
        ([loggen(1), b"<13>1 2026-12-03T20:28:12Z h a - - - \xff\xfe"], "bad UTF-8"),
        ([loggen(1), b"<13>1 - h a - - - two\nlines"], "a newline inside"),
        ([loggen(1), TruncatedFrame(loggen(2)[:40])], "cut by the framer"),
        ([b"<13>1 - h a - - - " + b"x" * 16_400], "a Docker piece"),
        ([b"<13>1 2025-02-29T10:00:00Z h a - - - no such day"], "no such day"),
        ([b"<13>1 2026-12-03T10:00:00+24:00 h a - - - no such zone"], "bad zone"),
        ([b"<13>1 2026-12-03T10:00:00Z h a - - [a x=1] bad sd"], "bad SD"),
        ([loggen(1), b"<192>1 - - - - - - PRI too large"], "one bad line"),
        ([], "nothing"),
    ],
)
def test_falls_back_to_the_line_parser(chunk: list[bytes], why: str) -> None:
    assert bulk.parse(chunk, RECEIVED, SOURCE) is None, why


def test_nil_time_takes_the_receive_time_and_nil_fields_are_empty() -> None:
    columns = bulk.parse([b"<165>1 - - - - - -"], RECEIVED, SOURCE)
    assert columns is not None
    assert row(columns, 0) == Line(
        ts=RECEIVED, received=RECEIVED, facility=20, severity=5, source=SOURCE
    )


def test_split_keeps_every_column_aligned() -> None:
    chunk = [loggen(seq) for seq in range(10)]
    columns = bulk.parse(chunk, RECEIVED, SOURCE)
    assert columns is not None
    columns.app = [f"app{i}" for i in range(10)]
    columns.service = ["s"] * 10
    columns.container = ["c"] * 10
    columns.labels = [{"i": str(i)} for i in range(10)]
    head, rest = columns.split(4)
    assert rest is not None
    assert (len(head), len(rest)) == (4, 6)
    assert head.message[3].startswith("seq: 0000000003")
    assert rest.message[0].startswith("seq: 0000000004")
    assert rest.app == [f"app{i}" for i in range(4, 10)]
    assert rest.labels is not None and rest.labels[0] == {"i": "4"}
    assert columns.split(10) == (columns, None)


# Stored: a chunk inserted as columns gives the rows its lines would give.

COLUMNS = (
    "toUnixTimestamp64Micro(ts), toUnixTimestamp64Micro(received), app, service,"
    " container, host, facility, severity, app_name, procid, msgid, message,"
    " structured_data, labels, parse_error, invalid_utf8, truncated, raw"
)


def stored(store: Store, source: str) -> list[tuple[object, ...]]:
    return store.rows(
        f"SELECT {COLUMNS} FROM logs WHERE source = {{s:String}} ORDER BY seq",
        {"s": source},
    )


def test_a_chunk_stores_the_rows_its_lines_store(store: Store, app_name: str) -> None:
    chunk = [
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47"
        b' [exampleSDID@32473 iut="3" eventSource="Application"] \xef\xbb\xbfAn app',
        b"<13>1 2026-12-03T20:28:12.123456789+05:30 h "
        + app_name.encode()
        + b" 9 m - x",
        b"<13>1 2026-12-03T20:28:12.5-07:00 - - - - - dashes",
        b"<0>1 - - - - - -",
    ]
    now = time.time_ns() // 1000
    columns = bulk.parse(chunk, now, f"bulk-{app_name}")
    assert columns is not None
    store.insert(encode_columns(columns, now))
    lines = [parse(frame, now, f"lines-{app_name}") for frame in chunk]
    for seq, line in enumerate(lines, now + 100):
        line.seq = seq
        line.app = line.app_name or UNKNOWN_APP
    store.insert(encode(lines))
    got = stored(store, f"bulk-{app_name}")
    assert got == stored(store, f"lines-{app_name}")
    assert [row[2] for row in got] == ["evntslog", app_name, "unknown", "unknown"]
    assert got[1][0] == datetime(2026, 12, 3, 14, 58, 12, 123456, UTC).timestamp() * 1e6


def test_a_chunk_with_no_value_in_a_column_leaves_it_to_its_default(
    store: Store, app_name: str
) -> None:
    now = time.time_ns() // 1000
    columns = bulk.parse([b"<13>1 - - - - - -"] * 3, now, app_name)
    assert columns is not None
    body = orjson.loads(encode_columns(columns, now))
    assert "host" not in body and "app" not in body and "ts_fraction" not in body
    store.insert(encode_columns(columns, now))
    assert [row[2:6] for row in stored(store, app_name)] == [
        ("unknown", "", "", "")
    ] * 3


def test_an_enriched_chunk_stores_app_labels_and_falls_back_per_line(
    store: Store, app_name: str
) -> None:
    now = time.time_ns() // 1000
    chunk = [
        b"<13>1 - vm 0123456789ab - - - from a container",
        b"<13>1 - vm sshd - - - x",
    ]
    columns = bulk.parse(chunk, now, app_name)
    assert columns is not None
    columns.app = [app_name, ""]
    columns.service = ["cart", ""]
    columns.container = ["web-1", ""]
    columns.labels = [{"team": "blue"}, {}]
    store.insert(encode_columns(columns, now))
    got = [row[2:6] + row[13:14] for row in stored(store, app_name)]
    assert got == [
        (app_name, "cart", "web-1", "vm", {"team": "blue"}),
        ("sshd", "", "", "vm", {}),
    ]


@pytest.mark.parametrize(
    "labels",
    [
        [{"team": "blue", "tier": "web"}] * 3,
        [{"team": "blue"}, {}, {"team": "red", "\u00e9": '"q"'}],
        [{}, {}, {}],
    ],
    ids=["one-container", "mixed", "none"],
)
def test_enriched_columns_encode_as_plain_json_would(
    labels: list[dict[str, str]],
) -> None:
    now = time.time_ns() // 1000
    columns = bulk.parse([b"<13>1 - vm web - - - x"] * 3, now, "10.0.0.1:5")
    assert columns is not None
    columns.app = ["a", "b", "c"]
    columns.service = ["s"] * 3
    columns.container = ["web-1"] * 3
    columns.labels = labels

    body = orjson.loads(encode_columns(columns, now))
    assert body["labels"] == labels
    assert body["app"] == ["a", "b", "c"]
    assert body["seq"] == [now, now + 1, now + 2]


async def test_pushed_chunks_are_sequenced_split_at_max_rows_and_stored(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path, span)
    writer = Writer(store, spool)
    writer.start()
    sealed: list[int] = []

    def deliver(entry: Entry) -> None:
        sealed.append(entry.count)
        writer.submit(entry)

    batcher = Batcher(spool, deliver, max_rows=40)
    frames = [f"<13>1 - h {app_name} - - - m{i}".encode() for i in range(130)]
    now = time.time_ns() // 1000
    last = []
    for part in (frames[:30], frames[30:]):
        columns = bulk.parse(part, now, SOURCE)
        assert columns is not None
        last.append(batcher.push_columns(columns))
    await batcher.stop()
    assert writer.stop(timeout=30)
    assert sealed == [40, 40, 40, 10]
    rows = store.rows(
        "SELECT message, seq FROM logs WHERE app = {a:String} ORDER BY seq",
        {"a": app_name},
    )
    assert [message for message, _ in rows] == [f"m{i}" for i in range(130)]
    seqs = [seq for _, seq in rows]
    # Consecutive within a push; later pushes follow the wall clock.
    assert seqs[:30] == list(range(seqs[0], seqs[0] + 30))
    assert seqs[30:] == list(range(seqs[30], seqs[30] + 100))
    assert seqs[29] < seqs[30]
    assert last == [seqs[29], seqs[129]]
