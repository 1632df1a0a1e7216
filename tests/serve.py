"""Run a real `logd serve` in a subprocess for end-to-end tests.

`LogdServer` picks free loopback ports, starts `python -m logd serve` on its own
data folder, waits for `/healthz`, and talks to the HTTP API with urllib. On
stop it sends SIGTERM and checks that the server exits 0, which the contract
promises once every batch is flushed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

REPO = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"
START_TIMEOUT = 60.0
STOP_TIMEOUT = 30.0
# The API caps `limit` here; asking for more than a test expects shows extras.
MAX_LIMIT = 100_000
# How much of the server's stderr a failure quotes.
STDERR_TAIL = 4000
# One sample of the Prometheus text format: name{labels} value
_SAMPLE = re.compile(r"^(\w+(?:\{[^}]*\})?) (\S+)$", re.M)


@dataclass(frozen=True)
class TlsFiles:
    """PEM files for a TLS listener and the CA that clients should trust."""

    cert: Path
    key: Path
    ca: Path


@dataclass(frozen=True)
class Ports:
    """The loopback ports one server listens on."""

    udp: int
    tcp: int
    tls: int
    http: int


def free_ports() -> Ports:
    """Pick four distinct ports free for both TCP and UDP on loopback.

    The sockets stay bound until all four are chosen so none repeats; the
    server binds them a moment later, so a start can still lose a race with
    another process, which `LogdServer.start` retries.
    """
    held: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < 4:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind((HOST, 0))
            port = tcp.getsockname()[1]
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            held.append(udp)
            with contextlib.suppress(OSError):
                udp.bind((HOST, port))
                ports.append(port)
    finally:
        for sock in held:
            sock.close()
    return Ports(udp=ports[0], tcp=ports[1], tls=ports[2], http=ports[3])


class ServerError(AssertionError):
    """The server did not start, answer or stop as the contract says."""


class LogdServer:
    """A `logd serve` subprocess on free loopback ports, with an API client.

    Use it as a context manager, or call `start` and `stop`. Its stderr goes
    to `<data>/stderr.log` and is quoted in every failure.
    """

    def __init__(
        self,
        data: Path,
        *,
        tls: TlsFiles | None = None,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.data = data
        self.tls = tls
        self.extra_args = extra_args
        self.ports = Ports(0, 0, 0, 0)
        self.process: subprocess.Popen[bytes] | None = None
        self.stderr_path = data / "stderr.log"

    def __enter__(self) -> LogdServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        """The HTTP API's root, e.g. http://127.0.0.1:40123."""
        return f"http://{HOST}:{self.ports.http}"

    def stderr(self, tail: int | None = None) -> str:
        """Return what the server wrote to stderr, or its last `tail` characters."""
        try:
            text = self.stderr_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""
        if tail is None or len(text) <= tail:
            return text
        return "..." + text[-tail:]

    def start(self, attempts: int = 3) -> None:
        """Start the server and wait until `/healthz` answers 200.

        A server that exits early (most likely a port taken between picking
        and binding) is retried on new ports; one that neither exits nor
        becomes healthy within 60 s fails with its stderr.
        """
        for _ in range(attempts):
            self._spawn()
            if self._wait_healthy():
                return
        raise ServerError(
            f"logd serve exited with {self._returncode()} before /healthz "
            f"answered, {attempts} times; last stderr:\n{self.stderr(STDERR_TAIL)}"
        )

    def _spawn(self) -> None:
        self.data.mkdir(parents=True, exist_ok=True)
        self.ports = free_ports()
        env = {k: v for k, v in os.environ.items() if not k.startswith("LOGD_")}
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO), env.get("PYTHONPATH", "")) if p
        )
        with self.stderr_path.open("ab") as stderr:
            self.process = subprocess.Popen(
                self.command(),
                cwd=self.data,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=stderr,
                stderr=stderr,
            )

    def command(self) -> list[str]:
        """Return the argv that starts this server."""
        argv = [
            sys.executable,
            "-m",
            "logd",
            "serve",
            "--udp",
            f"{HOST}:{self.ports.udp}",
            "--tcp",
            f"{HOST}:{self.ports.tcp}",
            "--http",
            f"{HOST}:{self.ports.http}",
            "--data",
            str(self.data),
        ]
        if self.tls is not None:
            argv += [
                "--tls",
                f"{HOST}:{self.ports.tls}",
                "--tls-cert",
                str(self.tls.cert),
                "--tls-key",
                str(self.tls.key),
            ]
        return argv + list(self.extra_args)

    def _returncode(self) -> int | None:
        return None if self.process is None else self.process.poll()

    def _wait_healthy(self) -> bool:
        """Poll /healthz; False when the process exited, raise on timeout."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._returncode() is not None:
                return False
            if self._healthz() == 200:
                return True
            time.sleep(0.2)
        self._kill()
        raise ServerError(
            f"/healthz did not answer 200 within {START_TIMEOUT:.0f} s; "
            f"stderr:\n{self.stderr(STDERR_TAIL)}"
        )

    def _healthz(self) -> int | None:
        try:
            with urllib.request.urlopen(f"{self.base_url}/healthz", timeout=2) as r:
                return int(r.status)
        except urllib.error.HTTPError as error:
            return int(error.code)
        except (OSError, urllib.error.URLError):
            return None

    def _kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        """Send SIGTERM and require a clean exit (0) within 30 s."""
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
                raise ServerError(
                    f"logd serve did not exit within {STOP_TIMEOUT:.0f} s of "
                    f"SIGTERM; stderr:\n{self.stderr(STDERR_TAIL)}"
                ) from None
        if process.returncode != 0:
            raise ServerError(
                f"logd serve exited with {process.returncode} on SIGTERM, "
                f"expected 0; stderr:\n{self.stderr(STDERR_TAIL)}"
            )

    def get(self, path: str, **params: str | int) -> Any:
        """GET a JSON document from the API; fail with the body on non-200."""
        query = urllib.parse.urlencode(params)
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        try:
            with urllib.request.urlopen(url, timeout=30) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            body = error.read().decode(errors="replace")
            raise ServerError(f"GET {url} answered {error.code}: {body}") from None

    def metrics(self) -> dict[str, float]:
        """Scrape /metrics: each sample, named with its labels, to its value."""
        with urllib.request.urlopen(f"{self.base_url}/metrics", timeout=30) as r:
            text = r.read().decode()
        return {m[1]: float(m[2]) for m in _SAMPLE.finditer(text)}

    def metric_sum(self, name: str) -> float:
        """Add up every sample of one metric, whatever its labels."""
        return sum(
            value
            for key, value in self.metrics().items()
            if key == name or key.startswith(name + "{")
        )

    def logs(self, app: str, **params: str | int) -> list[dict[str, Any]]:
        """Return the stored lines of one app, newest first."""
        lines: list[dict[str, Any]] = self.get("/api/v1/logs", app=app, **params)[
            "lines"
        ]
        return lines

    def apps(self) -> list[dict[str, Any]]:
        """Return the `/api/v1/apps` entries: app, lines, last."""
        apps: list[dict[str, Any]] = self.get("/api/v1/apps")["apps"]
        return apps

    def wait_for(
        self, app: str, count: int, timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Poll until at least `count` lines of `app` are stored; return them.

        The query asks for more than `count` so that extra (duplicated) lines
        show in the result for the caller to assert on.
        """
        limit = min(count + 10, MAX_LIMIT)
        deadline = time.monotonic() + timeout
        lines: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            lines = self.logs(app, limit=limit)
            if len(lines) >= count:
                return lines
            if self._returncode() is not None:
                break
            time.sleep(0.25)
        raise ServerError(
            f"app {app!r}: {len(lines)} of {count} lines stored after "
            f"{timeout:.0f} s (server exit code {self._returncode()}); "
            f"stderr:\n{self.stderr(STDERR_TAIL)}"
        )
