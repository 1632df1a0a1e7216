"""Enrichment: find the container behind each line and attach its labels.

Docker's syslog driver sends no labels, only a tag built from a template
(`{{.ID}}` by default), which lands in RFC 5424 APP-NAME (and MSGID) and in
RFC 3164 TAG. The tag is searched for a 12 or 64 hex container ID, then for
a container name: the whole tag, each part between slashes, and last any
known name standing in it, so `{{.Name}}/{{.ID}}`, `web-{{.ID}}` and
`web-{{.Name}}` all work. With several engines, the line's HOSTNAME picks
the one whose `docker info` name it is; a host no engine has asks them all.

Strategy: a cache per engine, filled by one listing and kept current by the
engine's event stream, both read in threads; every change is handed to the
event loop, so the cache itself is only touched there. A line whose
container is cached is filled at once. A line whose tag could name a
container that is not cached starts one Engine API lookup in a thread and
waits at most `hold` seconds with the lines behind it (order per tag is
kept); it then goes on, filled or counted as unenriched. Nothing is dropped.
A removed container's labels stay for `ttl_after_exit` seconds, since
Docker flushes lines late, and a renamed container keeps its old name as an
alias, since its tag was made when it started.

Docker splits a line longer than 16 KiB into pieces of exactly 16384 bytes
without a marker. A piece of that size is held until the next line of the
same tag and severity (stdout and stderr are copied separately) and joined
with it; a piece that waits longer than `hold` goes on as it is.

Scope limits: a line of exactly 16384 bytes is joined with the line after
it, because Docker drops the empty piece that would end it and the two
cannot be told apart. Pieces are matched on the message's UTF-8 length, so
a split inside a multi-byte character (the parser then flags the piece as
invalid UTF-8) is not joined. A tag with neither ID nor name in it, such as
`{{.ImageName}}`, cannot be resolved; a sender that is no container but
whose tag holds a container's name is taken for that container. A container
learnt from its create event (the usual way, as it costs no API call while
dockerd is busiest) lacks a label named like one of Docker's own event keys
(`name`, `oldName`, `exitCode`, `execDuration`).
"""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from functools import partial

from logd import log
from logd.bulk import Columns
from logd.docker_engine import Container, Engine, Event, default_url
from logd.errors import DockerError
from logd.line import Line

Sink = Callable[[list[Line]], None]

# Docker's log copier cuts a line without a newline at its buffer size.
SPLIT_SIZE = 16 * 1024
# A piece's fewest characters: 16384 bytes of 4-byte UTF-8 characters.
_PIECE_MIN_CHARS = SPLIT_SIZE // 4

_HEX_ID = re.compile(r"(?<![0-9a-f])(?:[0-9a-f]{64}|[0-9a-f]{12})(?![0-9a-f])")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")

# How long "no such container" is believed; any container event ends it too.
_NOT_FOUND_TTL = 30.0
# How long a tag goes on unenriched after a lookup failed on the engine.
_FAILED_TTL = 2.0
# While every engine is down, how long a tag keeps going on unenriched.
_DOWN_RECHECK = 1.0
_BACKOFF_FIRST = 0.5
_BACKOFF_MAX = 10.0
# How long `start` waits for every engine's first connection attempt.
_FIRST_ATTEMPT_WAIT = 5.0
_MEMO_MAX = 100_000
_LOOKUP_THREADS = 4

_Key = tuple[str, str]
_PieceKey = tuple[str, str, int]

STATS = (
    "hits",
    "misses",
    "enriched",
    "unenriched",
    "passed",
    "lookups",
    "lookup_errors",
    "reassembled",
    "pieces",
    "events",
    "reconnects",
)


@dataclass(frozen=True, slots=True)
class ContainerMeta:
    """What enrichment attaches to the lines of one container."""

    id: str
    name: str
    image: str
    app: str
    service: str
    labels: Mapping[str, str]
    removed: bool


def describe(container: Container) -> tuple[str, str, dict[str, str]]:
    """Return the app, service and label map for a container's lines.

    App and service come from `logd.app` / `logd.service`, else from
    Compose's project and service, else the container name. The label map
    holds every container label plus `container_id`, `container_name`,
    `image`, and `node` / `zone` from `logd.node` / `logd.zone`.
    """
    own = container.labels
    app = own.get("logd.app") or own.get("com.docker.compose.project")
    service = own.get("logd.service") or own.get("com.docker.compose.service")
    labels = dict(own)
    labels["container_id"] = container.id
    labels["container_name"] = container.name
    labels["image"] = container.image
    for key in ("node", "zone"):
        if own.get(f"logd.{key}"):
            labels[key] = own[f"logd.{key}"]
    return app or container.name, service or container.name, labels


def tag_candidates(tag: str) -> tuple[list[str], list[str]]:
    """Return the container IDs and the container names a tag may carry."""
    ids = _HEX_ID.findall(tag)
    parts = [tag, *tag.split("/")] if "/" in tag else [tag]
    names = [p for p in parts if p not in ids and _NAME.fullmatch(p)]
    return ids, list(dict.fromkeys(names))


def is_piece(line: Line) -> bool:
    """Tell whether a line is exactly the size at which Docker splits lines."""
    text = line.message
    # Cheap bounds first: 16384 bytes are 4096 to 16384 characters.
    if not _PIECE_MIN_CHARS <= len(text) <= SPLIT_SIZE:
        return False
    return len(text.encode("utf-8", "surrogatepass")) == SPLIT_SIZE


@dataclass(slots=True)
class _Entry:
    engine: int
    container: Container
    app: str = ""
    service: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    gone_at: float | None = None

    def __post_init__(self) -> None:
        self.update(self.container)

    def update(self, container: Container) -> None:
        self.container = container
        self.app, self.service, self.labels = describe(container)

    def fill(self, line: Line) -> None:
        line.app = self.app
        line.service = self.service
        line.container = self.container.name
        line.labels = (
            {**line.labels, **self.labels} if line.labels else self.labels.copy()
        )


@dataclass(slots=True)
class _Cache:
    """One engine's containers by full ID, short ID and every name they had."""

    by_id: dict[str, _Entry] = field(default_factory=dict)
    by_short: dict[str, _Entry] = field(default_factory=dict)
    by_name: dict[str, _Entry] = field(default_factory=dict)

    def add(self, entry: _Entry) -> None:
        cid = entry.container.id
        self.by_id[cid] = entry
        self.by_short[cid[:12]] = entry
        if entry.container.name:
            self.by_name[entry.container.name] = entry

    def get(self, ids: Iterable[str], names: Iterable[str]) -> _Entry | None:
        for cid in ids:
            entry = self.by_id.get(cid) if len(cid) == 64 else self.by_short.get(cid)
            if entry is not None:
                return entry
        for name in names:
            entry = self.by_name.get(name)
            if entry is not None:
                return entry
        return None

    def search(self, tag: str) -> _Entry | None:
        # For templates like `web-{{.Name}}`: the longest known name that
        # stands in the tag.
        best: _Entry | None = None
        best_len = 0
        for name, entry in self.by_name.items():
            if len(name) > best_len and _stands_in(name, tag):
                best, best_len = entry, len(name)
        return best

    def drop(self, entry: _Entry) -> None:
        cid = entry.container.id
        for index, key in ((self.by_id, cid), (self.by_short, cid[:12])):
            if index.get(key) is entry:
                del index[key]
        for name in [n for n, e in self.by_name.items() if e is entry]:
            del self.by_name[name]


def _stands_in(name: str, tag: str) -> bool:
    # Separators such as "-" are also name characters, so a name stands in
    # the tag when no letter or digit touches it.
    start = tag.find(name)
    while start >= 0:
        end = start + len(name)
        if not tag[start - 1 : start].isalnum() and not tag[end : end + 1].isalnum():
            return True
        start = tag.find(name, start + 1)
    return False


@dataclass(slots=True)
class _Hold:
    """Lines of one tag waiting for their container to be known."""

    lines: list[Line]
    ids: list[str]
    names: list[str]
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class _Piece:
    line: Line
    parts: int
    timer: asyncio.TimerHandle


class _Watcher:
    """One engine's connection, listing and event stream, in its own thread."""

    def __init__(self, index: int, engine: Engine, enricher: Enricher) -> None:
        self.index = index
        self.engine = engine
        self._enricher = enricher
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"logd-docker-{index}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self.engine.close()

    def nudge(self) -> None:
        """Cut the backoff short: lines wait for this engine to come back."""
        self._wake.set()

    def join(self, timeout: float) -> None:
        self._thread.join(timeout)

    def _run(self) -> None:
        try:
            self._retry()
        finally:
            # A connect that raced with `stop` may have opened a new client.
            self.engine.close()

    def _retry(self) -> None:
        backoff = _BACKOFF_FIRST
        while not self._stop.is_set():
            reason = "event stream ended"
            try:
                self._follow()
                backoff = _BACKOFF_FIRST
            except DockerError as exc:
                reason = str(exc)
            if self._stop.is_set():
                return
            self._enricher._post(self._enricher._engine_down, self.index, reason)
            self._pause(backoff)
            backoff = min(backoff * 2, _BACKOFF_MAX)

    def _pause(self, backoff: float) -> None:
        # A nudge ends the wait early, but attempts stay the first backoff
        # apart, so a stream of lines cannot turn into a stream of connects.
        started = time.monotonic()
        self._wake.clear()
        self._wake.wait(backoff)
        rest = _BACKOFF_FIRST - (time.monotonic() - started)
        if rest > 0:
            self._stop.wait(rest)

    def _follow(self) -> None:
        # Open the stream before listing, so no change falls between the two.
        name = self.engine.connect()
        events = self.engine.events()
        listed = self.engine.containers()
        self._enricher._post(self._enricher._engine_up, self.index, name, listed)
        for event in events:
            if self._stop.is_set():
                return
            self._enricher._post(self._enricher._apply, self.index, event)


class Enricher:
    """Fill each line's app, service, container and labels from Docker.

    `push` is called on the event loop with every parsed batch and never
    blocks it; lines reach `sink` in order per tag, enriched or not. `stats`
    counts: hits (filled from the cache), misses (had to wait), enriched,
    unenriched (looked like a container, went on without labels), passed
    (not from a container), lookups, lookup_errors, reassembled (lines
    joined from split pieces), pieces (pieces joined), events, reconnects.
    """

    def __init__(
        self,
        engines: list[str],
        sink: Sink,
        *,
        hold: float = 0.2,
        ttl_after_exit: float = 600.0,
    ) -> None:
        self._urls = list(engines) or [default_url()]
        self._sink = sink
        self._hold = hold
        self._ttl = ttl_after_exit
        self.stats: Counter[str] = Counter(dict.fromkeys(STATS, 0))
        self._caches = [_Cache() for _ in self._urls]
        self._all = tuple(range(len(self._urls)))
        self._by_engine_name: dict[str, int] = {}
        # None: not tried yet; True: answering; False: not reachable.
        self._up: list[bool | None] = [None] * len(self._urls)
        self._warned = [False] * len(self._urls)
        self._memo: dict[_Key, _Entry] = {}
        self._negative: dict[_Key, tuple[float, bool]] = {}
        self._pending: dict[_Key, _Hold] = {}
        self._inflight: set[_Key] = set()
        self._pieces: dict[_PieceKey, _Piece] = {}
        self._watchers: list[_Watcher] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pool: ThreadPoolExecutor | None = None
        self._sweeper: asyncio.Task[None] | None = None
        self._attempted: asyncio.Event | None = None
        self._closed = False

    async def start(self) -> None:
        """Connect to every engine, list its containers and follow its events.

        Returns once each engine answered or failed its first attempt (at
        most a few seconds); an engine that cannot be reached is logged once
        and retried with backoff in the background. Never raises for that.
        """
        self._loop = asyncio.get_running_loop()
        self._pool = ThreadPoolExecutor(_LOOKUP_THREADS, "logd-docker-lookup")
        self._attempted = asyncio.Event()
        for index, url in enumerate(self._urls):
            watcher = _Watcher(index, Engine(url), self)
            self._watchers.append(watcher)
            watcher.start()
        self._sweeper = asyncio.create_task(self._sweep())
        try:
            await asyncio.wait_for(self._attempted.wait(), _FIRST_ATTEMPT_WAIT)
        except TimeoutError:
            log.enrich.warning("Docker engines still connecting; lines wait or go on")

    def push(self, lines: list[Line]) -> None:
        """Enrich a batch of parsed lines and pass them on to the sink."""
        if self._loop is None or self._closed:
            self._sink(lines)
            return
        out: list[Line] = []
        # Counted once a batch: a Counter costs more than the rest of a hit.
        hits = 0
        for line in lines:
            entry = self._known(line)
            if entry is None:
                self._take(line, out)
                continue
            entry.fill(line)
            out.append(line)
            hits += 1
        if hits:
            self.stats["hits"] += hits
            self.stats["enriched"] += hits
        if out:
            self._sink(out)

    def fill(self, columns: Columns) -> bool:
        """Enrich a bulk-parsed chunk in place, deciding once per distinct tag.

        Returns False, touching nothing, when a line would have to wait (a
        tag not decided yet, lines of its tag held, a split line pending):
        the chunk must then go through `push` as lines, in order.
        """
        if self._loop is None or self._closed:
            return True
        if self._pieces:
            return False
        hosts, tags = columns.host, columns.app_name
        if len(set(hosts)) == 1 and len(set(tags)) == 1:
            counts = {(hosts[0], tags[0]): len(columns)}
        else:
            counts = Counter(zip(hosts, tags, strict=True))
        found: dict[_Key, _Entry] = {}
        outcome: Counter[str] = Counter()
        now = time.monotonic()
        for key, count in counts.items():
            if not key[1]:
                outcome["passed"] += count
                continue
            if key in self._pending:
                return False
            entry = self._memo.get(key)
            if entry is not None:
                found[key] = entry
                outcome["hits"] += count
                continue
            negative = self._negative.get(key)
            if negative is None or negative[0] <= now:
                return False
            outcome["unenriched" if negative[1] else "passed"] += count
        outcome["enriched"] = outcome["hits"]
        self.stats.update(outcome)
        if found:
            _fill_columns(columns, found)
        return True

    async def close(self) -> None:
        """Pass every held line on to the sink and stop the engine threads."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        for piece_key in list(self._pieces):
            self._flush_piece(piece_key)
        for key in list(self._pending):
            self._release(key)
        for watcher in self._watchers:
            watcher.stop()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        for watcher in self._watchers:
            await asyncio.to_thread(watcher.join, 2.0)

    def engine_states(self) -> dict[str, bool]:
        """Tell for each engine URL whether it answers now (for a gauge)."""
        return {url: bool(up) for url, up in zip(self._urls, self._up, strict=True)}

    def cached(self, tag: str, host: str = "") -> ContainerMeta | None:
        """Return what the cache holds for a tag now, without asking an engine."""
        entry = self._find(self._select(host), tag)
        if entry is None:
            return None
        c = entry.container
        return ContainerMeta(
            c.id,
            c.name,
            c.image,
            entry.app,
            entry.service,
            entry.labels,
            entry.gone_at is not None,
        )

    # The receive path.

    def _known(self, line: Line) -> _Entry | None:
        """Return the remembered container of a line that needs nothing else.

        The common case, a cached tag with no piece held or to hold and no
        line of its tag waiting; every other line takes `_take`, in order.
        """
        if self._pieces or (len(line.message) >= _PIECE_MIN_CHARS and is_piece(line)):
            return None
        key = (line.host, line.app_name)
        if self._pending and key in self._pending:
            return None
        return self._memo.get(key)

    def _take(self, line: Line, out: list[Line]) -> None:
        if not line.app_name:
            self.stats["passed"] += 1
            out.append(line)
            return
        # The newest part decides whether more is to come.
        more = is_piece(line)
        if more or self._pieces:
            line, parts = self._join_pieces(line, out)
            if more:
                key = (line.host, line.app_name, line.severity)
                self._hold_piece(key, line, parts)
                return
            self._count_joined(parts)
        self._route(line, out)

    def _join_pieces(self, line: Line, out: list[Line]) -> tuple[Line, int]:
        held = self._pieces.pop((line.host, line.app_name, line.severity), None)
        if held is None:
            return line, 1
        held.timer.cancel()
        if _joinable(held.line, line):
            return _join(held.line, line), held.parts + 1
        self._count_joined(held.parts)
        self._route(held.line, out)
        return line, 1

    def _route(self, line: Line, out: list[Line]) -> None:
        key = (line.host, line.app_name)
        hold = self._pending.get(key)
        if hold is not None:
            hold.lines.append(line)
            return
        entry = self._memo.get(key)
        if entry is not None:
            self.stats["hits"] += 1
            self.stats["enriched"] += 1
            entry.fill(line)
            out.append(line)
            return
        self._resolve(key, line, out)

    def _resolve(self, key: _Key, line: Line, out: list[Line]) -> None:
        host, tag = key
        negative = self._negative.get(key)
        if negative is not None and negative[0] > time.monotonic():
            self.stats["unenriched" if negative[1] else "passed"] += 1
            out.append(line)
            return
        entry = self._find(self._select(host), tag)
        if entry is not None:
            self._remember(key, entry)
            self.stats["hits"] += 1
            self.stats["enriched"] += 1
            entry.fill(line)
            out.append(line)
            return
        ids, names = tag_candidates(tag)
        if not ids and not names:
            self._negative[key] = (float("inf"), False)
            self.stats["passed"] += 1
            out.append(line)
            return
        selected = self._select(host)
        if all(self._up[i] is False for i in selected):
            for i in selected:
                self._watchers[i].nudge()
            # Decide once a second per tag, not once a line, while no
            # engine answers: a busy sender would otherwise pay for it.
            self._negative[key] = (time.monotonic() + _DOWN_RECHECK, True)
            self.stats["unenriched"] += 1
            out.append(line)
            return
        self.stats["misses"] += 1
        self._wait(key, line, ids, names)

    def _wait(self, key: _Key, line: Line, ids: list[str], names: list[str]) -> None:
        assert self._loop is not None
        hold = _Hold([line], ids, names)
        hold.timer = self._loop.call_later(self._hold, self._release, key)
        self._pending[key] = hold
        self._lookup(key, hold)

    def _lookup(self, key: _Key, hold: _Hold) -> None:
        up = [i for i in self._select(key[0]) if self._up[i]]
        if not up or key in self._inflight or self._loop is None or self._pool is None:
            return
        self._inflight.add(key)
        self.stats["lookups"] += 1
        engines = [self._watchers[i].engine for i in up]
        future = self._loop.run_in_executor(
            self._pool, _lookup, up, engines, hold.ids, hold.names
        )
        future.add_done_callback(partial(self._looked_up, key))

    def _looked_up(self, key: _Key, future: asyncio.Future[_Found]) -> None:
        self._inflight.discard(key)
        if self._closed or future.cancelled():
            return
        found, errors = future.result()
        self.stats["lookup_errors"] += errors
        for index, container in found:
            if container.id not in self._caches[index].by_id:
                self._caches[index].add(_Entry(index, container))
        host, tag = key
        entry = self._find(self._select(host), tag)
        if entry is not None:
            self._remember(key, entry)
            self._release(key)
            return
        ids, _ = tag_candidates(tag)
        ttl = _FAILED_TTL if errors else _NOT_FOUND_TTL
        self._negative[key] = (time.monotonic() + ttl, bool(ids or errors))
        # A hex ID the engine does not know may still come with the events
        # of a container already removed: leave it its full hold.
        if errors or not ids:
            self._release(key)

    def _release(self, key: _Key) -> None:
        hold = self._pending.pop(key, None)
        if hold is None:
            return
        if hold.timer is not None:
            hold.timer.cancel()
        entry = self._memo.get(key) or self._find(self._select(key[0]), key[1])
        negative = self._negative.get(key)
        for line in hold.lines:
            if entry is not None:
                entry.fill(line)
                self.stats["enriched"] += 1
            elif negative is not None and not negative[1]:
                self.stats["passed"] += 1
            else:
                self.stats["unenriched"] += 1
        self._sink(hold.lines)

    # Docker's 16 KiB pieces.

    def _hold_piece(self, piece_key: _PieceKey, line: Line, parts: int) -> None:
        assert self._loop is not None
        timer = self._loop.call_later(self._hold, self._flush_piece, piece_key)
        self._pieces[piece_key] = _Piece(line, parts, timer)

    def _flush_piece(self, piece_key: _PieceKey) -> None:
        held = self._pieces.pop(piece_key, None)
        if held is None:
            return
        held.timer.cancel()
        self._count_joined(held.parts)
        out: list[Line] = []
        self._route(held.line, out)
        if out:
            self._sink(out)

    def _count_joined(self, parts: int) -> None:
        if parts > 1:
            self.stats["reassembled"] += 1
            self.stats["pieces"] += parts

    # The cache, changed only here on the event loop.

    def _post(self, callback: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The loop closed between the check and the call: logd is exiting.
            return

    def _engine_up(self, index: int, name: str, listed: list[Container]) -> None:
        if self._closed:
            return
        url = self._urls[index]
        if self._up[index] is False:
            self.stats["reconnects"] += 1
            log.enrich.warning("Docker engine %s (%s) answers again", url, name)
        self._up[index] = True
        self._warned[index] = False
        self._by_engine_name[name] = index
        self._relist(index, listed)
        self._first_attempt_done()

    def _engine_down(self, index: int, reason: str) -> None:
        if self._closed:
            return
        url = self._urls[index]
        was_up = self._up[index]
        self._up[index] = False
        if was_up:
            log.enrich.warning("lost Docker engine %s (%s); reconnecting", url, reason)
        elif not self._warned[index]:
            self._warned[index] = True
            log.enrich.warning(
                "cannot reach Docker engine %s (%s); container lines go on "
                "without labels until it answers; retrying with backoff",
                url,
                reason,
            )
        self._first_attempt_done()

    def _first_attempt_done(self) -> None:
        if self._attempted is not None and all(u is not None for u in self._up):
            self._attempted.set()

    def _relist(self, index: int, listed: list[Container]) -> None:
        cache = self._caches[index]
        now = time.monotonic()
        present = {c.id for c in listed}
        for entry in list(cache.by_id.values()):
            if entry.container.id not in present and entry.gone_at is None:
                entry.gone_at = now
        for container in listed:
            self._upsert(index, container)
        self._changed()

    def _apply(self, index: int, event: Event) -> None:
        if self._closed:
            return
        self.stats["events"] += 1
        cache = self._caches[index]
        entry = cache.by_id.get(event.container.id)
        if event.action == "destroy":
            if entry is not None:
                entry.gone_at = time.monotonic()
            return
        if event.action == "die":
            return
        if event.action == "rename" and entry is not None:
            # The running container keeps the tag it started with, so its
            # old name stays an alias next to the new one.
            entry.update(replace(entry.container, name=event.container.name))
            cache.by_name[event.container.name] = entry
            self._changed()
        elif self._upsert(index, event.container):
            self._changed()

    def _upsert(self, index: int, container: Container) -> bool:
        """Cache what the engine says about a container; tell whether it changed."""
        cache = self._caches[index]
        entry = cache.by_id.get(container.id)
        if entry is None:
            cache.add(_Entry(index, container))
            return True
        entry.gone_at = None
        if entry.container == container:
            return False
        entry.update(container)
        cache.add(entry)
        return True

    def _changed(self) -> None:
        # Names may now resolve elsewhere: forget every answer and retry the
        # tags that wait.
        self._memo.clear()
        self._negative.clear()
        for key, hold in list(self._pending.items()):
            if self._find(self._select(key[0]), key[1]) is not None:
                self._release(key)
            else:
                self._lookup(key, hold)

    async def _sweep(self) -> None:
        interval = max(0.05, min(self._ttl / 2, 30.0))
        while True:
            await asyncio.sleep(interval)
            self._expire(time.monotonic())

    def _expire(self, now: float) -> None:
        expired = False
        for cache in self._caches:
            for entry in list(cache.by_id.values()):
                if entry.gone_at is not None and now - entry.gone_at >= self._ttl:
                    cache.drop(entry)
                    expired = True
        if expired:
            self._memo.clear()
        if len(self._negative) > _MEMO_MAX:
            self._negative.clear()

    # Lookups in the cache.

    def _select(self, host: str) -> tuple[int, ...]:
        if len(self._all) == 1:
            return self._all
        index = self._by_engine_name.get(host)
        return self._all if index is None else (index,)

    def _find(self, selected: tuple[int, ...], tag: str) -> _Entry | None:
        ids, names = tag_candidates(tag)
        for index in selected:
            entry = self._caches[index].get(ids, names)
            if entry is not None:
                return entry
        for index in selected:
            entry = self._caches[index].search(tag)
            if entry is not None:
                return entry
        return None

    def _remember(self, key: _Key, entry: _Entry) -> None:
        if len(self._memo) >= _MEMO_MAX:
            self._memo.clear()
        self._memo[key] = entry


_Found = tuple[list[tuple[int, Container]], int]


def _lookup(
    indexes: list[int], engines: list[Engine], ids: list[str], names: list[str]
) -> _Found:
    """Ask each engine for the container a tag names; runs in a thread."""
    errors = 0
    for index, engine in zip(indexes, engines, strict=True):
        try:
            container = engine.find(ids, names)
        except DockerError as exc:
            errors += 1
            log.enrich.debug("lookup failed: %s", exc)
            continue
        if container is not None:
            return [(index, container)], errors
    return [], errors


def _fill_columns(columns: Columns, found: dict[_Key, _Entry]) -> None:
    """Set app, service, container and labels on every line of a chunk."""
    n = len(columns)
    if len(found) == 1 and len(set(columns.app_name)) == 1:
        (entry,) = found.values()
        if len(set(columns.host)) == 1:
            columns.app = [entry.app] * n
            columns.service = [entry.service] * n
            columns.container = [entry.container.name] * n
            columns.labels = [entry.labels] * n
            return
    keys = zip(columns.host, columns.app_name, strict=True)
    entries = [found.get(key) for key in keys]
    columns.app = [e.app if e else "" for e in entries]
    columns.service = [e.service if e else "" for e in entries]
    columns.container = [e.container.name if e else "" for e in entries]
    columns.labels = [e.labels if e else {} for e in entries]


def _joinable(first: Line, second: Line) -> bool:
    return not (first.parse_error or second.parse_error or second.invalid_utf8)


def _join(first: Line, rest: Line) -> Line:
    first.message += rest.message
    first.truncated = first.truncated or rest.truncated
    return first
