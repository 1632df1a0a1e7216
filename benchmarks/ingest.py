"""Measure syslog ingest: logd against rsyslog, both fed by syslog-ng's loggen.

For each protocol (TCP, UDP) and each receiver, start a fresh receiver on free
loopback ports, let loggen offer its maximum rate of 200-byte RFC 5424 lines
for a fixed time over one connection, wait until the receiver's stored count
stops growing, and count:

- rsyslog: lines in the plain file its omfile action writes;
- logd: lines stored and queryable, the sum of ``lines`` over
  ``GET /api/v1/apps``;
- logd-tagged: the same, while a container named like loggen's APP-NAME
  (``prg00000``) runs on the local dockerd with ``logd.*`` labels, so every
  line is enriched from the cache; the run also reads back which apps the
  lines were stored under and logd's enrichment counters.

Rates are stored lines over the seconds loggen offered. The results, with the
machine they ran on, go to ``benchmarks/results/ingest.json``, or to
``ingest-tagged.json`` when logd-tagged is among the receivers.

Scope: loggen runs on the same machine as the receiver, so the two share the
cores; the figures compare receivers under the same conditions, they are not
absolute capacities. A new receiver variant (another sender feeding logd, for
instance) is one more `Case` in `cases`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from statistics import median
from typing import Protocol

import docker

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = REPO / "benchmarks" / "results" / "ingest.json"
TAGGED_OUTPUT = REPO / "benchmarks" / "results" / "ingest-tagged.json"
LOGGEN_FALLBACK = Path("/opt/loggen/loggen")
RSYSLOG_CONF = Path(__file__).resolve().parent / "rsyslog.conf.in"

# py-spy's output formats and the file suffix each is written to.
PROFILE_SUFFIXES = {"flamegraph": ".svg", "raw": ".txt", "speedscope": ".json"}

# The acceptance bounds, reported next to the figures.
MIN_TCP_RATIO = 0.5
MAX_PEAK_RSS = 1_200_000_000
MIN_TAGGED_RATIO = 0.9

RECEIVERS = ("rsyslog", "logd", "logd-tagged")
LOGD_RECEIVERS = ("logd", "logd-tagged")

# loggen puts this program name in every line's APP-NAME, where Docker's
# syslog driver puts the container's tag: a container of this name is the
# one logd's enricher finds for each loggen line.
TAGGED_NAME = "prg00000"
TAGGED_APP = "bench"
# Marks the containers this script makes, so a leftover is known for one.
BENCH_LABEL = "logd.bench"
TAGGED_LABELS = {
    "logd.app": TAGGED_APP,
    "logd.service": "loggen",
    "logd.node": "n1",
    "logd.zone": "z1",
    "team": "platform",
    "tier": "backend",
    BENCH_LABEL: "ingest",
}


class BenchmarkError(Exception):
    """The benchmark could not run or a receiver failed; the message says why."""


# ---------------------------------------------------------------- processes


def find_loggen() -> str:
    """Return the loggen to run: env LOGGEN, then PATH, then /opt/loggen."""
    candidates = [os.environ.get("LOGGEN"), shutil.which("loggen")]
    candidates.append(str(LOGGEN_FALLBACK))
    for candidate in candidates:
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    raise BenchmarkError(
        "loggen not found: set LOGGEN, put loggen on PATH, or run "
        "scripts/install-loggen (installs /opt/loggen/loggen)"
    )


def free_port(avoid: Collection[int] = ()) -> int:
    """Return a loopback port free for both TCP and UDP, not one in ``avoid``.

    Free only at this moment: another program may take it before the
    receiver binds it, in which case the receiver fails at start and says so.
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
            tcp.bind(("127.0.0.1", 0))
            port: int = tcp.getsockname()[1]
        if port not in avoid and not port_bound(port, socket.SOCK_DGRAM):
            return port
    raise BenchmarkError("found no port free for both TCP and UDP in 100 tries")


def port_bound(port: int, kind: socket.SocketKind) -> bool:
    """Tell whether something already holds ``port`` for ``kind`` on loopback."""
    with socket.socket(socket.AF_INET, kind) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def tcp_accepts(port: int) -> bool:
    """Tell whether a TCP connection to ``port`` on loopback succeeds."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def wait_for(
    what: str,
    ready: Callable[[], bool],
    proc: subprocess.Popen[bytes],
    describe: Callable[[], str],
    timeout: float,
) -> None:
    """Poll ``ready`` until true; fail if ``proc`` exits or time runs out.

    ``describe`` returns the process's log tail for the error message.
    """
    deadline = time.monotonic() + timeout
    while not ready():
        if proc.poll() is not None:
            raise BenchmarkError(f"{what} failed at start, {describe()}")
        if time.monotonic() > deadline:
            stop(proc)
            raise BenchmarkError(f"{what} not ready in {timeout:.0f} s, {describe()}")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes], timeout: float = 60.0) -> int:
    """Send SIGTERM, wait for the exit (SIGKILL after ``timeout``), return code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    return proc.returncode


def process_tree(pid: int) -> list[int]:
    """Return ``pid`` and all its descendants that exist now."""
    pids, queue = [], [pid]
    while queue:
        current = queue.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with suppress(OSError):
                queue.extend(int(child) for child in task.read_text().split())
    return pids


def status_kib(pid: int, key: str) -> int:
    """Return a ``/proc/<pid>/status`` memory field in KiB, 0 if gone."""
    with suppress(OSError):
        for row in Path(f"/proc/{pid}/status").read_text().splitlines():
            if row.startswith(key + ":"):
                return int(row.split()[1])
    return 0


def thread_cpu(pid: int) -> dict[str, float]:
    """Return CPU seconds (user + system) of ``pid`` by thread name.

    The main thread is "main"; the others go by their kernel name, which
    the engine's threads set and Python's threads inherit from the process.
    "total" is the whole process, including threads that have exited.
    """
    tick = os.sysconf("SC_CLK_TCK")
    cpu: dict[str, float] = {"total": _stat_cpu(Path(f"/proc/{pid}/stat")) / tick}
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with suppress(OSError):
            seconds = _stat_cpu(task / "stat") / tick
            name = "main" if task.name == str(pid) else (task / "comm").read_text()
            cpu[name.strip()] = cpu.get(name.strip(), 0.0) + seconds
    return cpu


def _stat_cpu(path: Path) -> int:
    """Return utime + stime in clock ticks from a ``/proc`` stat file."""
    stat = path.read_text()
    # The name in parentheses may hold spaces; fields resume after it.
    fields = stat[stat.rindex(")") + 2 :].split()
    return int(fields[11]) + int(fields[12])


def cpu_spent(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Return the CPU seconds spent between two `thread_cpu` readings."""
    spent = {name: after[name] - before.get(name, 0.0) for name in after}
    return {name: round(s, 2) for name, s in sorted(spent.items()) if s >= 0.005}


class RssSampler:
    """Sample the summed VmRSS of a process tree every 100 ms, keep the peak.

    VmHWM of each process is read as well when sampling stops, so a peak
    between two samples is not missed for the processes still alive.
    """

    def __init__(self, pid: int, interval: float = 0.1) -> None:
        self._pid = pid
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.peak_rss_kib = 0
        self.peak_hwm_kib = 0

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish()

    def finish(self) -> None:
        """Stop sampling and read the high-water marks (call before the exit)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        tree = process_tree(self._pid)
        self.peak_hwm_kib = sum(status_kib(pid, "VmHWM") for pid in tree)
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self._sample()

    def _sample(self) -> None:
        rss = sum(status_kib(pid, "VmRSS") for pid in process_tree(self._pid))
        self.peak_rss_kib = max(self.peak_rss_kib, rss)

    @property
    def peak_bytes(self) -> int:
        """The larger of the sampled peak and the summed high-water marks."""
        return 1024 * max(self.peak_rss_kib, self.peak_hwm_kib)


# ---------------------------------------------------------------- senders


@dataclass(frozen=True)
class Offered:
    """What a sender reports it sent."""

    sent: int
    seconds: float


class Sender(Protocol):
    """Something that offers lines to a port for a fixed time."""

    name: str

    def send(self, proto: str, port: int, seconds: int) -> Offered:
        """Send to 127.0.0.1:``port`` over ``proto`` for ``seconds``."""
        ...


# loggen's last line: "average rate = 405503.33 msg/sec, count=1217278,
# time=3.00189, ...".
LOGGEN_SUMMARY = re.compile(
    rb"average rate = [\d.]+ msg/sec, count=(\d+), time=([\d.]+)"
)


@dataclass
class Loggen:
    """syslog-ng's loggen offering 200-byte RFC 5424 lines on one connection.

    On UDP loggen octet-counts each datagram ("200 <38>1 ...") unless told
    not to; RFC 5426 carries one bare message per datagram, and neither
    rsyslog nor logd strips that prefix, so UDP is sent unframed unless
    ``udp_framing`` is set.
    """

    binary: str
    size: int = 200
    rate: int = 10_000_000
    udp_framing: bool = False
    name: str = "loggen"

    def argv(self, proto: str, port: int, seconds: int) -> list[str]:
        """Return loggen's command line for one run."""
        argv = [self.binary, "--inet", "--syslog-proto", "--size", str(self.size)]
        argv += ["--rate", str(self.rate), "--interval", str(seconds)]
        argv += ["--active-connections", "1"]
        if proto == "tcp":
            argv.append("--stream")
        else:
            argv.append("--dgram")
            if not self.udp_framing:
                argv.append("--no-framing")
        return [*argv, "127.0.0.1", str(port)]

    def command(self, proto: str, seconds: int) -> str:
        """Return the command line as text, for the record."""
        return " ".join([*self.argv(proto, 0, seconds)[:-1], "PORT"])

    def send(self, proto: str, port: int, seconds: int) -> Offered:
        """Run loggen to the end and parse what it says it sent."""
        argv = self.argv(proto, port, seconds)
        done = subprocess.run(argv, capture_output=True, timeout=seconds + 60)
        match = LOGGEN_SUMMARY.search(done.stderr + done.stdout)
        if done.returncode != 0 or match is None:
            tail = (done.stderr + done.stdout)[-500:].decode(errors="replace")
            raise BenchmarkError(f"loggen exited {done.returncode}: {tail}")
        return Offered(sent=int(match[1]), seconds=float(match[2]))


# ---------------------------------------------------------------- receivers


class Receiver(Protocol):
    """A syslog receiver started for one measurement."""

    name: str
    port: int
    pid: int

    def stored(self) -> int:
        """Return how many lines it has stored so far."""
        ...

    def alive(self) -> bool:
        """Tell whether the receiver process still runs."""
        ...

    def finish(self) -> int:
        """Stop it with SIGTERM; return the final stored count.

        Any exit code but 0 is an error, reported by the caller.
        """
        ...

    def exit_code(self) -> int | None:
        """Return the exit code, None while it runs."""
        ...

    def failure(self) -> str:
        """Describe why it died: exit code and the tail of its log."""
        ...

    def close(self) -> None:
        """Stop the process if it still runs; safe to call more than once."""
        ...


def log_tail(path: Path, limit: int = 2000) -> str:
    """Return the end of a log file, empty if there is none."""
    with suppress(OSError):
        return path.read_bytes()[-limit:].decode(errors="replace")
    return ""


def count_lines(path: Path) -> int:
    """Count newline-terminated lines in a file, 0 if it does not exist."""
    count = 0
    with suppress(FileNotFoundError), path.open("rb") as stream:
        while chunk := stream.read(1 << 20):
            count += chunk.count(b"\n")
    return count


class Rsyslog:
    """rsyslogd with imtcp and imudp on one port, writing one plain file."""

    name = "rsyslog"

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self._out = workdir / "rsyslog.out"
        self._log = workdir / "rsyslogd.log"
        conf = workdir / "rsyslog.conf"
        conf.write_text(
            RSYSLOG_CONF.read_text()
            .replace("@WORKDIR@", str(workdir))
            .replace("@PORT@", str(self.port))
            .replace("@OUTPUT@", str(self._out))
        )
        argv = ["rsyslogd", "-n", "-f", str(conf), "-i", str(workdir / "pid")]
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=log)
        self.pid = self._proc.pid
        wait_for("rsyslogd", self._listening, self._proc, self.failure, timeout=30)

    def _listening(self) -> bool:
        return tcp_accepts(self.port) and port_bound(self.port, socket.SOCK_DGRAM)

    def stored(self) -> int:
        """Use the file's size as the growth signal: counting is slow."""
        with suppress(FileNotFoundError):
            return self._out.stat().st_size
        return 0

    def alive(self) -> bool:
        return self._proc.poll() is None

    def exit_code(self) -> int | None:
        return self._proc.poll()

    def finish(self) -> int:
        stop(self._proc)
        return count_lines(self._out)

    def failure(self) -> str:
        return f"exit {self._proc.poll()}: {log_tail(self._log)}"

    def close(self) -> None:
        stop(self._proc)


class Logd:
    """``python -m logd serve`` on free ports with a fresh data directory."""

    name = "logd"

    def __init__(self, workdir: Path, extra_args: Sequence[str] = ()) -> None:
        self.port = free_port()
        self._http = free_port(avoid={self.port})
        self._log = workdir / "logd.log"
        argv = [sys.executable, "-m", "logd", "serve"]
        argv += ["--udp", f"127.0.0.1:{self.port}", "--tcp", f"127.0.0.1:{self.port}"]
        argv += ["--http", f"127.0.0.1:{self._http}"]
        argv += ["--data", str(workdir / "logd-data"), *extra_args]
        with self._log.open("wb") as log:
            self._proc = subprocess.Popen(argv, stdout=log, stderr=log, cwd=REPO)
        self.pid = self._proc.pid
        wait_for("logd", self._healthy, self._proc, self.failure, timeout=120)

    def _get(self, path: str) -> bytes:
        url = f"http://127.0.0.1:{self._http}{path}"
        with urllib.request.urlopen(url, timeout=30) as answer:
            body: bytes = answer.read()
            return body

    def _healthy(self) -> bool:
        try:
            self._get("/healthz")
        except OSError:
            return False
        return True

    def stored(self) -> int:
        """Sum the per-app counts the API reports: stored and queryable."""
        return sum(self.apps().values())

    def apps(self) -> dict[str, int]:
        """Return the stored line count of each app, from ``/api/v1/apps``."""
        apps = json.loads(self._get("/api/v1/apps"))["apps"]
        return {str(app["app"]): int(app["lines"]) for app in apps}

    def enrich_events(self) -> dict[str, int]:
        """Return ``logd_enrich_events_total`` by event, from ``/metrics``."""
        text = self._get("/metrics").decode()
        return {event: int(float(value)) for event, value in ENRICH_EVENT.findall(text)}

    def alive(self) -> bool:
        return self._proc.poll() is None

    def exit_code(self) -> int | None:
        return self._proc.poll()

    def finish(self) -> int:
        count = self.stored()
        stop(self._proc)
        return count

    def failure(self) -> str:
        return f"exit {self._proc.poll()}: {log_tail(self._log)}"

    def close(self) -> None:
        stop(self._proc)


# logd's enrichment counters in the Prometheus text format.
ENRICH_EVENT = re.compile(
    r'^logd_enrich_events_total\{event="(\w+)"\} (\S+)$', re.MULTILINE
)


class TaggedLogd(Logd):
    """logd while loggen's lines name a running container with labels.

    The container starts before logd, so logd's first listing caches it;
    it is removed when logd is closed, so other receivers never see it.
    """

    name = "logd-tagged"

    def __init__(self, workdir: Path, extra_args: Sequence[str] = ()) -> None:
        self._container = BenchContainer()
        try:
            super().__init__(workdir, extra_args)
        except BaseException:
            self._container.remove()
            raise

    def close(self) -> None:
        try:
            super().close()
        finally:
            self._container.remove()


# ---------------------------------------------------------------- docker


class BenchContainer:
    """A busybox container named `TAGGED_NAME` with `TAGGED_LABELS`, sleeping.

    Built and run on the local dockerd with the tests' scratch busybox image
    (tests/docker_images.py); scripts/start-dockerd starts the engine if
    needed. A leftover of an earlier run (it carries `BENCH_LABEL`) is
    replaced; any other container of that name stops the run.
    """

    def __init__(self) -> None:
        # Imported here: only this receiver needs pytest and tests/.
        if str(REPO) not in sys.path:
            sys.path.insert(0, str(REPO))
        import pytest

        from tests import docker_images

        try:
            self._client = docker_images.docker_client()
        except pytest.fail.Exception as error:
            raise BenchmarkError(str(error)) from None
        self._removed = True
        try:
            image = docker_images.ensure_image(self._client)
            self._drop_leftover()
            self._container = self._client.containers.create(
                image,
                ["sleep", "3600"],
                name=TAGGED_NAME,
                labels=TAGGED_LABELS,
                network_mode="none",
            )
            self._removed = False
            self._container.start()
        except (docker.errors.DockerException, pytest.fail.Exception) as error:
            self.remove()
            raise BenchmarkError(f"container {TAGGED_NAME}: {error}") from None

    def _drop_leftover(self) -> None:
        try:
            old = self._client.containers.get(TAGGED_NAME)
        except docker.errors.NotFound:
            return
        if old.labels.get(BENCH_LABEL) is None:
            raise BenchmarkError(
                f"a container named {TAGGED_NAME} without label {BENCH_LABEL} "
                "exists; it is not this script's: remove or rename it"
            )
        old.remove(force=True)

    def remove(self) -> None:
        """Remove the container whatever its state; safe to call again."""
        try:
            if not self._removed:
                with suppress(docker.errors.NotFound):
                    self._container.remove(force=True)
                self._removed = True
        finally:
            self._client.close()


# ---------------------------------------------------------------- measuring


@dataclass
class Result:
    """One receiver, one protocol, one sender: what was offered and kept."""

    receiver: str
    sender: str
    proto: str
    run: int = 1
    sent: int = 0
    stored: int = 0
    offered_seconds: float = 0.0
    lines_per_s: float = 0.0
    loss: int = 0
    loss_pct: float = 0.0
    drain_seconds: float = 0.0
    peak_rss_bytes: int = 0
    # CPU seconds from the start of sending until settled, by thread name,
    # and the whole process's CPU per stored line.
    cpu_seconds: dict[str, float] = field(default_factory=dict)
    cpu_us_per_line: float = 0.0
    error: str = ""
    # The receiver's exit and last log lines, kept when a run failed or lost
    # lines on TCP, since the scratch folder holding the log is removed.
    log_tail: str = ""
    profile: str = ""
    # logd only, read just before SIGTERM: stored lines by app, and
    # logd_enrich_events_total by event.
    apps: dict[str, int] = field(default_factory=dict)
    enrich_events: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Case:
    """A measurement to make: which receiver, fed by which sender."""

    receiver: str
    start: Callable[[Path], Receiver]
    sender: Sender
    # Seconds the stored count must stay unchanged to count as settled.
    settle: float
    profile: bool = False


def settle(receiver: Receiver, quiet: float, timeout: float = 600.0) -> float:
    """Wait until ``receiver.stored()`` stops growing; return the seconds taken."""
    start = time.monotonic()
    last, since = receiver.stored(), start
    while time.monotonic() - since < quiet:
        if not receiver.alive():
            raise BenchmarkError(f"{receiver.name} died: {receiver.failure()}")
        if time.monotonic() - start > timeout:
            raise BenchmarkError(f"{receiver.name} still storing after {timeout} s")
        time.sleep(0.5)
        now = receiver.stored()
        if now != last:
            last, since = now, time.monotonic()
    return since - start


@contextmanager
def profiled(pid: int, seconds: int, out: Path | None) -> Iterator[None]:
    """Record a py-spy flame graph of ``pid`` while the block runs, if asked."""
    if out is None:
        yield
        return
    pyspy = shutil.which("py-spy")
    if pyspy is None:
        raise BenchmarkError("--profile needs py-spy: pip install py-spy")
    argv = [pyspy, "record", "--pid", str(pid), "--duration", str(seconds)]
    argv += ["--output", str(out), "--nonblocking", "--subprocesses"]
    formats = {suffix: name for name, suffix in PROFILE_SUFFIXES.items()}
    argv += ["--format", formats[out.suffix]]
    recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        _, err = recorder.communicate(timeout=seconds + 60)
        if recorder.returncode != 0:
            print(f"py-spy failed: {err.decode(errors='replace')}", file=sys.stderr)


def measure(
    case: Case,
    proto: str,
    seconds: int,
    profile_dir: Path | None,
    profile_suffix: str = ".svg",
) -> Result:
    """Run one case on one protocol with a fresh receiver in a scratch folder."""
    result = Result(case.receiver, case.sender.name, proto)
    out = None
    if profile_dir is not None and case.profile:
        out = profile_dir / f"{case.receiver}-{proto}{profile_suffix}"
        result.profile = str(out)
    with tempfile.TemporaryDirectory(prefix=f"bench-{case.receiver}-") as tmp:
        try:
            receiver = case.start(Path(tmp))
        except BenchmarkError as error:
            result.error = str(error)
            return result
        sampler = RssSampler(receiver.pid)
        try:
            with sampler:
                offer(case, receiver, sampler, seconds, out, result)
        except (BenchmarkError, OSError, subprocess.TimeoutExpired) as error:
            result.error = f"{type(error).__name__}: {error}"
        finally:
            receiver.close()
        if result.error or (result.proto == "tcp" and result.sent > result.stored):
            result.log_tail = receiver.failure()
        result.peak_rss_bytes = sampler.peak_bytes
    if result.offered_seconds:
        # Until the last line was stored: buffering a backlog gains nothing.
        elapsed = result.offered_seconds + result.drain_seconds
        result.lines_per_s = result.stored / elapsed
    result.loss = result.sent - result.stored
    if result.sent:
        result.loss_pct = 100.0 * result.loss / result.sent
    return result


def offer(
    case: Case,
    receiver: Receiver,
    sampler: RssSampler,
    seconds: int,
    profile: Path | None,
    result: Result,
) -> None:
    """Send, wait for the receiver to settle, count; fill ``result`` in."""
    cpu_before = thread_cpu(receiver.pid)
    with profiled(receiver.pid, seconds, profile):
        offered = case.sender.send(result.proto, receiver.port, seconds)
    result.sent, result.offered_seconds = offered.sent, offered.seconds
    result.drain_seconds = settle(receiver, case.settle)
    # CPU and the high-water marks are only readable while the process lives.
    result.cpu_seconds = cpu_spent(cpu_before, thread_cpu(receiver.pid))
    sampler.finish()
    if isinstance(receiver, Logd):
        result.apps, result.enrich_events = receiver.apps(), receiver.enrich_events()
    result.stored = receiver.finish()
    if result.stored:
        total = result.cpu_seconds.get("total", 0.0)
        result.cpu_us_per_line = round(1e6 * total / result.stored, 2)
    if receiver.exit_code() != 0:
        raise BenchmarkError(f"{receiver.name} on SIGTERM: {receiver.failure()}")


# ---------------------------------------------------------------- reporting


def machine() -> dict[str, object]:
    """Describe the machine: cores, CPU model, memory, kernel, load."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.MULTILINE)
    meminfo = Path("/proc/meminfo").read_text()
    mem = re.search(r"^MemTotal:\s*(\d+) kB", meminfo, re.MULTILINE)
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": model[1] if model else "unknown",
        "memory_bytes": int(mem[1]) * 1024 if mem else 0,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "loadavg_at_start": os.getloadavg(),
    }


def versions(loggen: str) -> dict[str, str]:
    """Return the versions of the parts measured, as far as they say."""
    rsyslog = subprocess.run(["rsyslogd", "-v"], capture_output=True, text=True)
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
    )
    return {
        "rsyslog": rsyslog.stdout.split("\n", 1)[0],
        "loggen": loggen,
        "logd_commit": commit.stdout.strip() or "unknown",
    }


@dataclass(frozen=True)
class Summary:
    """The medians over the repeats of one receiver on one protocol."""

    lines_per_s: float
    stored: float
    loss: float
    loss_pct: float
    runs: int


def summarize(results: list[Result]) -> dict[tuple[str, str], Summary]:
    """Return medians per (receiver, protocol) over the runs that did not fail."""
    groups: dict[tuple[str, str], list[Result]] = {}
    for r in results:
        if not r.error:
            groups.setdefault((r.receiver, r.proto), []).append(r)
    return {
        key: Summary(
            lines_per_s=median(r.lines_per_s for r in runs),
            stored=median(r.stored for r in runs),
            loss=median(r.loss for r in runs),
            loss_pct=median(r.loss_pct for r in runs),
            runs=len(runs),
        )
        for key, runs in groups.items()
    }


def ratio(
    summary: dict[tuple[str, str], Summary],
    proto: str,
    over: tuple[str, str] = ("logd", "rsyslog"),
) -> float | None:
    """Return one receiver's median rate over another's, None if missing.

    ``over`` names the two: logd over rsyslog unless told otherwise.
    """
    top, bottom = summary.get((over[0], proto)), summary.get((over[1], proto))
    if top is None or bottom is None or not bottom.lines_per_s:
        return None
    return top.lines_per_s / bottom.lines_per_s


TAGGED_OVER_UNTAGGED = ("logd-tagged", "logd")


def checks(
    summary: dict[tuple[str, str], Summary], results: list[Result]
) -> dict[str, bool | None]:
    """Judge the issue's bounds on the medians; None where a run is missing."""
    tcp_ratio = ratio(summary, "tcp")
    tagged_ratio = ratio(summary, "tcp", TAGGED_OVER_UNTAGGED)
    logd_tcp = summary.get(("logd", "tcp"))
    peaks = [r.peak_rss_bytes for r in results if r.receiver in LOGD_RECEIVERS]
    logd_udp, rsyslog_udp = (
        summary.get(("logd", "udp")),
        summary.get(("rsyslog", "udp")),
    )
    udp_ok = None
    if logd_udp and rsyslog_udp:
        udp_ok = (
            logd_udp.stored >= rsyslog_udp.stored
            and logd_udp.loss_pct <= rsyslog_udp.loss_pct
        )
    return {
        "tcp_ratio_at_least_0.5": (
            None if tcp_ratio is None else tcp_ratio >= MIN_TCP_RATIO
        ),
        "tcp_ratio_at_least_1.0": None if tcp_ratio is None else tcp_ratio >= 1.0,
        "tcp_no_loss": None if logd_tcp is None else logd_tcp.loss <= 0,
        "peak_rss_under_1.2GB": max(peaks) < MAX_PEAK_RSS if peaks else None,
        "udp_as_many_and_no_more_loss": udp_ok,
        "tagged_tcp_ratio_at_least_0.9": (
            None if tagged_ratio is None else tagged_ratio >= MIN_TAGGED_RATIO
        ),
        "tagged_lines_all_enriched": enrichment_seen(results, "logd-tagged"),
        "untagged_lines_not_enriched": enrichment_seen(results, "logd"),
    }


def enrichment_seen(results: list[Result], receiver: str) -> bool | None:
    """Tell whether logd enriched what it should in every run of ``receiver``.

    logd-tagged: every stored line is under app `TAGGED_APP` and counted as
    enriched. logd: no line is enriched and none is under that app. None
    when no run of ``receiver`` finished.
    """
    runs = [r for r in results if r.receiver == receiver and not r.error]
    if not runs:
        return None
    if receiver == "logd-tagged":
        return all(
            r.apps == {TAGGED_APP: r.stored}
            and r.enrich_events.get("enriched", 0) >= r.stored > 0
            for r in runs
        )
    return all(
        TAGGED_APP not in r.apps and r.enrich_events.get("enriched", 0) == 0
        for r in runs
    )


def print_table(results: list[Result]) -> None:
    """Print one row per measurement, then the ratios."""
    head = f"{'receiver':<13}{'proto':<6}{'run':>4}{'sent':>11}{'stored':>11}"
    head += f"{'lines/s':>11}{'loss %':>8}{'drain s':>9}{'peak RSS MB':>13}"
    head += f"{'CPU us/line':>13}"
    print(head)
    for r in results:
        row = f"{r.receiver:<13}{r.proto:<6}{r.run:>4}{r.sent:>11}{r.stored:>11}"
        row += f"{r.lines_per_s:>11.0f}{r.loss_pct:>8.2f}{r.drain_seconds:>9.1f}"
        row += f"{r.peak_rss_bytes / 1e6:>13.0f}{r.cpu_us_per_line:>13.1f}"
        print(row + (f"  ERROR: {r.error[:200]}" if r.error else ""))
    summary = summarize(results)
    for proto in ("tcp", "udp"):
        value = ratio(summary, proto)
        if value is not None:
            print(f"logd/rsyslog {proto} (median rates): {value:.2f}")
        value = ratio(summary, proto, TAGGED_OVER_UNTAGGED)
        if value is not None:
            print(f"logd-tagged/logd {proto} (median rates): {value:.2f}")
    for r in results:
        if r.receiver in LOGD_RECEIVERS and not r.error:
            enriched = r.enrich_events.get("enriched", 0)
            print(f"{r.receiver} {r.proto} run {r.run}: apps {r.apps}, ", end="")
            print(f"enriched {enriched}")


# ---------------------------------------------------------------- main


def cases(args: argparse.Namespace, loggen: Loggen) -> list[Case]:
    """Return the measurements this run makes, in order."""

    def start_logd(workdir: Path) -> Receiver:
        return Logd(workdir, args.logd_arg)

    def start_tagged(workdir: Path) -> Receiver:
        return TaggedLogd(workdir, args.logd_arg)

    every = [
        Case("rsyslog", Rsyslog, loggen, settle=2.0),
        Case("logd", start_logd, loggen, settle=5.0, profile=True),
        Case("logd-tagged", start_tagged, loggen, settle=5.0, profile=True),
    ]
    return [case for case in every if case.receiver in args.receivers]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--seconds", type=int, default=20, help="offer time per run")
    parser.add_argument("--rate", type=int, default=10_000_000, help="loggen --rate")
    parser.add_argument("--size", type=int, default=200, help="line size in bytes")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs of each case; medians compared"
    )
    parser.add_argument(
        "--protos", nargs="+", default=["tcp", "udp"], choices=["tcp", "udp"]
    )
    parser.add_argument(
        "--receivers",
        nargs="+",
        default=["rsyslog", "logd"],
        metavar="NAME",
        help=f"receivers to measure, spaces or commas between: {', '.join(RECEIVERS)}",
    )
    parser.add_argument(
        "--udp-framing",
        action="store_true",
        help="let loggen octet-count UDP datagrams (default: bare messages)",
    )
    parser.add_argument(
        "--logd-arg",
        action="append",
        default=[],
        help="extra argument for logd serve "
        "(repeatable, e.g. --logd-arg=--fsync-interval=0)",
    )
    parser.add_argument(
        "--profile", type=Path, metavar="DIR", help="py-spy flame graphs of logd here"
    )
    parser.add_argument(
        "--profile-format",
        choices=sorted(PROFILE_SUFFIXES),
        default="flamegraph",
        help="py-spy output: flamegraph (svg), raw (collapsed stacks), speedscope",
    )
    parser.add_argument(
        "--output",
        type=Path,
        help=f"default {DEFAULT_OUTPUT.name}, {TAGGED_OUTPUT.name} with logd-tagged",
    )
    args = parser.parse_args(argv)
    args.receivers = [n for item in args.receivers for n in item.split(",") if n]
    unknown = sorted(set(args.receivers) - set(RECEIVERS))
    if unknown or not args.receivers:
        parser.error(f"--receivers: got {unknown or 'none'}, expected {RECEIVERS}")
    if args.output is None:
        tagged = "logd-tagged" in args.receivers
        args.output = TAGGED_OUTPUT if tagged else DEFAULT_OUTPUT
    return args


def run_all(args: argparse.Namespace, loggen: Loggen) -> list[Result]:
    """Run every case on every protocol, ``--repeat`` times."""
    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    suffix = PROFILE_SUFFIXES[args.profile_format]
    # Receivers alternate within each repeat so drift in the machine's load
    # touches both alike.
    results = []
    for run in range(1, args.repeat + 1):
        for proto in args.protos:
            for case in cases(args, loggen):
                print(f"-- {case.receiver} {proto} run {run}", flush=True)
                result = measure(case, proto, args.seconds, args.profile, suffix)
                result.run = run
                results.append(result)
    return results


def report(
    args: argparse.Namespace,
    loggen: Loggen,
    started: tuple[datetime, dict[str, object]],
    results: list[Result],
) -> dict[str, object]:
    """Gather the machine, the settings, every run and the verdicts."""
    date, host = started
    host["loadavg_at_end"] = os.getloadavg()
    summary = summarize(results)
    logd_peaks = [r.peak_rss_bytes for r in results if r.receiver in LOGD_RECEIVERS]
    return {
        "date": date.isoformat(timespec="seconds"),
        "machine": host,
        "versions": versions(loggen.binary),
        "config": {
            "seconds": args.seconds,
            "repeat": args.repeat,
            "size": args.size,
            "rate": args.rate,
            "udp_framing": args.udp_framing,
            "logd_args": args.logd_arg,
            "tcp_command": loggen.command("tcp", args.seconds),
            "udp_command": loggen.command("udp", args.seconds),
            "receivers": args.receivers,
            "tagged_container": {"name": TAGGED_NAME, "labels": TAGGED_LABELS},
        },
        "results": [asdict(r) for r in results],
        "medians": {f"{k[0]}/{k[1]}": asdict(v) for k, v in summary.items()},
        "ratios": {proto: ratio(summary, proto) for proto in ("tcp", "udp")},
        "tagged_over_untagged": {
            proto: ratio(summary, proto, TAGGED_OVER_UNTAGGED)
            for proto in ("tcp", "udp")
        },
        "logd_peak_rss_bytes": max(logd_peaks, default=None),
        "checks": checks(summary, results),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Measure, print the table, write the JSON; exit 1 if a run failed."""
    args = parse_args(argv)
    try:
        binary = find_loggen()
    except BenchmarkError as error:
        print(f"ingest: {error}", file=sys.stderr)
        return 2
    loggen = Loggen(binary, args.size, args.rate, args.udp_framing)
    started = datetime.now(UTC), machine()

    results = run_all(args, loggen)

    print_table(results)
    document = report(args, loggen, started, results)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {args.output}")
    return 1 if any(r.error for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
