"""Soak logd: a steady load for minutes with a storage outage in the middle.

loggen offers a fixed rate of 200-byte RFC 5424 lines over TCP for
`--duration` seconds. logd's embedded engine keeps its files on a tmpfs of
its own. For `--outage` seconds in the middle, the engine cannot write:

- `--outage-kind read-only` (the default) makes every folder of the
  engine's tables immutable (chattr +i), so each insert and each merge
  fails when it creates its part, as on a file system gone read-only;
- `--outage-kind disk-full` fills the tmpfs with a ballast file. On chdb
  4.4 (ClickHouse 26.9) a merge that runs out of space can leave a part
  with an empty marks file, which later fails every read of the table:
  an engine bug this mode reproduces, kept to show it.

Meanwhile the lines wait in logd's spool (on the real disk). Then the
outage ends and the backlog drains while new lines keep arriving.

Prints and writes to benchmarks/results/soak.json: lines sent, stored and
lost (must be 0), peak spool size, peak RSS (must stay under 1.2 GB), and
how long the backlog took to drain after the outage ended.

Needs root (it mounts a tmpfs) and loggen (scripts/install-loggen).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.ingest import (
    LOGGEN_SUMMARY,
    Logd,
    Loggen,
    RssSampler,
    find_loggen,
    machine,
)

OUTPUT = Path(__file__).resolve().parent / "results" / "soak.json"
MAX_PEAK_RSS = 1_200_000_000


def metric(logd: Logd, name: str) -> float:
    text = logd._get("/metrics").decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


class Watch(threading.Thread):
    """Sample the spool size every second; keep the peak and the timeline."""

    def __init__(self, logd: Logd) -> None:
        super().__init__(daemon=True)
        self.logd = logd
        self.peak_spool = 0.0
        self.timeline: list[tuple[float, float]] = []
        self.done = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while not self.done.wait(1.0):
            try:
                size = metric(self.logd, "logd_spool_bytes")
            except OSError:
                continue
            self.peak_spool = max(self.peak_spool, size)
            self.timeline.append((round(time.monotonic() - start, 1), size))


def fill(mount: Path) -> Path:
    """Fill the tmpfs to the last byte with a ballast file."""
    ballast = mount / "ballast"
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={ballast}", "bs=1M"],
        capture_output=True,
        check=False,
    )
    return ballast


def freeze(engine: Path, frozen: bool) -> None:
    """Make the engine's table folders immutable, or writable again."""
    folders = [str(p) for p in (engine / "store").glob("*/*") if p.is_dir()]
    flag = "+i" if frozen else "-i"
    subprocess.run(["chattr", flag, *folders], check=True)


def soak(args: argparse.Namespace) -> dict[str, object]:
    work = Path(tempfile.mkdtemp(prefix="logd-soak-"))
    engine = work / "logd-data" / "clickhouse"
    engine.mkdir(parents=True)
    subprocess.run(
        [
            "mount",
            "-t",
            "tmpfs",
            "-o",
            f"size={args.engine_size}",
            "tmpfs",
            str(engine),
        ],
        check=True,
    )
    loggen = Loggen(find_loggen(), rate=args.rate)
    logd = Logd(work)
    watch = Watch(logd)
    try:
        with RssSampler(logd.pid) as rss:
            watch.start()
            argv = loggen.argv("tcp", logd.port, args.duration)
            sender = subprocess.Popen(
                argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
            time.sleep((args.duration - args.outage) / 2)
            print(f"outage ({args.outage_kind}) for {args.outage}s")
            if args.outage_kind == "disk-full":
                ballast = fill(engine)
                time.sleep(args.outage)
                ballast.unlink()
            else:
                freeze(engine, True)
                time.sleep(args.outage)
                freeze(engine, False)
            outage_end = time.monotonic()
            print("outage over: the backlog drains")
            out, err = sender.communicate(timeout=args.duration + 120)
            summary = LOGGEN_SUMMARY.search(out + err)
            if summary is None:
                raise SystemExit(f"loggen said nothing usable: {err[-500:]!r}")
            sent = int(summary[1])
            while metric(logd, "logd_spool_bytes") > 0 or logd.stored() < sent:
                if time.monotonic() - outage_end > 1800:
                    break
                time.sleep(1)
            drain = time.monotonic() - outage_end
            stored = logd.finish()
            rss.finish()
    finally:
        watch.done.set()
        logd.close()
        subprocess.run(["umount", "-l", str(engine)], check=False)
    return {
        "sent": sent,
        "stored": stored,
        "lost": sent - stored,
        "peak_spool_bytes": watch.peak_spool,
        "peak_rss_bytes": rss.peak_bytes,
        "drain_seconds_after_outage": round(drain, 1),
        "spool_timeline": watch.timeline,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=600, help="seconds of load")
    parser.add_argument("--outage", type=int, default=120, help="seconds of outage")
    parser.add_argument(
        "--rate",
        type=int,
        default=120_000,
        help="lines/s offered (about half of logd's max on 2 cores)",
    )
    parser.add_argument("--engine-size", default="8g", help="tmpfs for the engine")
    parser.add_argument(
        "--outage-kind", choices=["read-only", "disk-full"], default="read-only"
    )
    args = parser.parse_args()
    result = soak(args)
    record = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "config": vars(args),
        "result": result,
        "checks": {
            "lost_is_zero": result["lost"] == 0,
            "peak_rss_under_1_2_gb": int(str(result["peak_rss_bytes"])) < MAX_PEAK_RSS,
        },
    }
    OUTPUT.parent.mkdir(exist_ok=True)
    OUTPUT.write_text(json.dumps(record, indent=2) + "\n")
    for key in ("sent", "stored", "lost", "peak_spool_bytes", "peak_rss_bytes"):
        print(f"{key:>28}: {result[key]:,}")
    print(f"{'drain after outage (s)':>28}: {result['drain_seconds_after_outage']}")
    return 0 if all(record["checks"].values()) else 1  # type: ignore[union-attr]


if __name__ == "__main__":
    sys.exit(main())
