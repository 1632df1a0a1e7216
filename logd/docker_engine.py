"""The Docker Engine API as the enricher needs it: containers, labels, events.

This is the only module that imports the docker package, and its one
boundary: whatever the engine or the client library raises leaves here as a
`DockerError` that names the engine's URL. Every call blocks, so the
enricher runs them in threads; `Engine.close` may be called from any thread
and ends a blocking `Engine.events` iteration.

Scope: plain HTTP over a unix socket or TCP, as the docker package reads a
URL. TLS to a remote engine only through the DOCKER_* environment variables
of the default engine.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import docker
import requests

from logd.errors import DockerError

DEFAULT_URL = "unix:///var/run/docker.sock"

# The container events that change what a container's lines are labelled with.
ACTIONS = ("create", "start", "rename", "die", "destroy")

# Keys Docker adds to an event's attributes next to the container's labels.
_EVENT_KEYS = frozenset({"name", "image", "oldName", "exitCode", "execDuration"})

# The client library's own failures, next to the engine's answers.
_FAILURES = (docker.errors.DockerException, requests.RequestException, OSError)


@dataclass(frozen=True, slots=True)
class Container:
    """What the engine says about one container."""

    id: str
    name: str
    image: str
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """One container event from the engine's event stream.

    `container` is built from the event alone; Docker mixes the labels with
    its own keys there, so a label named like one of those keys is missing.
    """

    action: str
    container: Container
    old_name: str = ""


def default_url() -> str:
    """Return the engine the docker CLI would talk to: DOCKER_HOST or the socket."""
    return os.environ.get("DOCKER_HOST") or DEFAULT_URL


class Engine:
    """One Docker engine, reached by URL; blocking calls, safe across threads."""

    def __init__(self, url: str, *, timeout: float = 10.0) -> None:
        self.url = url
        self._timeout = timeout
        self._lock = threading.Lock()
        self._client: Any = None
        self._stream: Any = None

    def connect(self) -> str:
        """Open a client (negotiating the API version) and return the engine's name.

        The name is the one `docker info` shows, the host name dockerd runs
        under, which its syslog driver also writes into every line's HOSTNAME.
        """
        client = self._call("connect", self._new_client)
        name = str(self._call("read info from", lambda: client.info()["Name"]))
        with self._lock:
            old, self._client = self._client, client
        if old is not None:
            old.close()
        return name

    def containers(self) -> list[Container]:
        """List every container, running or not, with its labels."""
        client = self._connected()
        found = self._call("list containers on", lambda: client.containers(all=True))
        return [_listed(item) for item in found]

    def inspect(self, ref: str) -> Container | None:
        """Return the container with this ID (or prefix) or name, None if unknown."""
        client = self._connected()
        try:
            found = client.inspect_container(ref)
        except docker.errors.NotFound:
            return None
        except _FAILURES as exc:
            raise self._error(f"inspect container {ref!r} on", exc) from exc
        return _inspected(found)

    def find(self, ids: Iterable[str], names: Iterable[str]) -> Container | None:
        """Return the container with one of these IDs, else one of these names.

        The engine also answers for any unique ID prefix and resolves names
        and IDs alike; only a container whose ID starts with the given ID or
        whose name is exactly the given name is accepted.
        """
        for cid in ids:
            found = self.inspect(cid)
            if found is not None and found.id.startswith(cid):
                return found
        for name in names:
            found = self.inspect(name)
            if found is not None and found.name == name:
                return found
        return None

    def events(self) -> Iterator[Event]:
        """Follow the engine's container events until the stream ends or `close`.

        Opening the stream is the only step that raises; a stream that
        breaks later (dockerd stopped) simply ends.
        """
        client = self._connected()
        filters = {"type": ["container"], "event": list(ACTIONS)}
        stream = self._call(
            "follow events of", lambda: client.events(decode=True, filters=filters)
        )
        with self._lock:
            self._stream = stream
        return _events(stream)

    def close(self) -> None:
        """End a running `events` iteration and release the client."""
        with self._lock:
            stream, self._stream = self._stream, None
            client, self._client = self._client, None
        # The stream's socket may already be gone; closing is best effort.
        if stream is not None:
            with contextlib.suppress(*_FAILURES):
                stream.close()
        if client is not None:
            client.close()

    def _new_client(self) -> Any:
        if self.url == default_url() and "DOCKER_HOST" in os.environ:
            kwargs = docker.utils.kwargs_from_env()
            return docker.APIClient(timeout=self._timeout, **kwargs)
        return docker.APIClient(base_url=self.url, timeout=self._timeout)

    def _connected(self) -> Any:
        with self._lock:
            client = self._client
        if client is None:
            raise DockerError(f"Docker engine {self.url} is not connected")
        return client

    def _call(self, what: str, call: Any) -> Any:
        try:
            return call()
        except _FAILURES as exc:
            raise self._error(what, exc) from exc

    def _error(self, what: str, exc: BaseException) -> DockerError:
        return DockerError(f"could not {what} Docker engine {self.url}: {exc}")


def _events(stream: Any) -> Iterator[Event]:
    # CancellableStream ends quietly when its socket breaks or is closed; a
    # half-read chunk can still surface as one of the library's errors.
    try:
        for raw in stream:
            event = _event(raw)
            if event is not None:
                yield event
    except _FAILURES:
        return


def _event(raw: Mapping[str, Any]) -> Event | None:
    action = str(raw.get("Action", ""))
    actor = raw.get("Actor") or {}
    if action not in ACTIONS or not actor.get("ID"):
        return None
    attributes: dict[str, str] = dict(actor.get("Attributes") or {})
    labels = {k: v for k, v in attributes.items() if k not in _EVENT_KEYS}
    container = Container(
        id=str(actor["ID"]),
        name=attributes.get("name", ""),
        image=attributes.get("image", ""),
        labels=labels,
    )
    return Event(action=action, container=container, old_name=_old_name(attributes))


def _old_name(attributes: Mapping[str, str]) -> str:
    return attributes.get("oldName", "").lstrip("/")


def _listed(item: Mapping[str, Any]) -> Container:
    names = item.get("Names") or [""]
    return Container(
        id=str(item["Id"]),
        name=str(names[0]).lstrip("/"),
        image=str(item.get("Image", "")),
        labels=dict(item.get("Labels") or {}),
    )


def _inspected(found: Mapping[str, Any]) -> Container:
    config = found.get("Config") or {}
    return Container(
        id=str(found["Id"]),
        name=str(found.get("Name", "")).lstrip("/"),
        image=str(config.get("Image", "")),
        labels=dict(config.get("Labels") or {}),
    )
