"""Docker for the tests: the engine, a test image, and a private second engine.

No registry can be reached from these machines, so the image is built
`FROM scratch` with Debian's static busybox (package busybox-static) as its
only file. Containers run with `--network host`: the engines run without a
bridge, and the tests only use loopback.

A test that needs Docker fails, never skips, when Docker is missing:
`docker_client` starts the machine's dockerd with scripts/start-dockerd and
fails with its output when that does not work.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import socket
import struct
import subprocess
import tarfile
import tempfile
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import docker
import pytest

ROOT = Path(__file__).resolve().parent.parent
START_DOCKERD = ROOT / "scripts" / "start-dockerd"
BUSYBOX = Path("/bin/busybox")
IMAGE = "logd-test/busybox:1"
# Every container a test makes carries this label, so leftovers can be found.
TEST_LABEL = "logd.test"

_DOCKERFILE = b'FROM scratch\nCOPY busybox /bin/busybox\nENTRYPOINT ["/bin/busybox"]\n'
_PT_INTERP = 3


def docker_client() -> docker.DockerClient:
    """Return a client of the machine's dockerd, starting it if needed."""
    done = subprocess.run(
        [str(START_DOCKERD)], capture_output=True, text=True, timeout=90, check=False
    )
    if done.returncode != 0:
        pytest.fail(f"Docker is needed and did not start:\n{done.stdout}{done.stderr}")
    return docker.DockerClient(base_url="unix:///var/run/docker.sock", timeout=60)


def ensure_image(client: docker.DockerClient, tag: str = IMAGE) -> str:
    """Build the busybox test image on this engine unless it is there."""
    try:
        client.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    client.images.build(fileobj=_context(), custom_context=True, tag=tag, rm=True)
    return tag


def _context() -> io.BytesIO:
    if not BUSYBOX.is_file():
        pytest.fail(f"{BUSYBOX} is missing: apt-get install busybox-static")
    data = BUSYBOX.read_bytes()
    if not _is_static(data):
        pytest.fail(f"{BUSYBOX} is linked dynamically; install busybox-static")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        _add(tar, "Dockerfile", _DOCKERFILE, 0o644)
        _add(tar, "busybox", data, 0o755)
    buf.seek(0)
    return buf


def _add(tar: tarfile.TarFile, name: str, data: bytes, mode: int) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = mode
    tar.addfile(info, io.BytesIO(data))


def _is_static(elf: bytes) -> bool:
    # A 64-bit ELF file without a PT_INTERP program header needs no loader,
    # which an image FROM scratch does not have.
    if elf[:5] != b"\x7fELF\x02":
        return False
    (phoff,) = struct.unpack_from("<Q", elf, 0x20)
    phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
    types = (
        struct.unpack_from("<I", elf, phoff + i * phentsize)[0] for i in range(phnum)
    )
    return _PT_INTERP not in types


def unique(prefix: str) -> str:
    """Return a container name no other test run uses."""
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def syslog_options(address: str, tag: str, fmt: str = "rfc5424", **more: str) -> Any:
    """Return the LogConfig that sends a container's output to `address`."""
    config = {"syslog-address": address, "syslog-format": fmt, "tag": tag, **more}
    return docker.types.LogConfig(type="syslog", config=config)


def create(
    client: docker.DockerClient,
    script: str,
    *,
    address: str,
    tag: str = "{{.ID}}",
    fmt: str = "rfc5424",
    labels: Mapping[str, str] | None = None,
    name: str | None = None,
    auto_remove: bool = False,
    log_opts: Mapping[str, str] | None = None,
) -> Any:
    """Create (not start) a busybox container that runs `script` under sh."""
    return client.containers.create(
        IMAGE,
        ["sh", "-c", script],
        name=name or unique("logd-test"),
        labels={TEST_LABEL: "1", **(labels or {})},
        network_mode="host",
        log_config=syslog_options(address, tag, fmt, **(log_opts or {})),
        auto_remove=auto_remove,
    )


def remove_quietly(container: Any) -> None:
    """Remove a test container whatever state it is in."""
    with contextlib.suppress(docker.errors.NotFound):
        container.remove(force=True)


def free_port() -> int:
    """Return a loopback port that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(check: Any, timeout: float = 30.0, what: str = "condition") -> Any:
    """Poll `check` until it returns something true; fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


class PrivateDockerd:
    """A dockerd of the test's own: own socket, data, and host name.

    Tests that stop Docker or need a second engine use one, so the machine's
    dockerd, which others use at the same time, is never disturbed. It runs
    in its own UTS namespace, so `docker info` and its syslog lines name
    `hostname`.
    """

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        # Short: containerd's sockets live under exec-root and paths are limited.
        self.root = Path(tempfile.mkdtemp(prefix="ld", dir="/tmp"))
        self.url = f"unix://{self.root}/docker.sock"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start the engine and wait until it answers."""
        if shutil.which("dockerd") is None:
            pytest.fail("dockerd is missing: apt-get install docker.io")
        root = self.root
        command = (
            f"hostname {self.hostname} && exec dockerd --bridge=none"
            f" --iptables=false --ip6tables=false --host {self.url}"
            f" --data-root {root}/data --exec-root {root}/x"
            f" --pidfile {root}/docker.pid"
        )
        log = (root / "dockerd.log").open("ab")
        self._proc = subprocess.Popen(
            ["unshare", "--uts", "sh", "-c", command], stdout=log, stderr=log
        )
        wait_until(self._answers, 60, f"private dockerd on {self.url}")

    def stop(self) -> None:
        """Stop the engine and wait until it has exited."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)

    def client(self) -> docker.DockerClient:
        """Return a client of this engine."""
        return docker.DockerClient(base_url=self.url, timeout=60)

    def cleanup(self) -> None:
        """Stop the engine and remove everything it left on disk."""
        self.stop()
        for mount in reversed(_mounts_under(self.root)):
            subprocess.run(["umount", "-l", mount], check=False)
        shutil.rmtree(self.root, ignore_errors=True)

    def _answers(self) -> bool:
        if self._proc is not None and self._proc.poll() is not None:
            log = (self.root / "dockerd.log").read_text(errors="replace")
            pytest.fail(f"private dockerd exited:\n{log[-2000:]}")
        try:
            with docker.APIClient(base_url=self.url, timeout=5) as api:
                return bool(api.ping())
        except (docker.errors.DockerException, OSError):
            return False


def _mounts_under(root: Path) -> list[str]:
    prefix = f"{root}{os.sep}"
    with open("/proc/self/mounts") as mounts:
        points = [line.split()[1] for line in mounts]
    return [p for p in points if p.startswith(prefix)]


@pytest.fixture(scope="module")
def client() -> Iterator[docker.DockerClient]:
    """The machine's dockerd, started if needed, with the test image built."""
    found = docker_client()
    ensure_image(found)
    yield found
    found.close()


@pytest.fixture
def containers() -> Iterator[list[Any]]:
    """Containers the test made; removed after it whatever happened."""
    made: list[Any] = []
    yield made
    for container in made:
        remove_quietly(container)
