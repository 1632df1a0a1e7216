"""Measure framing and parsing, the per-line work of every received line.

Each case runs ``--repeat`` times over ``--lines`` prepared 200-byte lines in
this one process, and the best run counts: on a shared machine many short
runs are likelier than a few long ones to catch a core to themselves, and
the best run is the least disturbed. Cases:

- parse: loggen's RFC 5424 line (``[meta sequenceId=...]``), Docker's
  ``rfc5424micro`` line (SD "-"), a plain RFC 3164 line, Docker's default
  format, and a frame without PRI (the error path);
- framing: the same RFC 5424 lines newline framed and octet counted, fed in
  64 KiB reads;
- pipeline: framing then parsing, newline framed.

Times within a line's second change every ``SECOND_EVERY`` lines, far more
often than a real sender at these rates, so the timestamp caches are not
flattered. Results, with the machine and the date, go to
``benchmarks/results/parse.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from logd.framing import Framer  # noqa: E402
from logd.parser import parse  # noqa: E402

DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "parse.json"
SIZE = 200
READ = 65536
SECOND_EVERY = 10_000
RECEIVED = 1_796_319_801_000_000  # 2026-12-03T17:43:21Z
SOURCE = "127.0.0.1:51514"
# The target for parsing on one core.
TARGET = 250_000


def padded(text: str) -> bytes:
    """Pad a line to SIZE bytes the way loggen does."""
    return (text + "PADD" * (SIZE // 4))[:SIZE].encode()


def loggen_5424(i: int) -> bytes:
    second = 20 + i // SECOND_EVERY % 40
    return padded(
        f"<38>1 2026-12-03T17:43:{second:02d}.{i % 1_000_000:06d}+00:00 localhost "
        f'prg00000 1234 - [meta sequenceId="{i + 1}"] seq: {i:010d}, thread: 0000, '
        f"runid: 1764780000, stamp: 2026-12-03T17:43:{second:02d} "
    )


def docker_5424micro(i: int) -> bytes:
    second = 20 + i // SECOND_EVERY % 40
    return padded(
        f"<30>1 2026-12-03T17:43:{second:02d}.{i % 1_000_000:06d}Z dockerhost "
        f"3f4e5a6b7c8d 4242 3f4e5a6b7c8d - GET /api/items/{i} 200 "
    )


def plain_3164(i: int) -> bytes:
    second = i // SECOND_EVERY % 60
    return padded(
        f"<13>Dec  3 17:43:{second:02d} myhost myapp[1234]: seq: {i:010d}, "
        "thread: 0000, runid: 1764780000, stamp: 2026-12-03T17:43:20 "
    )


def docker_default(i: int) -> bytes:
    second = i // SECOND_EVERY % 60
    return padded(f"<30>Dec  3 17:43:{second:02d} web-1[4242]: GET /api/items/{i} ")


def no_pri(i: int) -> bytes:
    return padded(f"garbage line {i} without any header ")


def best_rate(run: Callable[[], int], repeat: int) -> tuple[float, float]:
    """Return the best wall-clock and CPU rates (items per second) of ``run``."""
    wall = cpu = 0.0
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        count = run()
        elapsed = time.perf_counter() - start
        elapsed_cpu = time.process_time() - start_cpu
        wall = max(wall, count / elapsed)
        cpu = max(cpu, count / max(elapsed_cpu, 1e-9))
    return wall, cpu


def parse_all(frames: list[bytes]) -> Callable[[], int]:
    def run() -> int:
        for frame in frames:
            parse(frame, RECEIVED, SOURCE)
        return len(frames)

    return run


def frame_all(reads: list[bytes], then_parse: bool) -> Callable[[], int]:
    def run() -> int:
        framer = Framer()
        count = 0
        for data in reads:
            frames = framer.feed(data)
            count += len(frames)
            if then_parse:
                for frame in frames:
                    parse(frame, RECEIVED, SOURCE)
        return count + len(framer.close())

    return run


def in_reads(frames: Iterable[bytes], octet_counted: bool) -> list[bytes]:
    """Encode frames as one stream and cut it into READ-sized reads."""
    if octet_counted:
        stream = b"".join(b"%d %s" % (len(frame), frame) for frame in frames)
    else:
        stream = b"".join(frame + b"\n" for frame in frames)
    return [stream[i : i + READ] for i in range(0, len(stream), READ)]


def cases(lines: int) -> dict[str, Callable[[], int]]:
    loggen = [loggen_5424(i) for i in range(lines)]
    return {
        "parse rfc5424 loggen": parse_all(loggen),
        "parse rfc5424micro docker": parse_all(
            [docker_5424micro(i) for i in range(lines)]
        ),
        "parse rfc3164 plain": parse_all([plain_3164(i) for i in range(lines)]),
        "parse rfc3164 docker default": parse_all(
            [docker_default(i) for i in range(lines)]
        ),
        "parse no PRI (error path)": parse_all([no_pri(i) for i in range(lines)]),
        "framing newline": frame_all(in_reads(loggen, False), then_parse=False),
        "framing octet-counted": frame_all(in_reads(loggen, True), then_parse=False),
        "framing+parse newline": frame_all(in_reads(loggen, False), then_parse=True),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=50_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    args = parser.parse_args()

    # Measure each case
    load_at_start = os.getloadavg()
    results = []
    print(f"{'case':32} {'lines/s':>12} {'cpu lines/s':>12}")
    for name, run in cases(args.lines).items():
        wall, cpu = best_rate(run, args.repeat)
        results.append({"case": name, "lines_per_s": wall, "cpu_lines_per_s": cpu})
        print(f"{name:32} {wall:12,.0f} {cpu:12,.0f}")

    # Write the figures with the machine they ran on
    report = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "nproc": os.cpu_count(),
            "python": platform.python_version(),
            "implementation": platform.python_implementation(),
            "loadavg_at_start": load_at_start,
            "loadavg_at_end": os.getloadavg(),
        },
        "config": {"lines": args.lines, "repeat": args.repeat, "size": SIZE},
        "target_parse_lines_per_s": TARGET,
        "results": results,
    }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    temporary = args.output.with_suffix(".json.tmp")
    temporary.write_text(json.dumps(report, indent=2) + "\n")
    temporary.replace(args.output)
    print(f"load average {load_at_start[0]:.2f} at start; wrote {args.output}")


if __name__ == "__main__":
    main()
