"""The enrichment stage against a real dockerd and real containers.

Containers log through Docker's syslog driver to a TCP listener of the
test's own that runs logd's framing and parser and pushes the parsed lines
into an `Enricher`; its sink collects them. Tests that stop dockerd or need
a second engine run a private dockerd (see tests/docker_images.py), so the
machine's engine, shared with other work, keeps running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import docker
import pytest

from logd import bulk
from logd.docker_engine import Container, Engine
from logd.enrich import SPLIT_SIZE, Enricher, describe, is_piece, tag_candidates
from logd.framing import Framer
from logd.line import Line
from logd.parser import parse
from tests.docker_images import (
    PrivateDockerd,
    create,
    ensure_image,
    unique,
)

LOCAL = "unix:///var/run/docker.sock"
INFO, ERR = 6, 3
WAIT = 30.0

pytestmark = pytest.mark.docker


@dataclass
class Pipeline:
    """A syslog TCP listener -> framing -> parser -> Enricher -> a list."""

    enricher: Enricher
    port: int
    lines: list[Line] = field(default_factory=list)
    # Parsed lines held back from the enricher while `paused`.
    paused: bool = False
    backlog: list[Line] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"tcp://127.0.0.1:{self.port}"

    def push(self, lines: list[Line]) -> None:
        if self.paused:
            self.backlog.extend(lines)
        else:
            self.enricher.push(lines)

    def resume(self) -> None:
        self.paused = False
        backlog, self.backlog = self.backlog, []
        self.enricher.push(backlog)

    def of(self, text: str) -> list[Line]:
        return [line for line in self.lines if text in line.message]

    async def wait_for(self, check: Callable[[], Any], what: str) -> Any:
        """Wait until `check` returns something true; fail after a while."""
        deadline = time.monotonic() + WAIT
        while not (result := check()):
            if time.monotonic() > deadline:
                pytest.fail(f"timed out waiting for {what}; got {self.lines!r}")
            await asyncio.sleep(0.05)
        return result

    async def lines_of(self, marker: str, count: int) -> list[Line]:
        """Wait for `count` lines whose message holds `marker`, then return them."""
        return list(
            await self.wait_for(
                lambda: len(self.of(marker)) >= count and self.of(marker),
                f"{count} lines with {marker!r}",
            )
        )


@asynccontextmanager
async def pipeline(engines: list[str], **options: Any) -> AsyncIterator[Pipeline]:
    """Run a listener and a started `Enricher` for one test."""
    collected: list[Line] = []
    enricher = Enricher(engines, collected.extend, **options)
    await enricher.start()
    pipe: Pipeline | None = None
    connections: dict[asyncio.StreamWriter, asyncio.Task[Any]] = {}

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        assert pipe is not None
        task = asyncio.current_task()
        assert task is not None
        connections[writer] = task
        host, port = writer.get_extra_info("peername")[:2]
        framer = Framer()
        while data := await reader.read(65536):
            now = time.time_ns() // 1000
            frames = framer.feed(data)
            pipe.push([parse(frame, now, f"{host}:{port}") for frame in frames])
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    pipe = Pipeline(enricher, port, collected)
    try:
        yield pipe
    finally:
        # Close what dockerd still holds open, so each reader ends cleanly.
        server.close()
        for writer in connections:
            writer.transport.abort()
        await asyncio.gather(*connections.values(), return_exceptions=True)
        await enricher.close()


async def run(container: Any) -> None:
    """Start a container and wait until it has exited."""
    await asyncio.to_thread(container.start)
    await asyncio.to_thread(container.wait, timeout=WAIT)


def docker_line(tag: str, message: str, host: str = "vm", severity: int = INFO) -> Line:
    """A parsed line as Docker's syslog driver sends it, made here."""
    now = time.time_ns() // 1000
    tag = tag or "-"
    frame = f"<{24 + severity}>1 - {host} {tag} 1 {tag} - {message}".encode()
    return parse(frame, now, "127.0.0.1:1")


# The stage's pure parts.


def test_labels_give_app_and_service_before_compose_and_the_name() -> None:
    own = {"logd.app": "shop", "logd.service": "cart", "logd.node": "n1"}
    compose = {
        "com.docker.compose.project": "store",
        "com.docker.compose.service": "db",
        "logd.zone": "z2",
    }
    container = Container("a" * 64, "c1", "img:1", {**own, **compose})
    app, service, labels = describe(container)
    assert (app, service) == ("shop", "cart")
    assert labels["node"] == "n1" and labels["zone"] == "z2"
    assert labels["container_id"] == "a" * 64
    assert labels["container_name"] == "c1" and labels["image"] == "img:1"
    assert describe(Container("b" * 64, "c2", "i", compose))[:2] == ("store", "db")
    assert describe(Container("c" * 64, "c3", "i", {}))[:2] == ("c3", "c3")
    assert "node" not in describe(Container("c" * 64, "c3", "i", {}))[2]


def test_tags_yield_ids_and_names_from_common_templates() -> None:
    short, full = "0123456789ab", "f" * 64
    assert tag_candidates(short) == ([short], [])
    assert tag_candidates(full) == ([full], [])
    assert tag_candidates(f"web_1/{short}") == ([short], ["web_1"])
    assert tag_candidates(f"myapp-{short}") == ([short], [f"myapp-{short}"])
    assert tag_candidates("sshd") == ([], ["sshd"])
    # 13 hex digits are neither a short nor a full ID.
    assert tag_candidates("0123456789abc") == ([], ["0123456789abc"])
    assert tag_candidates("two words") == ([], [])


def test_only_lines_of_exactly_the_split_size_are_pieces() -> None:
    assert is_piece(docker_line("t", "x" * SPLIT_SIZE))
    assert not is_piece(docker_line("t", "x" * (SPLIT_SIZE - 1)))
    assert not is_piece(docker_line("t", "x" * (SPLIT_SIZE + 1)))
    # 4096 four-byte characters are 16384 bytes.
    assert is_piece(docker_line("t", "\U0001f600" * (SPLIT_SIZE // 4)))


# Against the machine's dockerd.


async def test_lines_tagged_by_id_get_the_containers_logd_labels(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    async with pipeline([LOCAL]) as pipe:
        labels = {
            "logd.app": "shop",
            "logd.service": "cart",
            "logd.node": "node-1",
            "logd.zone": "zone-a",
            "team": "blue",
        }
        script = "echo by-id out 1; echo by-id err 1 >&2; echo by-id out 2"
        container = create(client, script, address=pipe.address, labels=labels)
        containers.append(container)
        await run(container)
        got = await pipe.lines_of("by-id", 3)
        assert pipe.enricher.engine_states() == {LOCAL: True}
    assert sorted(line.message for line in got) == [
        "by-id err 1",
        "by-id out 1",
        "by-id out 2",
    ]
    for line in got:
        assert line.app_name == container.id[:12]
        assert (line.app, line.service) == ("shop", "cart")
        assert line.container == container.name
        assert line.severity == (ERR if "err" in line.message else INFO)
        assert line.labels == {
            **labels,
            "logd.test": "1",
            "container_id": container.id,
            "container_name": container.name,
            "image": "logd-test/busybox:1",
            "node": "node-1",
            "zone": "zone-a",
        }
    assert pipe.enricher.stats["enriched"] == 3


async def test_lines_tagged_by_name_get_app_and_service_from_compose_labels(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    async with pipeline([LOCAL]) as pipe:
        labels = {
            "com.docker.compose.project": "billing",
            "com.docker.compose.service": "worker",
        }
        container = create(
            client,
            "echo by-name 1; echo by-name 2",
            address=pipe.address,
            tag="{{.Name}}",
            fmt="rfc3164",
            labels=labels,
        )
        containers.append(container)
        await run(container)
        got = await pipe.lines_of("by-name", 2)
    for line in got:
        assert line.app_name == container.name
        assert (line.app, line.service) == ("billing", "worker")
        assert line.container == container.name
        assert line.labels["com.docker.compose.project"] == "billing"
        assert "node" not in line.labels


@pytest.mark.parametrize(
    "template",
    ["{{.Name}}/{{.ID}}", "myapp-{{.ID}}", "{{.FullID}}", "web-{{.Name}}"],
)
async def test_custom_tag_templates_resolve_to_the_container(
    client: docker.DockerClient, containers: list[Any], template: str
) -> None:
    async with pipeline([LOCAL]) as pipe:
        container = create(
            client,
            "echo custom-tag line",
            address=pipe.address,
            tag=template,
            fmt="rfc5424micro",
        )
        containers.append(container)
        # A tag that only contains the name is found among known names.
        await pipe.wait_for(
            lambda: pipe.enricher.cached(container.name), "the create event"
        )
        await run(container)
        (line,) = await pipe.lines_of("custom-tag", 1)
    assert line.app_name != container.name
    assert line.container == container.name
    assert line.app == line.service == container.name
    assert line.labels["container_id"] == container.id


async def test_a_container_created_after_start_is_known_from_events(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    async with pipeline([LOCAL]) as pipe:
        container = create(
            client,
            "echo late-comer",
            address=pipe.address,
            labels={"logd.app": "late"},
        )
        containers.append(container)
        meta = await pipe.wait_for(
            lambda: pipe.enricher.cached(container.id[:12]), "the create event"
        )
        assert meta.app == "late" and not meta.removed
        await run(container)
        (line,) = await pipe.lines_of("late-comer", 1)
        stats = dict(pipe.enricher.stats)
    assert line.app == "late"
    assert stats["lookups"] == 0 and stats["misses"] == 0
    assert stats["hits"] == 1 and stats["events"] >= 2


async def test_a_line_of_an_uncached_container_waits_and_comes_out_enriched(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    async with pipeline([LOCAL]) as pipe:
        # Created while the event loop is blocked: the cache cannot know it
        # yet when the line arrives.
        container = create(
            client, "true", address=pipe.address, labels={"logd.app": "held"}
        )
        containers.append(container)
        pipe.enricher.push([docker_line(container.id[:12], "held line")])
        assert pipe.lines == []
        (line,) = await pipe.lines_of("held line", 1)
        stats = dict(pipe.enricher.stats)
    assert line.app == "held"
    assert stats["misses"] == 1 and stats["enriched"] == 1


async def test_lines_keep_their_order_while_one_waits_for_its_container(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    async with pipeline([LOCAL]) as pipe:
        container = create(client, "true", address=pipe.address)
        containers.append(container)
        tag = container.id[:12]
        pipe.enricher.push([docker_line(tag, f"ordered {i}") for i in range(50)])
        got = await pipe.lines_of("ordered", 50)
    assert [line.message for line in got] == [f"ordered {i}" for i in range(50)]
    assert {line.container for line in got} == {container.name}


def test_the_engine_finds_containers_by_id_and_exact_name_only(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    container = create(client, "true", address="tcp://127.0.0.1:9")
    containers.append(container)
    engine = Engine(LOCAL)
    try:
        engine.connect()
        by_short = engine.find([container.id[:12]], [])
        by_full = engine.find([container.id], [])
        by_name = engine.find([], [container.name])
        # Docker resolves a unique ID prefix too; a tag word is not one.
        by_prefix = engine.find([], [container.id[:6]])
        missing = engine.find(["0" * 12], ["no-such-container-x"])
    finally:
        engine.close()
    assert by_short == by_full == by_name
    assert by_short is not None and by_short.name == container.name
    assert by_prefix is None and missing is None


async def test_a_rename_shows_on_lines_still_tagged_with_the_old_name(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    async with pipeline([LOCAL]) as pipe:
        old, new = unique("logd-test-old"), unique("logd-test-new")
        script = (
            "echo rename before; while [ ! -e /go ]; do busybox sleep 0.05; done;"
            " echo rename after"
        )
        container = create(
            client, script, address=pipe.address, tag="{{.Name}}", name=old
        )
        containers.append(container)
        await asyncio.to_thread(container.start)
        (before,) = await pipe.lines_of("rename before", 1)
        await asyncio.to_thread(container.rename, new)
        await pipe.wait_for(
            lambda: (meta := pipe.enricher.cached(old)) and meta.name == new,
            "the rename event",
        )
        await asyncio.to_thread(container.exec_run, ["/bin/busybox", "touch", "/go"])
        (after,) = await pipe.lines_of("rename after", 1)
    assert before.container == old and before.app_name == old
    assert after.app_name == old
    assert after.container == new
    assert after.app == after.service == new
    assert after.labels["container_name"] == new
    assert pipe.enricher.cached(new) is not None


async def test_lines_that_arrive_after_removal_are_still_enriched(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    async with pipeline([LOCAL]) as pipe:
        pipe.paused = True
        container = create(
            client,
            "echo gone-before-read",
            address=pipe.address,
            labels={"logd.app": "ephemeral"},
            auto_remove=True,
        )
        containers.append(container)
        tag = container.id[:12]
        await asyncio.to_thread(container.start)
        await pipe.wait_for(
            lambda: (meta := pipe.enricher.cached(tag)) and meta.removed,
            "the destroy event",
        )
        with pytest.raises(docker.errors.NotFound):
            await asyncio.to_thread(client.containers.get, container.id)
        await pipe.wait_for(lambda: pipe.backlog, "the container's line")
        pipe.resume()
        (line,) = await pipe.lines_of("gone-before-read", 1)
    assert line.app == "ephemeral"
    assert line.labels["container_id"] == container.id


async def test_a_removed_container_is_forgotten_after_the_ttl(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    async with pipeline([LOCAL], ttl_after_exit=0.3) as pipe:
        container = create(client, "true", address=pipe.address)
        containers.append(container)
        tag = container.id[:12]
        await pipe.wait_for(lambda: pipe.enricher.cached(tag), "the create event")
        await asyncio.to_thread(container.remove)
        await pipe.wait_for(
            lambda: pipe.enricher.cached(tag) is None, "the entry to expire"
        )
        pipe.enricher.push([docker_line(tag, "too late")])
        (line,) = await pipe.lines_of("too late", 1)
    assert (line.app, line.container, line.labels) == ("", "", {})
    assert pipe.enricher.stats["unenriched"] == 1


async def test_a_bulk_chunk_is_filled_as_its_lines_would_be_once_tags_are_known(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    labels = {"logd.app": "shop", "logd.service": "cart"}
    async with pipeline([LOCAL]) as pipe:
        container = create(
            client, "echo bulk first", address=pipe.address, labels=labels
        )
        containers.append(container)
        await run(container)
        [first] = await pipe.lines_of("bulk first", 1)
        host, tag = first.host, first.app_name
        frames = [
            f"<30>1 - {host} {tag} 1 {tag} - bulk {i}".encode() for i in range(3)
        ] + [b"<30>1 - vm sshd 1 - - bulk from sshd", b"<30>1 - vm - - - - no tag"]
        now = time.time_ns() // 1000
        undecided = bulk.parse(frames, now, "127.0.0.1:1")
        assert undecided is not None
        # sshd was never looked up: the chunk must go through as lines.
        assert not pipe.enricher.fill(undecided)
        assert undecided.app is None
        lines = [parse(frame, now, "127.0.0.1:1") for frame in frames]
        pipe.enricher.push(lines)
        await pipe.wait_for(lambda: len(pipe.lines) == 6, "six lines")
        before = dict(pipe.enricher.stats)
        chunk = bulk.parse(frames, now, "127.0.0.1:1")
        assert chunk is not None
        assert pipe.enricher.fill(chunk)
        after = dict(pipe.enricher.stats)
    for i, line in enumerate(lines):
        assert chunk.app is not None and chunk.labels is not None
        assert chunk.service is not None and chunk.container is not None
        filled = (chunk.app[i], chunk.service[i], chunk.container[i], chunk.labels[i])
        assert filled == (line.app, line.service, line.container, line.labels)
    assert chunk.app[:4] == ["shop", "shop", "shop", ""]
    assert after["enriched"] - before["enriched"] == 3
    assert after["hits"] - before["hits"] == 3
    assert after["passed"] - before["passed"] == 2


async def test_lines_not_from_containers_pass_untouched(
    client: docker.DockerClient,
) -> None:
    async with pipeline([LOCAL]) as pipe:
        lines = [
            docker_line("sshd", "accepted key"),
            docker_line("cron@job", "not a name"),
            docker_line("", "no tag at all"),
        ]
        unknown_id = docker_line("0123456789ab", "unknown id")
        pipe.enricher.push([*lines, unknown_id])
        got = await pipe.lines_of("", 4)
        stats = dict(pipe.enricher.stats)
    assert sorted(line.message for line in got) == sorted(
        line.message for line in [*lines, unknown_id]
    )
    for line in got:
        assert (line.app, line.service, line.container) == ("", "", "")
        assert line.labels == {}
    assert stats["passed"] == 3 and stats["unenriched"] == 1


async def test_an_unreachable_engine_warns_once_and_lines_go_on_unenriched(
    client: docker.DockerClient,
    containers: list[Any],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="logd.enrich")
    async with pipeline(["unix:///nonexistent.sock"]) as pipe:
        container = create(
            client, "echo nobody-home 1; echo nobody-home 2", address=pipe.address
        )
        containers.append(container)
        await run(container)
        got = await pipe.lines_of("nobody-home", 2)
        # Give the retries time to happen: they must not warn again.
        await asyncio.sleep(1.2)
        stats = dict(pipe.enricher.stats)
        assert pipe.enricher.engine_states() == {"unix:///nonexistent.sock": False}
    assert all(line.container == "" and line.labels == {} for line in got)
    assert stats["unenriched"] == 2 and stats["enriched"] == 0
    warnings = [r for r in caplog.records if "nonexistent.sock" in r.getMessage()]
    assert len(warnings) == 1


async def test_docker_splits_of_long_lines_are_joined_again(
    client: docker.DockerClient, containers: list[Any]
) -> None:
    async with pipeline([LOCAL]) as pipe:
        long = 40_000
        script = (
            f"busybox head -c {long} /dev/zero | busybox tr '\\0' L; echo;"
            " echo split-after"
        )
        container = create(client, script, address=pipe.address)
        containers.append(container)
        await run(container)
        await pipe.lines_of("split-after", 1)
        stats = dict(pipe.enricher.stats)
    assert [len(line.message) for line in pipe.lines] == [long, len("split-after")]
    assert set(pipe.lines[0].message) == {"L"}
    assert pipe.lines[0].container == container.name
    assert stats["reassembled"] == 1 and stats["pieces"] == 3


async def test_a_lone_piece_goes_on_after_the_hold(client: docker.DockerClient) -> None:
    async with pipeline([LOCAL], hold=0.1) as pipe:
        pipe.enricher.push([docker_line("sshd", "p" * SPLIT_SIZE)])
        assert pipe.lines == []
        (line,) = await pipe.lines_of("ppp", 1)
        # Another stream of the same sender is not joined to it.
        pipe.enricher.push([docker_line("sshd", "q" * SPLIT_SIZE, severity=ERR)])
        pipe.enricher.push([docker_line("sshd", "tail", severity=INFO)])
        await pipe.lines_of("tail", 1)
    assert len(line.message) == SPLIT_SIZE
    assert pipe.enricher.stats["reassembled"] == 0


# Against private engines.


@pytest.fixture
def private_engines() -> Iterator[Callable[[str], PrivateDockerd]]:
    """Start dockerds of the test's own, each under its own host name."""
    started: list[PrivateDockerd] = []

    def start(hostname: str) -> PrivateDockerd:
        engine = PrivateDockerd(hostname)
        started.append(engine)
        engine.start()
        return engine

    yield start
    for engine in started:
        engine.cleanup()


async def test_the_lines_host_name_selects_the_engine(
    client: docker.DockerClient,
    containers: list[Any],
    private_engines: Callable[[str], PrivateDockerd],
) -> None:
    other = await asyncio.to_thread(private_engines, "logd-node-b")
    other_client = other.client()
    ensure_image(other_client)
    name = unique("logd-test-twin")
    async with pipeline([LOCAL, other.url]) as pipe:
        here = create(
            client,
            "echo twin here",
            address=pipe.address,
            tag="{{.Name}}",
            name=name,
            labels={"logd.app": "here"},
        )
        there = create(
            other_client,
            "echo twin there",
            address=pipe.address,
            tag="{{.Name}}",
            name=name,
            labels={"logd.app": "there"},
        )
        # `there` goes with its engine.
        containers.append(here)
        await asyncio.gather(run(here), run(there))
        got = await pipe.lines_of("twin", 2)
    by_message = {line.message: line for line in got}
    assert by_message["twin here"].host != "logd-node-b"
    assert by_message["twin here"].app == "here"
    assert by_message["twin there"].host == "logd-node-b"
    assert by_message["twin there"].app == "there"
    assert by_message["twin there"].labels["container_id"] == there.id
    other_client.close()


async def test_enrichment_resumes_after_dockerd_restarts(
    private_engines: Callable[[str], PrivateDockerd],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="logd.enrich")
    engine = await asyncio.to_thread(private_engines, "logd-node-r")
    engine_client = engine.client()
    ensure_image(engine_client)
    async with pipeline([engine.url]) as pipe:
        first = create(
            engine_client,
            "echo restart one",
            address=pipe.address,
            labels={"logd.app": "one"},
        )
        await run(first)
        await pipe.lines_of("restart one", 1)

        # Stop dockerd: known containers stay enriched from the cache.
        await asyncio.to_thread(engine.stop)
        engine_client.close()
        tag = first.id[:12]
        await pipe.wait_for(lambda: "lost Docker engine" in caplog.text, "the loss")
        pipe.enricher.push([docker_line(tag, "restart cached", host="logd-node-r")])
        (cached,) = await pipe.lines_of("restart cached", 1)
        assert cached.app == "one"

        # Start it again: the watcher reconnects and new containers come in
        # through events without a lookup.
        await asyncio.to_thread(engine.start)
        await pipe.wait_for(lambda: pipe.enricher.stats["reconnects"], "a reconnect")
        engine_client = engine.client()
        lookups = pipe.enricher.stats["lookups"]
        second = create(
            engine_client,
            "echo restart two",
            address=pipe.address,
            labels={"logd.app": "two"},
        )
        await pipe.wait_for(
            lambda: pipe.enricher.cached(second.id[:12]), "the create event"
        )
        await run(second)
        (line,) = await pipe.lines_of("restart two", 1)
        assert pipe.enricher.stats["lookups"] == lookups
    assert line.app == "two"
    engine_client.close()
