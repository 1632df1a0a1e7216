from __future__ import annotations

import time
from pathlib import Path

import pytest

from logd.batch import encode
from logd.errors import ConfigError, StorageError
from logd.line import Line
from logd.store import NGRAM_INDEX, Store, check_dsn, migrations, statements


def _lines(app: str, count: int, start_seq: int) -> list[Line]:
    now = time.time_ns() // 1000
    return [
        Line(
            ts=now + i,
            received=now,
            app=app,
            app_name=app,
            message=f"m{i}",
            seq=start_seq + i,
        )
        for i in range(count)
    ]


def test_insert_stores_every_column_as_sent(store: Store, app_name: str) -> None:
    line = Line(
        ts=1_700_000_000_123_456,
        received=1_700_000_001_000_000,
        facility=16,
        severity=3,
        host="h1",
        app_name="a-n",
        procid="42",
        msgid="ID7",
        message="héllo",
        structured_data='[x@1 k="v"]',
        source="127.0.0.1:9",
        parse_error="bad PRI",
        invalid_utf8=True,
        truncated=True,
        raw=b"\xff\x00",
        app=app_name,
        service="svc",
        container="c1",
        labels={"k": "v"},
        seq=77,
    )
    store.insert(encode([line]))
    rows = store.rows(
        "SELECT toUnixTimestamp64Micro(ts), toUnixTimestamp64Micro(received), seq,"
        " service, container, host, facility, severity, app_name, procid, msgid,"
        " message, structured_data, labels, source, parse_error, invalid_utf8,"
        " truncated, hex(raw) FROM logs WHERE app = {a:String}",
        {"a": app_name},
    )
    assert rows == [
        (
            1_700_000_000_123_456,
            1_700_000_001_000_000,
            77,
            "svc",
            "c1",
            "h1",
            16,
            3,
            "a-n",
            "42",
            "ID7",
            "héllo",
            '[x@1 k="v"]',
            {"k": "v"},
            "127.0.0.1:9",
            "bad PRI",
            True,
            True,
            "FF00",
        )
    ]


def test_count_and_delete_by_sequence_range(store: Store, app_name: str) -> None:
    store.insert(encode(_lines(app_name, 10, start_seq=9_000_000)))
    assert store.count_seq(9_000_000, 9_000_009) == 10
    assert store.count_seq(9_000_005, 9_000_009) == 5
    store.delete_seq(9_000_000, 9_000_004)
    assert store.count_seq(9_000_000, 9_000_009) == 5


def test_insert_file_reads_every_chunk_of_a_spooled_batch(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    # A spooled batch is chunks of JSONColumns, one a line; a quote or a
    # backslash in the spool's path must not break the statement.
    folder = tmp_path / "it's \\ here"
    folder.mkdir()
    batch = folder / "batch"
    lines = _lines(app_name, 30, start_seq=8_000_000)
    batch.write_bytes(b"".join(encode(lines[i : i + 10]) + b"\n" for i in (0, 10, 20)))
    store.insert_file(batch)
    assert store.count_seq(8_000_000, 8_000_029) == 30


def test_insert_file_of_a_missing_file_is_a_storage_error(
    store: Store, tmp_path: Path
) -> None:
    with pytest.raises(StorageError, match="insert"):
        store.insert_file(tmp_path / "gone")


def test_an_inserted_batch_is_one_compact_part(store: Store, app_name: str) -> None:
    # Schema 006: a part of an insert is one data file, not files a column,
    # even above the engine's default bound for that (10 MB uncompressed).
    # A day of its own keeps the part out of merges with other tests' parts.
    day = 936_835_200_000_000  # 1999-09-09, in microseconds
    lines = _lines(app_name, 20_000, start_seq=7_000_000)
    for line in lines:
        line.ts = day + line.seq % 1000
        line.message = f"{line.seq:x}" * 100
    store.insert(encode(lines))
    rows = store.rows(
        "SELECT part_type, data_uncompressed_bytes FROM system.parts"
        " WHERE database = currentDatabase() AND table = 'logs' AND active"
        " AND min_block_number = max_block_number AND rows = 20000"
    )
    assert len(rows) == 1
    assert rows[0][0] == "Compact"
    assert rows[0][1] > 10 * 2**20


def test_the_embedded_engine_runs_merges_niced(store: Store) -> None:
    rows = store.rows(
        "SELECT value FROM system.server_settings"
        " WHERE name = 'os_threads_nice_value_merge_mutate'"
    )
    assert rows == [("10",)]


def test_open_twice_applies_each_migration_once(store: Store) -> None:
    store.open()
    versions = store.rows(
        "SELECT version, count() FROM schema_version GROUP BY version ORDER BY version"
    )
    assert versions == [(v, 1) for v, _ in migrations()]


def test_retention_sets_and_removes_the_ttl(store: Store) -> None:
    def ttl() -> str:
        return str(
            store.rows(
                "SELECT create_table_query FROM system.tables "
                "WHERE database = 'logd' AND name = 'logs'"
            )[0][0]
        )

    store.retention = 7 * 86400
    store.open()
    assert "TTL toDateTime(ts) + toIntervalSecond(604800)" in ttl()
    store.retention = 0
    store.open()
    assert " TTL " not in ttl()


def test_bad_sql_raises_storage_error(store: Store) -> None:
    with pytest.raises(StorageError, match="query failed"):
        store.rows("SELECT no_such_column FROM logs")


@pytest.mark.parametrize(
    "dsn", ["chdb://relative/path", "mysql://host", "http://", "/abs/path"]
)
def test_unusable_dsn_is_a_config_error_naming_it(dsn: str) -> None:
    with pytest.raises(ConfigError, match="--clickhouse"):
        check_dsn(dsn)


def test_both_schema_variants_have_the_same_ingest_columns() -> None:
    def ingest(cluster: str) -> str:
        path = migrations(cluster)[0][1]
        [statement] = [
            s
            for s in statements(path.read_text(), cluster)
            if "logs_ingest\n" in s or "logs_ingest ON" in s
        ]
        return statement[statement.index("(") :]

    assert ingest("") == ingest("c1")
    assert "ON CLUSTER 'c1'" in "".join(
        statements(migrations("c1")[0][1].read_text(), "c1")
    )


def _indexes(store: Store) -> set[str]:
    rows = store.rows(
        "SELECT name FROM system.data_skipping_indices "
        "WHERE database = 'logd' AND table = 'logs'"
    )
    return {row[0] for row in rows}


def test_substring_index_finds_part_of_a_word_in_few_granules(
    store: Store, app_name: str
) -> None:
    # 24 granules of common words; one line holds the term, inside a word.
    store.substring_index = True
    store.open()
    assert NGRAM_INDEX in _indexes(store)
    now = time.time_ns() // 1000
    lines = [
        Line(ts=now + i, received=now, app=app_name, seq=10**9 + i,
             message=f"GET /index.html status {i % 7} took {i % 13}ms")
        for i in range(8192 * 24)
    ]  # fmt: skip
    lines[100_000].message = "request id=ab7731zqyv9cd failed"
    store.insert(encode(lines))
    # The engine refuses a read of more rows than two granules hold.
    search = (
        "SELECT message FROM logs WHERE app = {a:String} "
        "AND multiSearchAny(lowerUTF8(message), [{p:String}]) "
        "SETTINGS max_rows_to_read = 16384"
    )
    params = {"a": app_name, "p": "1zqyv9"}
    try:
        assert store.rows(search, params) == [("request id=ab7731zqyv9cd failed",)]
    finally:
        store.substring_index = False
        store.open()
    assert NGRAM_INDEX not in _indexes(store)
    with pytest.raises(StorageError, match="rows"):
        store.rows(search, params)
