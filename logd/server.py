"""`logd serve`: wire the pipeline together, run it, and stop it cleanly.

socket -> framing -> parser -> batcher -> spool -> writer -> store
"""

from __future__ import annotations

import asyncio
import gc
import signal
import time
from collections import Counter
from collections.abc import Hashable, Sequence
from operator import attrgetter
from pathlib import Path

from aiohttp import web

from logd import bulk, log, sources, tls
from logd.batch import UNKNOWN_APP, Batcher, span
from logd.config import Config
from logd.enrich import Enricher
from logd.errors import StorageError
from logd.hub import Hub
from logd.line import Line
from logd.metrics import Labels, Metrics
from logd.parser import parse
from logd.spool import Spool
from logd.store import Store
from logd.writer import Writer
from query import access
from query import app as http_app

_APP = attrgetter("app")
# How long a stop keeps reading connections that are still sending.
_CLOSE_GRACE = 1.0
# Listeners read again once the spool is back under this share of its quota.
_RESUME_SHARE = 0.9
_SWEEP_SECONDS = 1.0


class Server:
    """One logd process: listeners, pipeline, storage and the HTTP side."""

    def __init__(self, config: Config) -> None:
        config.check()
        self.config = config
        self.tokens = access.load(Path(config.tokens)) if config.tokens else None
        if config.http:
            access.check_bind(config.http[0], self.tokens, config.insecure)
        self.metrics = Metrics()
        self.hub = Hub(self.metrics)
        self.ready = asyncio.Event()
        self.store = Store(
            config.dsn,
            retention=config.retention,
            cluster=config.cluster,
            substring_index=config.substring_index,
        )
        self.spool = Spool(config.data / "spool", span)
        self.writer = Writer(self.store, self.spool, fsync=config.fsync_interval > 0)
        self.batcher = Batcher(
            self.spool,
            self.writer.submit,
            max_rows=config.batch_rows,
            interval=config.batch_interval,
            fsync_interval=config.fsync_interval,
        )
        self.enricher = Enricher(config.docker, self.accept)
        self.source_stats = sources.Stats()
        self.limits = sources.Limits(
            max_frame=config.max_frame,
            max_connections=config.max_connections,
            idle_timeout=config.idle_timeout,
            frame_timeout=config.frame_timeout,
        )
        self._received = self.metrics.counter(
            "logd_lines_received", "Syslog lines received", ("listener",)
        )
        self._malformed = self.metrics.counter(
            "logd_lines_malformed",
            "Lines stored raw because they did not parse",
            ("listener",),
        )
        self._per_app = self.metrics.counter(
            "logd_app_lines", "Lines accepted, by app", ("app",)
        )
        self._streams: list[sources.StreamListener] = []
        self._udp: list[sources.DatagramReceiver] = []
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self.paused = False
        self._declare_metrics()

    def ingest(self, frames: list[bytes], peer: str, listener: str) -> None:
        """Parse frames from one peer and pass them down the pipeline.

        With no tail subscriber to publish to, a chunk the bulk parser and
        the enricher can take whole goes to the batcher as columns; any
        other chunk is parsed line by line (the two give the same rows).
        """
        received = time.time_ns() // 1000
        self._received[(listener,)] += len(frames)
        if not self.hub.subscribers:
            columns = bulk.parse(frames, received, peer)
            if columns is not None and self.enricher.fill(columns):
                self._accept_columns(columns)
                return
        lines = [parse(frame, received, peer) for frame in frames]
        malformed = sum(1 for line in lines if line.parse_error)
        if malformed:
            self._malformed[(listener,)] += malformed
        self.enricher.push(lines)

    def accept(self, lines: list[Line]) -> None:
        """Take parsed (and enriched) lines: spool them, then fan them out."""
        self.batcher.push(lines)
        self.hub.publish(lines)
        for app, count in Counter(map(_APP, lines)).items():
            self._per_app[(app,)] += count
        if not self.paused and self.spool.size > self.config.spool_max:
            self._pause()

    def _accept_columns(self, columns: bulk.Columns) -> None:
        self.hub.passed(self.batcher.push_columns(columns))
        # The app each line is stored under, as the ingest view decides it.
        apps: Sequence[str] = columns.app_name
        if columns.app is not None:
            apps = [app or name for app, name in zip(columns.app, apps, strict=True)]
        counts = {apps[0]: len(apps)} if len(set(apps)) == 1 else Counter(apps)
        for app, count in counts.items():
            self._per_app[(app or UNKNOWN_APP,)] += count
        if not self.paused and self.spool.size > self.config.spool_max:
            self._pause()

    async def start(self) -> None:
        """Open storage, replay the spool, then listen."""
        # Storage first, so the schema exists before lines arrive; if it
        # cannot be reached, lines wait in the spool until it can.
        try:
            await asyncio.to_thread(self.store.open)
        except StorageError as exc:
            log.store.warning("storage unreachable, spooling until it is: %s", exc)
        self.writer.start()
        self.batcher.start()
        # Waits a few seconds at most; without Docker, lines pass unenriched.
        await self.enricher.start()

        # Listeners, then HTTP; ready once both accept.
        await self._listen()
        await self._serve_http()
        self._tasks.append(asyncio.get_running_loop().create_task(self._watch()))
        self.ready.set()
        log.server.info("logd is ready; data in %s", self.config.data)

    async def stop(self) -> None:
        """Stop accepting, spool what was read, and let storage take it."""
        self.ready.clear()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

        # Listeners first: read what senders are still sending for a
        # moment, then close, so nothing read is left behind.
        for receiver in self._udp:
            receiver.close()
        await asyncio.gather(*(s.close(_CLOSE_GRACE) for s in self._streams))
        await self.enricher.close()
        await self.hub.close()

        # Seal the open batch, then let the writer insert the backlog.
        await self.batcher.stop()
        timeout = self.config.drain_timeout
        if not await asyncio.to_thread(self.writer.stop, timeout):
            log.server.warning(
                "storage did not take the backlog in %ds; %d bytes stay in the "
                "spool for the next start",
                timeout,
                self.spool.size,
            )

        # HTTP last, so /healthz and /metrics answer while draining.
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.to_thread(self.store.close)
        log.server.info(
            "stopped: %d lines received, %d inserted this run",
            sum(self._received.values()),
            self.writer.stats["inserted_lines"],
        )

    async def _listen(self) -> None:
        cfg = self.config
        stats = self.source_stats
        if cfg.udp:
            sock = sources.bind_udp(*cfg.udp)
            allow = sources.Allowlist(cfg.udp_allow)
            receiver = sources.DatagramReceiver(
                sock, self.ingest, allow, stats, cfg.max_frame
            )
            receiver.start()
            self._udp.append(receiver)
        if cfg.tcp:
            allow = sources.Allowlist(cfg.tcp_allow)
            tcp = sources.StreamListener("tcp", self.ingest, allow, stats, self.limits)
            await tcp.start(*cfg.tcp)
            self._streams.append(tcp)
        if cfg.tls and cfg.tls_enabled:
            allow = sources.Allowlist(cfg.tls_allow)
            context = tls.server_context(cfg.tls_cert, cfg.tls_key)
            secure = sources.StreamListener(
                "tls", self.ingest, allow, stats, self.limits, context
            )
            await secure.start(*cfg.tls)
            self._streams.append(secure)

    async def _serve_http(self) -> None:
        if not self.config.http:
            return
        application = http_app.build(
            self.store,
            self.metrics,
            self.ready,
            hub=self.hub,
            tokens=self.tokens,
            stored_seq=lambda: self.writer.stored_seq,
        )
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        host, port = self.config.http
        await web.TCPSite(self._runner, host, port).start()

    async def _watch(self) -> None:
        # Once a second: close idle and stuck connections, and read again
        # once the writer has brought the spool back under its quota.
        while True:
            await asyncio.sleep(_SWEEP_SECONDS)
            now = time.monotonic()
            for stream in self._streams:
                stream.sweep(now)
            if self.paused and self.spool.size < self.config.spool_max * _RESUME_SHARE:
                self._resume()

    def _spool_age(self) -> float:
        # A sequence is the wall clock in microseconds when its line was
        # taken, so the oldest pending sequence dates the backlog.
        oldest = self.spool.oldest_seq()
        if not oldest:
            return 0.0
        return max(0.0, time.time() - oldest / 1_000_000)

    def _pause(self) -> None:
        self.paused = True
        log.server.warning(
            "spool over its quota (%d bytes): TCP and TLS stop reading, UDP "
            "lines are dropped until storage catches up",
            self.spool.size,
        )
        for stream in self._streams:
            stream.pause()
        for receiver in self._udp:
            receiver.pause()

    def _resume(self) -> None:
        self.paused = False
        log.server.info("spool back under its quota: reading again")
        for stream in self._streams:
            stream.resume()
        for receiver in self._udp:
            receiver.resume()

    def _declare_metrics(self) -> None:
        m = self.metrics
        stats = self.source_stats
        m.gauge(
            "logd_spool_bytes",
            "Bytes of lines on disk waiting to be inserted",
            lambda: {(): float(self.spool.size)},
        )
        m.gauge(
            "logd_spool_batches",
            "Sealed batches waiting to be inserted",
            lambda: {(): float(self.writer.pending)},
        )
        m.gauge(
            "logd_spool_age_seconds",
            "Age of the oldest line on disk not yet inserted",
            lambda: {(): self._spool_age()},
        )
        m.gauge(
            "logd_insert_last_seconds",
            "Duration of the last insert",
            lambda: {(): self.writer.last_insert_seconds},
        )
        m.counter_from(
            "logd_insert_seconds",
            "Time spent inserting; over logd_writer_events{event=inserted_batches}, "
            "the mean insert latency",
            lambda: {(): self.writer.insert_seconds},
        )
        m.gauge(
            "logd_insert_last_batch_lines",
            "Lines in the last batch inserted",
            lambda: {(): float(self.writer.last_batch_lines)},
        )
        m.gauge(
            "logd_backpressure",
            "1 while the spool is over its quota and listeners hold back",
            lambda: {(): float(self.paused)},
        )
        m.counter_from(
            "logd_writer_events",
            "Writer events: batches and lines inserted, insert errors, replays",
            lambda: _labelled(self.writer.stats),
            ("event",),
        )
        m.counter_from(
            "logd_enrich_events",
            "Docker enrichment: cache hits and misses, lines enriched and not, "
            "lookups, split lines joined, engine events and reconnects",
            lambda: _labelled(self.enricher.stats),
            ("event",),
        )
        m.gauge(
            "logd_docker_engine_up",
            "1 while a Docker engine answers",
            lambda: {
                (url,): float(up) for url, up in self.enricher.engine_states().items()
            },
            ("engine",),
        )
        m.counter_from(
            "logd_source_connections",
            "Connections accepted",
            lambda: _labelled(stats.connections),
            ("listener",),
        )
        m.gauge(
            "logd_source_open_connections",
            "Connections open now",
            lambda: _labelled(stats.open),
            ("listener",),
        )
        m.counter_from(
            "logd_source_refused",
            "Peers refused or closed, and datagrams dropped, by reason",
            lambda: _labelled(stats.refused),
            ("listener", "reason"),
        )
        m.counter_from(
            "logd_source_bytes",
            "Bytes received",
            lambda: _labelled(stats.bytes),
            ("listener",),
        )


def _labelled(counter: Counter[str] | Counter[tuple[str, str]]) -> dict[Labels, float]:
    return {_key(k): float(v) for k, v in counter.items()}


def _key(key: Hashable) -> Labels:
    return key if isinstance(key, tuple) else (str(key),)


async def run(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then drain and return."""
    server = Server(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await server.start()
    _tune_gc()
    await stopping.wait()
    log.server.info("stopping: draining batches")
    await server.stop()


def _tune_gc() -> None:
    """Keep the cyclic collector off the ingest path.

    Parsing a chunk makes a list per line that lives only until the chunk
    is encoded, so with the default threshold (700) the collector ran
    twice a chunk, promoted the rows still alive, and then walked the
    whole heap: about a sixth of the process's Python CPU under loggen's
    maximum rate (perf, 2026-12-04). What start-up made stays for the
    life of the process and is frozen out of collections; a collection
    runs every 100,000 new containers instead of 700, which still
    reclaims cycles (from errors and closed connections) within seconds.
    """
    gc.freeze()
    gc.set_threshold(100_000, 20, 10)
