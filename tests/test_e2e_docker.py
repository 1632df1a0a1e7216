"""End to end: Docker's syslog driver into a real `logd serve`, read back by app.

Containers of the busybox test image log through Docker's syslog driver to
logd over UDP, TCP and TLS, in Docker's rfc5424, rfc5424micro and rfc3164
formats, under the `{{.ID}}`, `{{.Name}}` and a custom tag template. Every
line a container printed (stdout as info, stderr as err) must come back from
the API under the app and service its labels give, with all its labels.

The shared servers of tests/conftest.py read labels from the machine's
dockerd (logd's default engine); the restart test runs a private dockerd and
a logd of its own pointed at it, so the shared engine is never stopped.
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import pytest

from tests.docker_images import (
    IMAGE,
    PrivateDockerd,
    create,
    ensure_image,
    remove_quietly,
    unique,
)
from tests.serve import HOST, LogdServer, TlsFiles

HOSTNAME = socket.gethostname()
INFO, ERR = 6, 3
DAEMON = 3
CUSTOM_TAG = "{{.Name}}/{{.ID}}"
Row = dict[str, Any]

pytestmark = pytest.mark.docker


@dataclass
class Spec:
    """A container to run and what logd must store for it."""

    app: str
    out: int = 4
    err: int = 2
    tag: str = "{{.ID}}"
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def script(self) -> str:
        # busybox sh: count with a while loop, no seq in the image.
        def loop(stream: str, count: int, redirect: str) -> str:
            return (
                f"i=0; while [ $i -lt {count} ]; do"
                f" echo {self.app} {stream} $i{redirect}; i=$((i+1)); done;"
            )

        return loop("out", self.out, "") + loop("err", self.err, " >&2")

    def expected(self) -> dict[str, int]:
        """Every message the container prints, with its severity."""
        out = {f"{self.app} out {i}": INFO for i in range(self.out)}
        err = {f"{self.app} err {i}": ERR for i in range(self.err)}
        return {**out, **err}


def app_name(prefix: str) -> str:
    """An app name no other test uses."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tag_of(template: str, container: Any) -> str:
    """What Docker makes of a tag template for this container."""
    return (
        template.replace("{{.ID}}", container.id[:12])
        .replace("{{.FullID}}", container.id)
        .replace("{{.Name}}", container.name)
    )


def start(
    client: docker.DockerClient,
    spec: Spec,
    address: str,
    fmt: str = "rfc5424",
    **options: Any,
) -> Any:
    """Create and start the container a spec describes."""
    container = create(
        client,
        spec.script,
        address=address,
        tag=spec.tag,
        fmt=fmt,
        labels=spec.labels,
        name=unique("dk"),
        **options,
    )
    try:
        container.start()
    except docker.errors.APIError:
        remove_quietly(container)
        raise
    return container


def assert_stored(server: LogdServer, spec: Spec, container: Any) -> list[Row]:
    """Read a container's lines back and check every field enrichment sets."""
    expected = spec.expected()
    lines = server.wait_for(spec.app, len(expected))
    assert sorted(row["message"] for row in lines) == sorted(expected)
    labels = {
        **spec.labels,
        "logd.test": "1",
        "container_id": container.id,
        "container_name": container.name,
        "image": IMAGE,
    }
    for key in ("node", "zone"):
        if f"logd.{key}" in spec.labels:
            labels[key] = spec.labels[f"logd.{key}"]
    service = spec.labels.get("logd.service") or spec.labels.get(
        "com.docker.compose.service", container.name
    )
    for row in lines:
        assert row["parse_error"] == "", row
        assert row["severity"] == expected[row["message"]], row
        assert row["facility"] == DAEMON
        assert row["app"] == spec.app
        assert row["service"] == service
        assert row["container"] == container.name
        assert row["app_name"] == tag_of(spec.tag, container)
        assert row["host"] == HOSTNAME
        assert row["labels"] == labels
    return lines


def logd_labels(app: str, **more: str) -> dict[str, str]:
    return {
        "logd.app": app,
        "logd.service": f"{app}-svc",
        "logd.node": "node-7",
        "logd.zone": "zone-b",
        **more,
    }


@pytest.mark.parametrize("fmt", ["rfc5424", "rfc5424micro", "rfc3164"])
@pytest.mark.parametrize("transport", ["udp", "tcp", "tcp+tls"])
def test_every_line_comes_back_under_its_labels(
    client: docker.DockerClient,
    containers: list[Any],
    logd_server: LogdServer,
    logd_tls_server: LogdServer,
    tls_files: TlsFiles,
    transport: str,
    fmt: str,
) -> None:
    options: dict[str, Any] = {}
    if transport == "tcp+tls":
        server = logd_tls_server
        address = f"tcp+tls://{HOST}:{server.ports.tls}"
        options["log_opts"] = {"syslog-tls-ca-cert": str(tls_files.ca)}
    else:
        server = logd_server
        port = server.ports.udp if transport == "udp" else server.ports.tcp
        address = f"{transport}://{HOST}:{port}"
    specs = []
    for tag in ("{{.ID}}", "{{.Name}}", CUSTOM_TAG):
        app = app_name("dk")
        specs.append(Spec(app, tag=tag, labels=logd_labels(app, team="core")))
    for spec in specs:
        containers.append(start(client, spec, address, fmt, **options))
    for spec, container in zip(specs, containers, strict=True):
        assert_stored(server, spec, container)


def test_compose_labels_give_app_and_service(
    client: docker.DockerClient, containers: list[Any], logd_server: LogdServer
) -> None:
    app = app_name("compose")
    spec = Spec(
        app,
        labels={
            "com.docker.compose.project": app,
            "com.docker.compose.service": "worker",
            "com.docker.compose.container-number": "1",
        },
    )
    address = f"tcp://{HOST}:{logd_server.ports.tcp}"
    containers.append(start(client, spec, address))
    lines = assert_stored(logd_server, spec, containers[0])
    assert {row["service"] for row in lines} == {"worker"}


def test_containers_that_exit_or_are_removed_at_once_are_still_enriched(
    client: docker.DockerClient, containers: list[Any], logd_server: LogdServer
) -> None:
    address = f"tcp://{HOST}:{logd_server.ports.tcp}"
    exits, removed = app_name("exits"), app_name("removed")
    exiting = Spec(exits, out=1, err=1, labels=logd_labels(exits))
    removing = Spec(removed, out=1, err=1, labels=logd_labels(removed))
    first = start(client, exiting, address)
    second = start(client, removing, address, auto_remove=True)
    containers.extend([first, second])
    first.wait(timeout=30)
    # With auto-remove, the container is gone by the time its lines are read.
    deadline = time.monotonic() + 30
    while _exists(client, second.id):
        assert time.monotonic() < deadline, "the --rm container was not removed"
        time.sleep(0.05)
    assert_stored(logd_server, exiting, first)
    assert_stored(logd_server, removing, second)


def _exists(client: docker.DockerClient, container_id: str) -> bool:
    try:
        client.containers.get(container_id)
    except docker.errors.NotFound:
        return False
    return True


def test_twenty_containers_at_once_keep_exact_counts(
    client: docker.DockerClient, containers: list[Any], logd_server: LogdServer
) -> None:
    address = f"tcp://{HOST}:{logd_server.ports.tcp}"
    specs = []
    for _ in range(20):
        app = app_name("load")
        specs.append(Spec(app, out=150, err=50, labels=logd_labels(app)))
    with ThreadPoolExecutor(8) as pool:
        started = list(pool.map(lambda s: start(client, s, address), specs))
    containers.extend(started)
    for spec, container in zip(specs, started, strict=True):
        lines = assert_stored(logd_server, spec, container)
        assert len(lines) == 200


@pytest.fixture
def private_engine() -> Iterator[PrivateDockerd]:
    """A dockerd of the test's own, which the test may stop and start."""
    engine = PrivateDockerd("logd-e2e-node")
    try:
        engine.start()
        yield engine
    finally:
        engine.cleanup()


def test_enrichment_resumes_after_dockerd_restarts(
    private_engine: PrivateDockerd, tmp_path: Path
) -> None:
    engine_client = private_engine.client()
    ensure_image(engine_client)
    with LogdServer(tmp_path, extra_args=("--docker", private_engine.url)) as server:
        address = f"tcp://{HOST}:{server.ports.tcp}"
        app = app_name("before")
        before = Spec(app, labels={"logd.app": app, "x": "1"})
        first = start(engine_client, before, address)
        _assert_on_engine(server, before, first, "logd-e2e-node")

        private_engine.stop()
        engine_client.close()
        private_engine.start()
        engine_client = private_engine.client()

        # Lines may pass unenriched until logd has reconnected: probe.
        probe = app_name("probe")
        deadline = time.monotonic() + 60
        while not _probe(engine_client, server, address, probe):
            assert time.monotonic() < deadline, "enrichment did not resume"

        app = app_name("after")
        after = Spec(app, labels={"logd.app": app, "y": "2"})
        second = start(engine_client, after, address)
        _assert_on_engine(server, after, second, "logd-e2e-node")
    engine_client.close()


def _assert_on_engine(
    server: LogdServer, spec: Spec, container: Any, host: str
) -> None:
    expected = spec.expected()
    lines = server.wait_for(spec.app, len(expected))
    assert sorted(row["message"] for row in lines) == sorted(expected)
    for row in lines:
        assert row["host"] == host
        assert row["container"] == container.name
        assert row["labels"]["container_id"] == container.id
        assert row["labels"]["logd.app"] == spec.app


def _probe(
    client: docker.DockerClient, server: LogdServer, address: str, app: str
) -> bool:
    """Run one short container labelled `app`; tell whether logd enriched it."""
    spec = Spec(app, out=1, err=0, labels={"logd.app": app})
    container = start(client, spec, address)
    container.wait(timeout=30)
    tag = container.id[:12]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if server.logs(app, limit=1000):
            return True
        # Stored without labels: its app fell back to the tag.
        if server.logs(tag, limit=1):
            return False
        time.sleep(0.2)
    return False
