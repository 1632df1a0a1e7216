"""`logd serve`: wire the pipeline together, run it, and stop it cleanly.

socket -> framing -> parser -> enrich -> batcher -> spool -> writer -> store
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter

from aiohttp import web

from logd import log, sources
from logd.batch import Batcher
from logd.config import Config
from logd.errors import StorageError
from logd.line import Line
from logd.metrics import Labels, Metrics
from logd.parser import parse
from logd.spool import Spool
from logd.store import Store
from logd.writer import Writer
from query import app as http_app

# How long a stop waits for storage to take the backlog before leaving it
# in the spool for the next start.
_DRAIN_SECONDS = 30.0


class Server:
    """One logd process: listeners, pipeline, storage and the HTTP side."""

    def __init__(self, config: Config) -> None:
        config.check()
        self.config = config
        self.metrics = Metrics()
        self.ready = asyncio.Event()
        self.store = Store(
            config.dsn, retention=config.retention, cluster=config.cluster
        )
        self.spool = Spool(config.data / "spool")
        self.writer = Writer(self.store, self.spool, fsync=config.fsync)
        self.batcher = Batcher(
            self.spool,
            self.writer.submit,
            max_rows=config.batch_rows,
            interval=config.batch_interval,
        )
        self.source_stats = sources.Stats()
        self._received = self.metrics.counter(
            "logd_lines_received", "Syslog lines received", ("listener",)
        )
        self._malformed = self.metrics.counter(
            "logd_lines_malformed",
            "Lines stored raw because they did not parse",
            ("listener",),
        )
        self._servers: list[asyncio.Server] = []
        self._udp: list[sources.DatagramReceiver] = []
        self._runner: web.AppRunner | None = None
        self._declare_gauges()

    def ingest(self, frames: list[bytes], peer: str, listener: str) -> None:
        """Parse frames from one peer and pass them down the pipeline."""
        received = time.time_ns() // 1000
        lines = [parse(frame, received, peer) for frame in frames]
        self._received[(listener,)] += len(lines)
        malformed = sum(1 for line in lines if line.parse_error)
        if malformed:
            self._malformed[(listener,)] += malformed
        self.accept(lines)

    def accept(self, lines: list[Line]) -> None:
        """Take parsed (and enriched) lines into the current batch."""
        self.batcher.push(lines)

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

        # Listeners, then HTTP; ready once both accept.
        await self._listen()
        await self._serve_http()
        self.ready.set()
        log.server.info("logd is ready; data in %s", self.config.data)

    async def stop(self) -> None:
        """Stop accepting, flush every batch, and wait for storage to take it."""
        self.ready.clear()

        # Stop the listeners so nothing new arrives while draining.
        for server in self._servers:
            server.close()
        for receiver in self._udp:
            receiver.close()
        for server in self._servers:
            await server.wait_closed()

        # Flush the open batch, then let the writer insert the backlog.
        await self.batcher.stop()
        drained = await asyncio.to_thread(self.writer.stop, _DRAIN_SECONDS)
        if not drained:
            log.server.warning(
                "storage did not take the backlog in %.0fs; it stays in the spool",
                _DRAIN_SECONDS,
            )

        # HTTP last, so /healthz and /metrics answer while draining.
        if self._runner is not None:
            await self._runner.cleanup()
        await asyncio.to_thread(self.store.close)

    async def _listen(self) -> None:
        cfg = self.config
        stats = self.source_stats
        if cfg.udp:
            sock = sources.bind_udp(*cfg.udp)
            receiver = sources.DatagramReceiver(
                sock,
                self.ingest,
                sources.Allowlist(cfg.udp_allow),
                stats,
                cfg.max_frame,
            )
            receiver.start()
            self._udp.append(receiver)
        if cfg.tcp:
            allow = sources.Allowlist(cfg.tcp_allow)
            self._servers.append(
                await sources.serve_stream(
                    "tcp", *cfg.tcp, self.ingest, allow, stats, cfg.max_frame
                )
            )
        if cfg.tls and cfg.tls_enabled:
            allow = sources.Allowlist(cfg.tls_allow)
            context = sources.tls_context(cfg.tls_cert, cfg.tls_key)
            self._servers.append(
                await sources.serve_stream(
                    "tls", *cfg.tls, self.ingest, allow, stats, cfg.max_frame, context
                )
            )

    async def _serve_http(self) -> None:
        if not self.config.http:
            return
        application = http_app.build(self.store, self.metrics, self.ready)
        self._runner = web.AppRunner(application, access_log=None)
        await self._runner.setup()
        host, port = self.config.http
        await web.TCPSite(self._runner, host, port).start()

    def _declare_gauges(self) -> None:
        m = self.metrics
        m.gauge(
            "logd_spool_bytes",
            "Bytes of batches waiting in the spool",
            lambda: {(): float(self.spool.bytes)},
        )
        m.gauge(
            "logd_spool_batches",
            "Batches waiting to be inserted",
            lambda: {(): float(self.writer.pending)},
        )
        m.gauge(
            "logd_insert_seconds",
            "Duration of the last insert",
            lambda: {(): self.writer.last_insert_seconds},
        )
        m.counter_from(
            "logd_writer_events",
            "Writer events: batches and lines inserted, insert errors, replays",
            lambda: _labelled(self.writer.stats),
            ("event",),
        )
        stats = self.source_stats
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
            "logd_source_rejected",
            "Peers refused by the allowlist",
            lambda: _labelled(stats.rejected),
            ("listener",),
        )
        m.counter_from(
            "logd_source_bytes",
            "Bytes received",
            lambda: _labelled(stats.bytes),
            ("listener",),
        )


def _labelled(counter: Counter[str]) -> dict[Labels, float]:
    return {(key,): float(value) for key, value in counter.items()}


async def run(config: Config) -> None:
    """Serve until SIGTERM or SIGINT, then drain and return."""
    server = Server(config)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    await server.start()
    await stopping.wait()
    log.server.info("stopping: draining batches")
    await server.stop()
    log.server.info("stopped")
