"""Measure live tail latency: syslog received to websocket message read.

Start a fresh `logd serve`, open `GET /api/v1/tail` for one app, and let a
sender process offer RFC 5424 lines over TCP at a steady rate (10k lines/s by
default) for a fixed time, with TCP_NODELAY set as Docker's syslog driver
(Go) sets it. The sender stamps every message with the wall clock when it
writes it; the websocket client reads the stamp back and records now minus
stamp for every line. The first seconds warm up and are not counted.
Reported: lines sent and received, gaps, latency p50, p90, p99, p99.9 and
max, and the CPU seconds logd and the client used; written to
``benchmarks/results/tail.json``. `--no-tail` sends without a tail, to
compare logd's CPU for ingest alone.

Scope: sender, logd and client share this machine's cores, so the figures
include their competition for CPU (the load average is recorded); the
latency covers the sender's socket, parsing, the hub, the websocket and the
client's JSON decoding.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import resource
import socket
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from statistics import quantiles
from typing import TYPE_CHECKING

import aiohttp
import orjson
from ingest import machine

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.serve import LogdServer  # noqa: E402

if TYPE_CHECKING:
    from multiprocessing.sharedctypes import Synchronized

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "tail.json"
APP = "tailbench"
TARGET_P99_MS = 100.0
# Lines written per send; the pacing tick is burst / rate seconds.
BURST = 20
PADDING = "x" * 120
# How long the client keeps reading after the sender has finished.
DRAIN_SECONDS = 10.0


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rate", type=int, default=10_000, help="lines per second")
    parser.add_argument("--seconds", type=float, default=20.0, help="measured time")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds not counted")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument(
        "--no-tail",
        action="store_true",
        help="send without a tail: logd's CPU for ingest alone, to compare",
    )
    parser.add_argument(
        "--logd-arg", action="append", default=[], help="extra `logd serve` argument"
    )
    return parser.parse_args(argv)


# ---------------------------------------------------------------- sender


def send(port: int, rate: int, seconds: float, sent: Synchronized[int]) -> None:
    """Write `rate` lines a second for `seconds`, each stamped when written."""
    tick = BURST / rate
    with socket.create_connection(("127.0.0.1", port)) as sock:
        # Nagle's wait for an ACK would be the sender's latency, not logd's.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        start = time.monotonic()
        count = 0
        while (elapsed := time.monotonic() - start) < seconds:
            stamp = time.time_ns()
            frames = b"".join(
                f"<14>1 - bench-host {APP} - - - t={stamp} n={count + i} "
                f"{PADDING}\n".encode()
                for i in range(BURST)
            )
            sock.sendall(frames)
            count += BURST
            ahead = count * tick / BURST - elapsed
            if ahead > 0:
                time.sleep(ahead)
    sent.value = count


# ---------------------------------------------------------------- receiver


class Tally:
    """Latencies of the lines stamped after the warm-up, and what else came."""

    def __init__(self, counted_after_ns: int) -> None:
        self.counted_after_ns = counted_after_ns
        self.latencies_ms: list[float] = []
        self.received = 0
        self.gaps = 0
        self.skipped = 0

    def take(self, data: bytes, now_ns: int) -> None:
        event = orjson.loads(data)
        if event["type"] == "gap":
            self.gaps += 1
            self.skipped += event["skipped"]
            return
        if event["type"] != "line":
            return
        self.received += 1
        message = event["message"]
        stamp = int(message[2 : message.index(" ")])
        if stamp >= self.counted_after_ns:
            self.latencies_ms.append((now_ns - stamp) / 1e6)


async def receive(url: str, tally: Tally, connected: asyncio.Event) -> None:
    """Read the tail until cancelled and record every line."""
    async with (
        aiohttp.ClientSession() as session,
        session.ws_connect(
            f"{url}/api/v1/tail", params={"app": APP}, decode_text=False
        ) as ws,
    ):
        # logd subscribes before it answers the upgrade.
        connected.set()
        async for message in ws:
            if message.type is aiohttp.WSMsgType.TEXT:
                tally.take(message.data, time.time_ns())


# ---------------------------------------------------------------- report


def summarize(tally: Tally, sent: int, args: argparse.Namespace) -> dict[str, object]:
    latencies = sorted(tally.latencies_ms)
    cuts = quantiles(latencies, n=1000, method="inclusive") if latencies else []

    def at(per_mille: int) -> float:
        return round(cuts[per_mille - 1], 2) if cuts else float("nan")

    return {
        "rate": args.rate,
        "seconds": args.seconds,
        "warmup": args.warmup,
        "sent": sent,
        "received": tally.received,
        "gaps": tally.gaps,
        "skipped": tally.skipped,
        "measured": len(latencies),
        "p50_ms": at(500),
        "p90_ms": at(900),
        "p99_ms": at(990),
        "p999_ms": at(999),
        "max_ms": round(latencies[-1], 2) if latencies else float("nan"),
    }


def print_table(result: dict[str, object]) -> None:
    print(
        f"sent {result['sent']}  received {result['received']}  "
        f"gaps {result['gaps']} ({result['skipped']} lines skipped)"
    )
    print(
        f"CPU seconds: logd {result['logd_cpu_s']}, client {result['client_cpu_s']}; "
        f"load {result['loadavg_1m_at_start']:.1f} -> {result['loadavg_1m_at_end']:.1f}"
    )
    print(f"latency over {result['measured']} lines, ms:")
    for key in ("p50_ms", "p90_ms", "p99_ms", "p999_ms", "max_ms"):
        print(f"  {key[:-3]:>5}  {result[key]}")


async def measure(args: argparse.Namespace, server: LogdServer) -> dict[str, object]:
    """Run one sender against a tail of the running server."""
    total = args.warmup + args.seconds
    tally = Tally(time.time_ns() + int(args.warmup * 1e9))
    spawn = multiprocessing.get_context("spawn")
    sent = spawn.Value("q", 0)
    sender = spawn.Process(target=send, args=(server.ports.tcp, args.rate, total, sent))
    connected = asyncio.Event()
    reader = asyncio.create_task(receive(server.base_url, tally, connected))
    if args.no_tail:
        reader.cancel()
    else:
        await asyncio.wait_for(connected.wait(), 30)
    assert server.process is not None
    cpu = CpuClock(server.process.pid)
    sender.start()
    await asyncio.to_thread(sender.join)

    # Let the last lines arrive, then stop reading.
    deadline = time.monotonic() + DRAIN_SECONDS
    while tally.received + tally.skipped < sent.value and time.monotonic() < deadline:
        if args.no_tail:
            break
        await asyncio.sleep(0.1)
    reader.cancel()
    await asyncio.gather(reader, return_exceptions=True)
    result = summarize(tally, int(sent.value), args)
    result.update(cpu.seconds())
    return result


class CpuClock:
    """CPU seconds used by logd and by this client since it was made."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.started = (self._logd(), self._client(), os.getloadavg()[0])

    def seconds(self) -> dict[str, float]:
        logd, client, load = self.started
        return {
            "logd_cpu_s": round(self._logd() - logd, 2),
            "client_cpu_s": round(self._client() - client, 2),
            "loadavg_1m_at_start": load,
            "loadavg_1m_at_end": os.getloadavg()[0],
        }

    def _logd(self) -> float:
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        # utime and stime, fields 14 and 15 of proc(5), in clock ticks.
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    @staticmethod
    def _client() -> float:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return usage.ru_utime + usage.ru_stime


def main(argv: Sequence[str] | None = None) -> int:
    """Start logd, measure, print and write the results."""
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="logd-tailbench-") as data:
        server = LogdServer(Path(data), extra_args=tuple(args.logd_arg))
        with server:
            result = asyncio.run(measure(args, server))
    print_table(result)
    p99 = result["p99_ms"]
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "logd_args": args.logd_arg,
        "result": result,
        "checks": {
            "p99_under_100ms": isinstance(p99, float) and p99 < TARGET_P99_MS,
            "no_gaps": result["gaps"] == 0,
        },
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"written to {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
