"""`logd apps`, `logd query` and `logd tail`: read a running logd from a shell.

The commands talk to logd's HTTP API (`--url`, or LOGD_URL) with a bearer
token (`--token`, or LOGD_TOKEN). On a terminal, lines are colored by
severity; in a pipe, or with NO_COLOR set, they are plain text. Either way
control characters in a message are shown escaped, so a line can neither
span rows nor drive the terminal. `--json` prints the API's line objects,
one a row (NDJSON).

`logd query` prints the newest `--limit` lines oldest first, as a log file
reads, following the API's `next` cursors when one page is not enough.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO

import aiohttp
import orjson

DEFAULT_URL = "http://127.0.0.1:8080"
COMMANDS = ("apps", "query", "tail")
# Lines asked for per request when following `next` cursors.
PAGE = 5000
# A tail pings logd this often and gives up on it after half as long again.
PING_SECONDS = 30.0
# The /api/v1/logs parameter that `--grep` fills: word or phrase search.
GREP_PARAMETER = "q"
_GREP_HELP = 'only lines with these words and "quoted phrases" (any case)'

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERRUPTED = 130

_SEVERITIES = ("emerg", "alert", "crit", "err", "warning", "notice", "info", "debug")
# ANSI SGR codes per severity: red for errors and worse, yellow for warnings.
_SEVERITY_COLORS = ("1;31", "1;31", "1;31", "31", "33", "36", "", "2")
_DIM = "2"
_WHO_COLOR = "34"
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")

Json = dict[str, Any]


class ClientError(Exception):
    """The server could not be reached or refused; the message says why."""


def add_commands(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add `apps`, `query` and `tail` to the `logd` command's subparsers."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--url",
        default=os.environ.get("LOGD_URL", DEFAULT_URL),
        help="logd's HTTP API (env LOGD_URL, default %(default)s)",
    )
    common.add_argument(
        "--token",
        default=os.environ.get("LOGD_TOKEN", ""),
        help="bearer token (env LOGD_TOKEN)",
    )
    _apps_parser(sub, common)
    _query_parser(sub, common)
    _tail_parser(sub, common)


def _apps_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser(
        "apps",
        parents=[common],
        help="list the apps logd has lines of",
        description="List every app you may read, with its line count and "
        "the time of its newest line.",
    )
    p.add_argument("--json", action="store_true", help="print JSON, one app a row")
    p.set_defaults(log_level="warning")


def _query_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser(
        "query",
        parents=[common],
        help="print an app's stored lines",
        description="Print the newest lines of an app, oldest first.",
    )
    p.add_argument("app", help="the app to read")
    p.add_argument(
        "--since",
        default="1h",
        help="RFC 3339 time or a duration before now (default %(default)s)",
    )
    p.add_argument("--until", help="RFC 3339 time or a duration before now")
    p.add_argument("--grep", help=_GREP_HELP)
    p.add_argument(
        "--limit",
        type=_positive,
        default=100,
        help="at most this many lines, the newest (default %(default)s)",
    )
    p.add_argument("--json", action="store_true", help="print JSON, one line a row")
    p.set_defaults(log_level="warning")


def _tail_parser(
    sub: argparse._SubParsersAction,  # type: ignore[type-arg]
    common: argparse.ArgumentParser,
) -> None:
    p = sub.add_parser(
        "tail",
        parents=[common],
        help="follow an app's lines as they arrive",
        description="Print an app's lines as logd receives them, until "
        "interrupted or logd stops.",
    )
    p.add_argument("app", help="the app to follow")
    p.add_argument("--grep", help=_GREP_HELP)
    p.add_argument(
        "--cursor", help="resume after this cursor (from a gap or a stopped tail)"
    )
    p.add_argument("--json", action="store_true", help="print JSON, one line a row")
    p.set_defaults(log_level="warning")


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a whole number >= 1")
    return int(text)


def run(args: argparse.Namespace) -> int:
    """Run one client command; return the process exit status."""
    out = Output(sys.stdout, sys.stderr)
    commands: dict[str, Callable[[Api, argparse.Namespace, Output], Any]] = {
        "apps": apps,
        "query": query,
        "tail": tail,
    }
    try:
        return int(asyncio.run(_session(commands[args.command], args, out)))
    except ClientError as exc:
        out.note(f"logd: {exc}")
        return EXIT_FAILED
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader left (`| head`); stop quietly, and keep the interpreter
        # from failing to flush into the closed pipe on exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_OK


async def _session(
    command: Callable[[Api, argparse.Namespace, Output], Any],
    args: argparse.Namespace,
    out: Output,
) -> int:
    headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
    async with aiohttp.ClientSession(headers=headers) as session:
        api = Api(session, args.url)
        return int(await command(api, args, out))


class Api:
    """logd's HTTP API over one aiohttp session."""

    def __init__(self, session: aiohttp.ClientSession, url: str) -> None:
        self.session = session
        self.url = url.rstrip("/")

    async def get(self, path: str, params: Mapping[str, str | int]) -> Json:
        """GET a JSON document; raise ClientError with the server's reason."""
        url = self.url + path
        try:
            async with self.session.get(url, params=params) as response:
                body = await response.read()
                status = response.status
        except aiohttp.ClientError as exc:
            raise ClientError(f"cannot reach {self.url}: {exc}") from None
        if status != 200:
            raise ClientError(f"GET {path} answered {status}: {_reason(body)}")
        document: Json = orjson.loads(body)
        return document

    async def why_refused(self, path: str, params: Mapping[str, str]) -> str:
        """Ask again without upgrading, to learn why a websocket was refused."""
        try:
            async with self.session.get(self.url + path, params=params) as response:
                return f"{response.status}: {_reason(await response.read())}"
        except aiohttp.ClientError as exc:
            return str(exc)


def _reason(body: bytes) -> str:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode(errors="replace").strip()[:500]
    if isinstance(document, dict) and "error" in document:
        return str(document["error"])
    return body.decode(errors="replace")[:500]


async def apps(api: Api, args: argparse.Namespace, out: Output) -> int:
    """`logd apps`: every app with its line count and newest time."""
    found: list[Json] = (await api.get("/api/v1/apps", {}))["apps"]
    if args.json:
        for app in found:
            out.json(app)
        return EXIT_OK
    width = max([len("APP")] + [len(app["app"]) for app in found])
    out.row(f"{'APP':<{width}}  {'LINES':>10}  LAST", _DIM)
    for app in found:
        out.row(f"{_clean(app['app']):<{width}}  {app['lines']:>10}  {app['last']}")
    return EXIT_OK


async def query(api: Api, args: argparse.Namespace, out: Output) -> int:
    """`logd query APP`: the newest lines, oldest first, across pages."""
    params: dict[str, str | int] = {"app": args.app, "since": args.since}
    if args.until:
        params["until"] = args.until
    if args.grep:
        params[GREP_PARAMETER] = args.grep
    lines: list[Json] = []
    while len(lines) < args.limit:
        params["limit"] = min(args.limit - len(lines), PAGE)
        page = await api.get("/api/v1/logs", params)
        lines.extend(page["lines"])
        if not page["lines"] or "next" not in page:
            break
        params["cursor"] = page["next"]
    for line in reversed(lines):
        out.line(line, as_json=args.json)
    return EXIT_OK


async def tail(api: Api, args: argparse.Namespace, out: Output) -> int:
    """`logd tail APP`: print lines as they arrive until logd or the user stops."""
    params = {"app": args.app}
    if args.grep:
        params[GREP_PARAMETER] = args.grep
    if args.cursor:
        params["cursor"] = args.cursor
    path = "/api/v1/tail"
    try:
        async with api.session.ws_connect(
            api.url + path, params=params, heartbeat=PING_SECONDS
        ) as ws:
            last = await _follow(ws, args, out)
            code = ws.close_code
    except aiohttp.WSServerHandshakeError:
        raise ClientError(
            f"tail refused: {await api.why_refused(path, params)}"
        ) from None
    except aiohttp.ClientError as exc:
        raise ClientError(f"cannot reach {api.url}: {exc}") from None
    resume = f"; resume with --cursor {last}" if last else ""
    if code == aiohttp.WSCloseCode.GOING_AWAY:
        out.note(f"logd: the server is shutting down{resume}")
        return EXIT_OK
    out.note(f"logd: the tail closed (code {code}){resume}")
    return EXIT_FAILED


async def _follow(
    ws: aiohttp.ClientWebSocketResponse, args: argparse.Namespace, out: Output
) -> str:
    """Print messages until the socket closes; return the last line's cursor."""
    last = args.cursor or ""
    async for message in ws:
        if message.type is not aiohttp.WSMsgType.TEXT:
            continue
        event = orjson.loads(message.data)
        kind = event.get("type")
        if kind == "line":
            del event["type"]
            out.line(event, as_json=args.json)
            last = event["cursor"]
        elif kind == "gap":
            out.note(
                f"logd: {event['skipped']} lines skipped, read too slowly; replay "
                f"from there with: logd tail {args.app} --cursor {event['cursor']}"
            )
        elif kind == "error":
            out.note(f"logd: {event.get('error', 'tail error')}")
        out.flush()
    return last


class Output:
    """Where lines and notes go, colored only on a terminal without NO_COLOR."""

    def __init__(self, stream: TextIO, notes: TextIO) -> None:
        self.stream = stream
        self.notes = notes
        self.color = stream.isatty() and not os.environ.get("NO_COLOR")

    def line(self, line: Json, *, as_json: bool) -> None:
        """Print one line object: its JSON, or a readable row."""
        if as_json:
            self.json(line)
            return
        severity = int(line.get("severity", 6))
        name = _SEVERITIES[severity] if 0 <= severity < 8 else str(severity)
        who = line.get("service") or line.get("app_name") or line.get("app", "")
        if line.get("container"):
            who = f"{who}/{line['container']}"
        parts = [
            self._paint(_short_time(line.get("ts", "")), _DIM),
            self._paint(f"{name:<7}", _severity_color(severity)),
            self._paint(_clean(who), _WHO_COLOR),
            _clean(line.get("message", "")),
        ]
        self.stream.write(" ".join(parts) + "\n")

    def json(self, document: Json) -> None:
        """Print one JSON document on its own row."""
        self.stream.write(orjson.dumps(document).decode() + "\n")

    def row(self, text: str, color: str = "") -> None:
        """Print a row of a table."""
        self.stream.write(self._paint(text, color) + "\n")

    def note(self, text: str) -> None:
        """Tell the user something that is not a log line, on stderr."""
        self.flush()
        self.notes.write(text + "\n")
        self.notes.flush()

    def flush(self) -> None:
        self.stream.flush()

    def _paint(self, text: str, color: str) -> str:
        if not self.color or not color:
            return text
        return f"\x1b[{color}m{text}\x1b[0m"


def _severity_color(severity: int) -> str:
    return _SEVERITY_COLORS[severity] if 0 <= severity < 8 else ""


def _short_time(ts: str) -> str:
    # 2026-12-03T17:43:20.123456Z -> 2026-12-03 17:43:20.123Z
    if len(ts) == 27 and ts.endswith("Z"):
        return f"{ts[:10]} {ts[11:23]}Z"
    return ts


def _clean(text: str) -> str:
    """Escape control characters, so a message stays on one terminal row."""
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)
