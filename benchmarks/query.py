"""Measure the query API on 10M stored lines while ingest runs at half speed.

Steps, each in a process of its own (chdb opens an engine path in one
process only):

1. generate: open the schema on a fresh data folder and fill `logs` with
   `--lines` lines inside the engine (INSERT ... SELECT from a table of
   the loghub corpus: ../shared/corpus/loghub), spread over `--apps` apps
   and `--days` days up to now; then add a few lines carrying rare words
   and rare substrings, distinct per measurement so no cache helps;
2. serve: `python -m logd serve` on that folder;
3. load: a sender process offers corpus lines over TCP as fast as it can
   for a few seconds (the received rate is the maximum), then at half
   that rate for the rest of the run;
4. measure, over HTTP, round-robin, `--repeat` times each: the last 100
   lines of one app, 100 lines of a one-hour window of one app, a rare
   word and a rare substring over the last day across all apps, and a
   per-minute histogram of one app over the last day.

Medians and 95th percentiles are printed and written, with the machine,
the load and the bounds of issue 4, to benchmarks/results/query.json.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from statistics import median, quantiles
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ingest import stop

# How long a process gets to exit on SIGTERM before it is killed.
_STOP_SECONDS = 120.0

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO.parent / "shared" / "corpus" / "loghub"
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "query.json"
HOUR_US = 3600 * 1_000_000
DAY_US = 24 * HOUR_US
# Issue 4's bounds: per-app queries, and rare terms over a day (ms, p95).
PER_APP_P95_MS = 100.0
RARE_P95_MS = 200.0
RARE_LINES = 4


class BenchmarkError(Exception):
    """The benchmark could not run; the message says why."""


# ---------------------------------------------------------------- generate


def corpus_messages() -> list[str]:
    """Every non-empty line of the loghub samples."""
    messages: list[str] = []
    for path in sorted(CORPUS.glob("*.log")):
        text = path.read_text(encoding="utf-8", errors="replace")
        messages += [line for line in text.splitlines() if line.strip()]
    if not messages:
        raise BenchmarkError(f"no corpus lines under {CORPUS}")
    return messages


def rare_word(k: int) -> str:
    return f"qzv{k:04d}rare{k:04d}wq"


def rare_substring(k: int) -> str:
    # Found only inside a longer token, so only a substring search finds it.
    return f"{k:04d}subx{k:04d}"


def generate(
    data: Path, lines: int, apps: int, days: int, rare: int, substring_index: bool
) -> None:
    """Fill a fresh data folder; runs in a process of its own."""
    sys.path.insert(0, str(REPO))
    import clickhouse_connect

    from logd.batch import encode
    from logd.line import Line
    from logd.store import Store

    dsn = f"chdb://{(data / 'clickhouse').resolve()}"
    store = Store(dsn, substring_index=substring_index)
    store.open()
    client = clickhouse_connect.get_client(dsn=dsn, database="logd")
    client.command("CREATE TABLE corpus (message String) ENGINE = Memory")
    client.insert("corpus", [[m] for m in corpus_messages()], ["message"])

    now = time.time_ns() // 1000
    start = now - days * DAY_US
    step = (now - 1_000_000 - start) // lines
    started = time.monotonic()
    client.command(
        f"""
        INSERT INTO logs (ts, received, seq, app, service, container, host,
            facility, severity, app_name, procid, msgid, message,
            structured_data, labels, source, parse_error, invalid_utf8,
            truncated, raw)
        WITH (SELECT groupArray(message) FROM corpus) AS messages,
            {start} + number * {step} AS t,
            concat('app-', toString(number % {apps})) AS a
        SELECT fromUnixTimestamp64Micro(t, 'UTC'), fromUnixTimestamp64Micro(t, 'UTC'),
            t, a, concat('svc-', toString(number % 3)),
            concat(a, '-', toString(number % 3), '-', toString(number % 5)),
            concat('node-', toString(number % 7)), 1,
            multiIf(number % 97 = 0, 3, number % 13 = 0, 4, number % 5 = 0, 7, 6),
            a, toString(1000 + number % 50), '',
            messages[cityHash64(number) % length(messages) + 1], '',
            map('env', 'prod', 'team', concat('team-', toString(number % 4))),
            '127.0.0.1:514', '', false, false, ''
        FROM numbers({lines})
        """,
        settings={"max_insert_threads": 2, "max_threads": 2},
    )
    inserted = time.monotonic() - started

    rng = random.Random(1)
    extra = []
    for k in range(rare):
        for text in (f"found {rare_word(k)} here", f"id=ab{rare_substring(k)}cd"):
            for _ in range(RARE_LINES):
                ts = now - rng.randrange(1, 20 * HOUR_US)
                extra.append(
                    Line(ts=ts, received=ts, seq=ts, app=f"app-{rng.randrange(apps)}",
                         severity=6, message=text)
                )  # fmt: skip
    store.insert(encode(extra))
    merged = _wait_merges(client, 120)
    parts = client.query(
        "SELECT count() FROM system.parts WHERE active AND table = 'logs'"
    )
    print(
        json.dumps(
            {
                "insert_seconds": round(inserted, 1),
                "merge_wait_seconds": round(merged, 1),
                "parts": parts.result_rows[0][0],
            }
        )
    )
    client.close()
    store.close()


def _wait_merges(client: Any, timeout: float) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if not client.query("SELECT count() FROM system.merges").result_rows[0][0]:
            break
        time.sleep(1)
    return time.monotonic() - started


# ---------------------------------------------------------------- send


def frames(apps: int, count: int = 20_000) -> bytes:
    """Newline-framed RFC 5424 lines of corpus text, spread over the apps."""
    messages = corpus_messages()
    rng = random.Random(2)
    out = []
    for i in range(count):
        message = messages[rng.randrange(len(messages))]
        out.append(
            f"<14>1 - node-{i % 7} app-{i % apps} - - - {message}\n".encode(
                "utf-8", errors="replace"
            )
        )
    return b"".join(out)


def send(port: int, rate: float, apps: int) -> None:
    """Send until SIGTERM: as fast as possible (rate 0) or `rate` lines/s."""
    stopping = False

    def on_term(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, on_term)
    body = frames(apps)
    per_frame = body.count(b"\n")
    chunks = [body[i : i + 65536] for i in range(0, len(body), 65536)]
    lines_per_chunk = per_frame / len(chunks)
    with socket.create_connection(("127.0.0.1", port)) as sock:
        started = time.monotonic()
        sent = 0.0
        while not stopping:
            for chunk in chunks:
                if rate:
                    ahead = sent / rate - (time.monotonic() - started)
                    if ahead > 0:
                        time.sleep(ahead)
                sock.sendall(chunk)
                sent += lines_per_chunk
                if stopping:
                    break


# ---------------------------------------------------------------- run


@dataclass
class Case:
    """One kind of query: its name, a request maker, and its bound."""

    name: str
    request: Callable[[int], tuple[str, dict[str, str]]]
    bound_ms: float


@dataclass
class Figures:
    name: str
    runs: int
    median_ms: float
    p95_ms: float
    max_ms: float
    bound_ms: float
    lines_median: float

    @property
    def ok(self) -> bool:
        return self.p95_ms < self.bound_ms


def cases(apps: int, now_us: int, days: int, first: int = 0) -> list[Case]:
    """The queries; run `i` asks for rare term `first + i`, seen by no other."""
    rng = random.Random(3)
    day = _iso(now_us - DAY_US)

    def last_lines(i: int) -> tuple[str, dict[str, str]]:
        return "/api/v1/logs", {"app": f"app-{i % apps}", "limit": "100"}

    def hour(i: int) -> tuple[str, dict[str, str]]:
        start = now_us - rng.randrange(2 * HOUR_US, days * DAY_US - 2 * HOUR_US)
        window = {"since": _iso(start), "until": _iso(start + HOUR_US)}
        return "/api/v1/logs", {"app": f"app-{i % apps}", "limit": "100", **window}

    def word(i: int) -> tuple[str, dict[str, str]]:
        return "/api/v1/logs", {"q": rare_word(first + i), "since": day}

    def substring(i: int) -> tuple[str, dict[str, str]]:
        phrase = f'"{rare_substring(first + i)}"'
        return "/api/v1/logs", {"q": phrase, "since": day}

    def histogram(i: int) -> tuple[str, dict[str, str]]:
        params = {"app": f"app-{i % apps}", "since": day, "step": "1m"}
        return "/api/v1/histogram", params

    return [
        Case("last 100 lines of one app", last_lines, PER_APP_P95_MS),
        Case("one-hour window of one app", hour, PER_APP_P95_MS),
        Case("rare word, all apps, one day", word, RARE_P95_MS),
        Case("rare substring, all apps, one day", substring, RARE_P95_MS),
        Case("per-minute histogram of one app, one day", histogram, PER_APP_P95_MS),
    ]


def _iso(micros: int) -> str:
    moment = datetime.fromtimestamp(micros / 1_000_000, UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def measure(port: int, all_cases: list[Case], repeat: int) -> list[Figures]:
    """Run every case `repeat` times, round-robin, on one keep-alive connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    times: dict[str, list[float]] = {c.name: [] for c in all_cases}
    sizes: dict[str, list[int]] = {c.name: [] for c in all_cases}
    for i in range(repeat):
        for case in all_cases:
            path, params = case.request(i)
            url = f"{path}?{urllib.parse.urlencode(params)}"
            started = time.perf_counter()
            conn.request("GET", url)
            response = conn.getresponse()
            body = response.read()
            elapsed = (time.perf_counter() - started) * 1000
            if response.status != 200:
                raise BenchmarkError(f"GET {url}: {response.status} {body[:300]!r}")
            times[case.name].append(elapsed)
            document = json.loads(body)
            found = document.get("lines", document.get("buckets", []))
            sizes[case.name].append(len(found))
    conn.close()
    return [_figures(c, times[c.name], sizes[c.name]) for c in all_cases]


def _figures(case: Case, times: list[float], sizes: list[int]) -> Figures:
    # Inclusive: with a few dozen runs the default method extrapolates past
    # the slowest run.
    p95 = quantiles(times, n=20, method="inclusive")[18] if len(times) > 1 else times[0]
    return Figures(
        name=case.name,
        runs=len(times),
        median_ms=round(median(times), 1),
        p95_ms=round(p95, 1),
        max_ms=round(max(times), 1),
        bound_ms=case.bound_ms,
        lines_median=median(sizes),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def start_logd(
    data: Path, tcp: int, http_port: int, substring_index: bool
) -> subprocess.Popen[bytes]:
    udp = free_port()
    argv = [sys.executable, "-m", "logd", "serve", "--data", str(data)]
    if substring_index:
        argv.append("--substring-index")
    argv += ["--tcp", f"127.0.0.1:{tcp}", "--udp", f"127.0.0.1:{udp}"]
    argv += ["--http", f"127.0.0.1:{http_port}"]
    log = (data / "logd.log").open("ab")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(argv, cwd=REPO, env=env, stdout=log, stderr=log)
    deadline = time.monotonic() + 120
    while _status(http_port, "/healthz") != 200:
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc, _STOP_SECONDS)
            tail = (data / "logd.log").read_text(errors="replace")[-2000:]
            raise BenchmarkError(f"logd did not become healthy: {tail}")
        time.sleep(0.5)
    return proc


def _status(port: int, path: str) -> int | None:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        conn.request("GET", path)
        status = conn.getresponse().status
        conn.close()
        return status
    except OSError:
        return None


def start_sender(port: int, rate: float, apps: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--send", str(port), "--rate", str(rate)]
    argv += ["--apps", str(apps)]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL)


def metric(port: int, pattern: str) -> float:
    """Read one sample from /metrics (0 when absent)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/metrics")
    text = conn.getresponse().read().decode()
    conn.close()
    match = re.search(pattern, text, re.M)
    return float(match.group(1)) if match else 0.0


def received(port: int) -> float:
    """Lines logd has received over TCP."""
    return metric(port, r'^logd_lines_received_total\{listener="tcp"\} (\S+)$')


def wait_drained(port: int, timeout: float = 180.0) -> None:
    """Wait until no batch waits in the spool for storage."""
    deadline = time.monotonic() + timeout
    while metric(port, r"^logd_spool_batches (\S+)$") > 0:
        if time.monotonic() > deadline:
            raise BenchmarkError(f"storage still behind after {timeout:.0f} s")
        time.sleep(0.2)


def calibrate(http_port: int, tcp: int, apps: int, seconds: float) -> float:
    """Return the rate logd receives and stores lines at when pushed hard.

    Lines count from the first second on, until storage has taken every
    one of them, so a backlog the writer has not caught up with does not
    pass for throughput.
    """
    sender = start_sender(tcp, 0, apps)
    try:
        time.sleep(1.0)
        before, started = received(http_port), time.monotonic()
        time.sleep(seconds)
    finally:
        stop(sender, _STOP_SECONDS)
    sent = received(http_port) - before
    wait_drained(http_port)
    return sent / (time.monotonic() - started)


def run(args: argparse.Namespace) -> dict[str, object]:
    folder = Path(tempfile.mkdtemp(prefix="logd-query-bench-", dir=args.tmp))
    try:
        return _run_in(folder, args)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)


def _run_in(folder: Path, args: argparse.Namespace) -> dict[str, object]:
    print(f"generating {args.lines:,} lines in {folder} ...", flush=True)
    started = time.monotonic()
    argv = [sys.executable, __file__, "--generate", str(folder)]
    argv += ["--lines", str(args.lines), "--apps", str(args.apps)]
    rare = args.repeat + max(args.repeat // 3, 2)
    argv += ["--days", str(args.days), "--repeat", str(rare)]
    if args.substring_index:
        argv.append("--substring-index")
    done = subprocess.run(argv, check=True, capture_output=True, text=True)
    generation = json.loads(done.stdout.strip().splitlines()[-1])
    generation["seconds"] = round(time.monotonic() - started, 1)
    print(f"generated: {generation}", flush=True)

    tcp, http_port = free_port(), free_port()
    logd = start_logd(folder, tcp, http_port, args.substring_index)
    try:
        idle_runs = max(args.repeat // 3, 2)
        now_us = time.time_ns() // 1000
        idle = measure(http_port, cases(args.apps, now_us, args.days), idle_runs)
        maximum = calibrate(http_port, tcp, args.apps, args.calibrate)
        rate = maximum / 2
        print(f"ingest maximum {maximum:,.0f} lines/s; loading at {rate:,.0f}")
        sender = start_sender(tcp, rate, args.apps)
        try:
            time.sleep(3)
            before, load_started = received(http_port), time.monotonic()
            now_us = time.time_ns() // 1000
            loaded_cases = cases(args.apps, now_us, args.days, first=idle_runs)
            figures = measure(http_port, loaded_cases, args.repeat)
            load = (received(http_port) - before) / (time.monotonic() - load_started)
        finally:
            stop(sender, _STOP_SECONDS)
    finally:
        exit_code = stop(logd, _STOP_SECONDS)
    if exit_code != 0:
        raise BenchmarkError(f"logd exited with {exit_code}")
    return _report(args, generation, maximum, load, idle, figures)


def _report(
    args: argparse.Namespace,
    generation: dict[str, object],
    maximum: float,
    load: float,
    idle: list[Figures],
    figures: list[Figures],
) -> dict[str, object]:
    _table("no ingest", idle)
    _table(f"ingest at {load:,.0f} lines/s (max {maximum:,.0f})", figures)
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "loadavg_at_end": os.getloadavg(),
        },
        "lines": args.lines,
        "apps": args.apps,
        "days": args.days,
        "substring_index": args.substring_index,
        "generation": generation,
        "ingest_max_lines_per_s": round(maximum),
        "ingest_during_queries_lines_per_s": round(load),
        "queries_idle": [{**asdict(f), "ok": f.ok} for f in idle],
        "queries": [{**asdict(f), "ok": f.ok} for f in figures],
    }


def _table(title: str, figures: list[Figures]) -> None:
    print(f"\n{title}, milliseconds")
    print(f"{'query':44} {'median':>8} {'p95':>8} {'max':>8} {'bound':>7}  ok")
    for f in figures:
        print(
            f"{f.name:44} {f.median_ms:8.1f} {f.p95_ms:8.1f} {f.max_ms:8.1f} "
            f"{f.bound_ms:7.0f}  {'yes' if f.ok else 'NO'}"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--apps", type=int, default=20)
    parser.add_argument("--days", type=int, default=3)
    parser.add_argument("--repeat", type=int, default=30, help="runs per query")
    parser.add_argument("--calibrate", type=float, default=6.0, help="seconds")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--tmp", default=None, help="folder for the data")
    parser.add_argument("--keep", action="store_true", help="keep the data folder")
    parser.add_argument(
        "--substring-index",
        action="store_true",
        help="run logd with --substring-index (n-grams of every message)",
    )
    parser.add_argument("--generate", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--send", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.generate:
        generate(
            args.generate,
            args.lines,
            args.apps,
            args.days,
            args.repeat,
            args.substring_index,
        )
        return 0
    if args.send:
        send(args.send, args.rate, args.apps)
        return 0
    try:
        result = run(args)
    except (BenchmarkError, subprocess.CalledProcessError) as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nwrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
