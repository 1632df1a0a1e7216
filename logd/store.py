"""ClickHouse through clickhouse-connect: schema, inserts and reads.

One code path serves both targets; only the DSN differs:
`chdb:///abs/path` runs ClickHouse's engine in this process, and
`http(s)://host:8123` talks to a server. Every clickhouse-connect exception
is translated to `StorageError` here and nowhere else.

The engine releases the GIL, so the writer thread and the query threads each
hold a client of their own and run in parallel with the event loop.
"""

from __future__ import annotations

import queue
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import clickhouse_connect
from clickhouse_connect.driver.binding import format_str
from clickhouse_connect.driver.exceptions import ClickHouseError

from logd.errors import ConfigError, StorageError

SCHEMA_DIR = Path(__file__).resolve().parent.parent / "schema"
DATABASE = "logd"
INGEST_TABLE = "logs_ingest"
# Times leave the engine as RFC 3339 text and 64-bit integers as numbers, so
# a response is the engine's own bytes with no per-row work in Python. The
# settings go inline: given as arguments, chdb spends two more statements
# per query on them and materializes a whole result before streaming it.
JSON_TAIL = (
    " SETTINGS output_format_json_quote_64bit_integers = 0,"
    " date_time_output_format = 'iso' FORMAT JSONEachRow"
)
_STREAM_CHUNK = 256 * 1024
# Inserts run niced, so a reader waits less for a core while ingest is
# busy; a backlog then waits in the spool, not in front of a person.
_INSERT_SETTINGS = {"os_thread_priority": 10}
# Merges too, in the embedded engine: a merge holds a core for seconds,
# and a query that waits behind one misses its bound (a server takes
# this from its own configuration).
_ENGINE_OPTIONS = {"os_threads_nice_value_merge_mutate": 10}
# The optional substring index (--substring-index): n-grams of the lowercased
# message. It serves the same multiSearchAny(lowerUTF8(message), ...) that
# query.filters writes for phrases, so queries need not know it is there.
NGRAM_INDEX = "message_ngrams"
_NGRAM_DEFINITION = "lowerUTF8(message) TYPE ngrambf_v1(3, 32768, 1, 0) GRANULARITY 1"

# Reads up to `size` bytes of a streamed result; b"" at its end.
Reader = Callable[[int], bytes]

_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")


def check_dsn(dsn: str) -> str:
    """Return `dsn` if logd can open it, else raise ConfigError naming it."""
    parts = urlsplit(dsn)
    if parts.scheme == "chdb":
        if parts.netloc or not parts.path.startswith("/"):
            raise ConfigError(f"--clickhouse {dsn!r}: chdb needs an absolute path")
        return dsn
    if parts.scheme in ("http", "https") and parts.hostname:
        return dsn
    raise ConfigError(
        f"--clickhouse {dsn!r}: expected chdb:///abs/path or http(s)://host:port"
    )


class Store:
    """Open the engine, keep the schema current, insert batches, run reads."""

    def __init__(
        self,
        dsn: str,
        *,
        retention: int = 0,
        cluster: str = "",
        readers: int = 4,
        substring_index: bool = False,
    ) -> None:
        self.dsn = check_dsn(dsn)
        self.retention = retention
        self.cluster = cluster
        self.substring_index = substring_index
        self._readers = readers
        self._writer: Any = None
        self._pool: queue.Queue[Any] = queue.Queue()
        self._lock = threading.Lock()

    @property
    def embedded(self) -> bool:
        """True for the engine in this process (chdb), False for a server."""
        return urlsplit(self.dsn).scheme == "chdb"

    @property
    def is_open(self) -> bool:
        return self._writer is not None

    def open(self) -> None:
        """Connect, apply pending migrations and the retention TTL.

        Blocking: call it from a thread. Safe to call again, also after a
        failed attempt: inserts call it until storage can be reached.
        """
        with self._lock, _translated("open"):
            admin = self._connect(database="default")
            admin.command(f"CREATE DATABASE IF NOT EXISTS {DATABASE}")
            admin.close()
            writer = self._connect(database=DATABASE)
            self._migrate(writer)
            self._apply_retention(writer)
            self._apply_substring_index(writer)
            if self._writer is not None:
                self._writer.close()
            self._writer = writer
            while self._pool.qsize() < self._readers:
                self._pool.put(self._connect(database=DATABASE))

    def close(self) -> None:
        """Release every client; the engine flushes what it holds."""
        clients = [self._writer]
        while not self._pool.empty():
            clients.append(self._pool.get_nowait())
        for client in clients:
            if client is not None:
                client.close()
        self._writer = None

    def insert(self, body: bytes) -> None:
        """Insert one encoded batch (JSONColumns) into the ingest table."""
        if not self.is_open:
            self.open()
        with self._lock, _translated("insert"):
            self._writer.raw_insert(
                INGEST_TABLE, None, body, fmt="JSONColumns", settings=_INSERT_SETTINGS
            )

    def insert_file(self, path: Path) -> None:
        """Insert the encoded batch (JSONColumns) that the file at `path` holds.

        The embedded engine reads the file itself. Handing it the body
        instead would cost two copies, since clickhouse-connect writes a
        body to a temporary file for chdb to read. A server is sent the
        file's bytes, whole, so that a retried request sends them again.
        """
        if not self.embedded:
            self.insert(path.read_bytes())
            return
        if not self.is_open:
            self.open()
        settings = ", ".join(f"{k} = {v}" for k, v in _INSERT_SETTINGS.items())
        sql = (
            f"INSERT INTO {INGEST_TABLE} FROM INFILE {format_str(str(path))}"
            f" SETTINGS {settings} FORMAT JSONColumns"
        )
        with self._lock, _translated("insert"):
            self._writer.command(sql)

    def count_seq(self, first: int, last: int) -> int:
        """Count stored lines whose sequence lies in [first, last]."""
        rows = self.rows(
            "SELECT count() FROM logs WHERE seq BETWEEN {a:UInt64} AND {b:UInt64}",
            {"a": first, "b": last},
        )
        return int(rows[0][0])

    def delete_seq(self, first: int, last: int) -> None:
        """Delete the lines whose sequence lies in [first, last]."""
        if not self.is_open:
            self.open()
        with self._lock, _translated("delete"):
            self._writer.command(
                "DELETE FROM logs WHERE seq BETWEEN {a:UInt64} AND {b:UInt64}",
                parameters={"a": first, "b": last},
            )

    def rows(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Any]:
        """Run a read and return its rows as tuples. Blocking."""
        with self._reader() as client, _translated("query"):
            return list(client.query(sql, parameters=params).result_rows)

    def json_rows(self, sql: str, params: Mapping[str, Any] | None = None) -> bytes:
        """Run a read and return the engine's JSONEachRow bytes. Blocking."""
        chunks = []
        with self.stream(sql, params) as read:
            while chunk := read(_STREAM_CHUNK):
                chunks.append(chunk)
        return b"".join(chunks)

    @contextmanager
    def stream(
        self, sql: str, params: Mapping[str, Any] | None = None
    ) -> Iterator[Reader]:
        """Run a read and yield a reader of its JSONEachRow bytes, in chunks.

        Blocking: enter it and read from threads. The reader client stays
        out of the pool until the stream closes.
        """
        with self._reader() as client, _translated("query"):
            stream = client.raw_stream(sql + JSON_TAIL, parameters=params)
            try:
                yield _translated_reader(stream.read)
            finally:
                stream.close()

    @contextmanager
    def _reader(self) -> Iterator[Any]:
        if not self.is_open:
            self.open()
        client = self._pool.get()
        try:
            yield client
        finally:
            self._pool.put(client)

    def _connect(self, database: str) -> Any:
        if not self.embedded:
            return clickhouse_connect.get_client(dsn=self.dsn, database=database)
        return clickhouse_connect.get_client(
            dsn=self.dsn, database=database, chdb_options=_ENGINE_OPTIONS
        )

    def _migrate(self, client: Any) -> None:
        client.command(
            "CREATE TABLE IF NOT EXISTS schema_version (version UInt32, "
            "name String, applied DateTime DEFAULT now()) "
            "ENGINE = MergeTree ORDER BY version"
        )
        done = client.query("SELECT max(version) FROM schema_version").result_rows
        current = int(done[0][0] or 0)
        for version, path in migrations(self.cluster):
            if version <= current:
                continue
            for statement in statements(path.read_text(), self.cluster):
                client.command(statement)
            client.insert("schema_version", [[version, path.name]], ["version", "name"])

    def _apply_retention(self, client: Any) -> None:
        # Not materializing keeps a restart cheap: existing parts take the
        # new TTL as they merge.
        settings = {"materialize_ttl_after_modify": 0}
        if self.retention > 0:
            client.command(
                "ALTER TABLE logs MODIFY TTL toDateTime(ts) + "
                f"toIntervalSecond({int(self.retention)})",
                settings=settings,
            )
        elif _has_ttl(client):
            client.command("ALTER TABLE logs REMOVE TTL", settings=settings)

    def _apply_substring_index(self, client: Any) -> None:
        # Like the TTL, the flag decides at every start. Adding the index
        # leaves existing parts to take it as they merge; dropping it is
        # immediate and frees its files.
        table = "logs_local ON CLUSTER '{cluster}'" if self.cluster else "logs"
        if self.substring_index:
            change = f"ADD INDEX IF NOT EXISTS {NGRAM_INDEX} {_NGRAM_DEFINITION}"
        else:
            change = f"DROP INDEX IF EXISTS {NGRAM_INDEX}"
        (statement,) = statements(f"ALTER TABLE {table} {change}", self.cluster)
        client.command(statement)


def migrations(cluster: str = "") -> list[tuple[int, Path]]:
    """List the schema files in version order, for one node or a cluster."""
    folder = SCHEMA_DIR / ("cluster" if cluster else "single")
    found = []
    for path in folder.iterdir():
        match = _MIGRATION_NAME.match(path.name)
        if match:
            found.append((int(match.group(1)), path))
    return sorted(found)


def statements(text: str, cluster: str = "") -> list[str]:
    """Split a schema file into statements, dropping comment lines."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    body = "\n".join(lines).replace("{cluster}", cluster)
    return [s.strip() for s in body.split(";") if s.strip()]


def _has_ttl(client: Any) -> bool:
    rows = client.query(
        "SELECT create_table_query FROM system.tables "
        "WHERE database = currentDatabase() AND name = 'logs'"
    ).result_rows
    return bool(rows) and " TTL " in rows[0][0]


def _translated_reader(read: Reader) -> Reader:
    def reading(size: int) -> bytes:
        with _translated("query"):
            return read(size)

    return reading


@contextmanager
def _translated(action: str) -> Iterator[None]:
    try:
        yield
    except ClickHouseError as exc:
        raise StorageError(f"storage {action} failed: {exc}") from exc
    except OSError as exc:
        raise StorageError(f"storage {action} failed: {exc}") from exc
