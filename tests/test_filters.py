"""Filters: parsing, and storage and the live tail agreeing on every match."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from multidict import MultiDict

from logd.batch import encode
from logd.line import Line
from logd.store import Store
from query import filters
from query.filters import BadParameter, from_query, parse_terms

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "loghub"
NOW = 1_780_000_000.0
_seqs = itertools.count(1_000_000_000)


def test_bare_words_are_whole_words_and_the_rest_are_phrases() -> None:
    words, phrases = parse_terms("q", 'Timeout "Connection refused" user@host.io x')
    assert words == ("timeout", "x")
    assert phrases == ("connection refused", "user@host.io")


def test_an_unclosed_quote_is_refused_naming_q() -> None:
    with pytest.raises(BadParameter, match=r"parameter q=.*closed quotes"):
        parse_terms("q", 'error "half open')


@pytest.mark.parametrize(
    ("text", "level"),
    [("err", 3), ("ERROR", 3), ("warning", 4), ("warn", 4), ("0", 0), ("debug", 7)],
)
def test_severity_takes_numbers_and_names(text: str, level: int) -> None:
    assert filters.parse_severity("severity", text) == level


@pytest.mark.parametrize("text", ["8", "-1", "errr", "", "3.0", "٣"])
def test_other_severities_are_refused(text: str) -> None:
    with pytest.raises(BadParameter, match="severity"):
        filters.parse_severity("severity", text)


def test_times_are_rfc3339_or_durations_before_now() -> None:
    assert filters.parse_time("since", "15m", now=NOW) == (NOW - 900) * 1_000_000
    stamp = filters.parse_time("since", "2026-06-01T00:00:00.5+02:00")
    assert stamp == 1_780_264_800_500_000


def test_times_beyond_storage_range_are_clamped_not_refused() -> None:
    assert filters.parse_time("since", "9999999w") == filters.MIN_TS
    assert filters.parse_time("until", "9999-12-31T00:00:00Z") == filters.MAX_TS


@pytest.mark.parametrize("text", ["yesterday", "15x", "1e9", "", "²m", "9" * 400 + "w"])
def test_unreadable_times_are_refused_naming_the_parameter(text: str) -> None:
    with pytest.raises(BadParameter, match="until"):
        filters.parse_time("until", text)


def test_unknown_parameters_are_refused_when_the_caller_lists_its_own() -> None:
    query = MultiDict([("app", "a"), ("sevrity", "err")])
    with pytest.raises(BadParameter, match="sevrity") as raised:
        from_query(query, accept=("limit",))
    assert raised.value.name == "sevrity"
    assert from_query(query).apps == ("a",)


def test_names_repeat_or_separate_by_commas_and_labels_repeat() -> None:
    query = MultiDict(
        [
            ("app", "a,b"),
            ("app", "c"),
            ("host", "h1"),
            ("label.team", "x"),
            ("label.team", "y,z"),
        ]
    )
    wanted = from_query(query)
    assert wanted.apps == ("a", "b", "c")
    assert wanted.fields == {"host": ("h1",)}
    assert wanted.labels == {"team": ("x", "y,z")}


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("q", "a\x00b"),
        ("app", "x\ny"),
        ("regex", "(a)\\1"),
        ("regex", "(?=look)ahead"),
        ("q", "x" * 1025),
        ("label.", "v"),
        ("since", "1"),
    ],
)
def test_hostile_values_are_refused_naming_the_parameter(name: str, value: str) -> None:
    with pytest.raises(BadParameter) as raised:
        from_query(MultiDict([(name, value)]))
    assert raised.value.name == name


def test_regex_is_re2_so_unicode_classes_work() -> None:
    wanted = from_query(MultiDict([("regex", r"^\pL+ \d+$")]))
    line = Line(ts=0, received=0, message="héllo 42")
    assert wanted.matches(line)


def test_percent_encoding_that_is_not_utf8_is_refused() -> None:
    with pytest.raises(BadParameter, match="UTF-8") as raised:
        filters.check_encoding("app=a&q=%ff%fe")
    assert raised.value.name == "q"
    filters.check_encoding("q=%E2%82%AC+x&app=%41")


# ------------------------------------------------ storage agrees with the tail

MESSAGES = [
    "Connection refused by peer 10.0.0.1",
    "connection REFUSED again",
    "reconnection refused",
    "user@example.com logged in",
    "Timeout after 30s",
    "timeouts piling up",
    "grüße aus KÖLN",
    "Straße gesperrt",
    "ERROR: disk full",
    "error_code=42 error",
    "",
]


def _corpus_messages() -> list[str]:
    found: list[str] = []
    for path in sorted(CORPUS.glob("*.log"))[:6]:
        found += path.read_text(errors="replace").splitlines()[:15]
    return found


def _lines(app: str) -> list[Line]:
    messages = MESSAGES + _corpus_messages()
    lines = []
    for i, message in enumerate(messages):
        seq = next(_seqs)
        lines.append(
            Line(
                ts=int(NOW * 1_000_000) + (i % 17) * 1_000_000,
                received=int(NOW * 1_000_000),
                seq=seq,
                app=app,
                app_name=app,
                severity=i % 8,
                host=f"h{i % 3}",
                service=("web", "db", "")[i % 3],
                container=f"c{i % 4}",
                labels={"team": f"t{i % 2}"} if i % 5 else {},
                message=message,
            )
        )
    return lines


@pytest.fixture(scope="module")
def stored(store: Store) -> tuple[str, list[Line]]:
    app = "filters-agree"
    lines = _lines(app)
    store.insert(encode(lines))
    return app, lines


def _stored_seqs(store: Store, app: str, wanted: filters.Filters) -> set[int]:
    where, params = wanted.where()
    params["agree_app"] = app
    rows = store.rows(
        f"SELECT seq FROM logs WHERE app = {{agree_app:String}} AND ({where})",
        params,
    )
    return {row[0] for row in rows}


def _matched_seqs(lines: list[Line], wanted: filters.Filters) -> set[int]:
    return {line.seq for line in lines if wanted.matches(line)}


QUERIES = [
    {"q": "refused"},
    {"q": "Connection refused"},
    {"q": '"connection refused"'},
    {"q": "timeout"},
    {"q": '"timeout"'},
    {"q": "user@example.com"},
    {"q": "GRÜẞE"},
    {"q": "grüße köln"},
    {"q": "straße"},
    {"q": "error"},
    {"q": "error_code"},
    {"q": '"r: d"'},
    {"regex": "(?i)^error"},
    {"regex": r"\d{2}s\b"},
    {"severity": "warning", "host": "h1,h2"},
    {"service": "web", "label.team": "t1"},
    {"label.team": ""},
    {"container": "c0,c3", "severity": "2"},
    {"since": "2026-05-28T20:26:45Z", "until": "2026-05-28T20:26:50Z"},
]


@pytest.mark.parametrize("query", QUERIES, ids=lambda q: "&".join(map(str, q.items())))
def test_storage_and_tail_agree_on_a_filter(
    store: Store, stored: tuple[str, list[Line]], query: dict[str, str]
) -> None:
    app, lines = stored
    wanted = from_query(MultiDict(query))
    expected = _matched_seqs(lines, wanted)
    assert _stored_seqs(store, app, wanted) == expected
    assert expected, "a filter that matches nothing proves little"


_words = st.sampled_from(
    ["error", "refused", "connection", "timeout", "user", "köln", "42", "blk", "info"]
)
_phrases = st.sampled_from(["on ref", "@ex", "ße", "e.c", "r: d", "_code", "ion r"])


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    words=st.lists(_words, max_size=2),
    phrases=st.lists(_phrases, max_size=2),
    severity=st.none() | st.integers(0, 7),
    upper=st.booleans(),
)
def test_storage_and_tail_agree_on_any_search(
    store: Store,
    stored: tuple[str, list[Line]],
    words: list[str],
    phrases: list[str],
    severity: int | None,
    upper: bool,
) -> None:
    app, lines = stored
    text = " ".join([*words, *(f'"{p}"' for p in phrases)])
    query = MultiDict([("q", text.upper() if upper else text)])
    if severity is not None:
        query["severity"] = str(severity)
    wanted = from_query(query)
    assert _stored_seqs(store, app, wanted) == _matched_seqs(lines, wanted)


def test_a_rare_word_or_a_phrase_of_words_reads_few_granules(
    store: Store, app_name: str
) -> None:
    # 40 granules of common words; one line holds the rare word.
    lines = [
        Line(
            ts=1_700_000_000_000_000 + i,
            received=0,
            app=app_name,
            seq=next(_seqs),
            message=f"GET /index.html status {i % 7} took {i % 13}ms",
        )
        for i in range(8192 * 40)
    ]
    lines[200_000].message = "Disk QZXRARE full on /var"
    store.insert(encode(lines))

    def granules(query: dict[str, str]) -> tuple[int, int]:
        where, params = from_query(MultiDict({"app": app_name, **query})).where()
        plan = store.rows(
            f"EXPLAIN indexes=1 SELECT count() FROM logs WHERE {where}", params
        )
        text = "\n".join(row[0] for row in plan)
        index = text[text.index("message_words") :]
        read, total = index[index.index("Granules: ") + 10 :].split()[0].split("/")
        return int(read), int(total)

    for query in ({"q": "qzxrare"}, {"q": '"disk qzxrare full"'}):
        read, total = granules(query)
        assert total >= 40 and read <= 2, query
    # A part of a word is no token: every granule is read, none skipped wrongly.
    read, total = granules({"q": '"zxrar"'})
    assert read == total
