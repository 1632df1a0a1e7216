"""End to end: the Loghub corpus through one TCP connection, back byte for byte.

About 32,000 real log lines (16 files; see ../shared/corpus/loghub/README.md)
are sent as RFC 5424 frames, one app per file, once octet counted and once
newline framed. Every line must come back as the message of its own frame,
and each app must hold exactly its file's lines, newest first.
"""

from __future__ import annotations

import base64
import os
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.serve import HOST, LogdServer

# Corpus files end lines in CR LF (one in LF alone); the line is the text
# without its line ending.
CORPUS = Path(
    os.environ.get(
        "LOGD_CORPUS", Path(__file__).resolve().parents[2] / "shared/corpus/loghub"
    )
)
APP_PREFIX = {"octet-counted": "corpus-oc", "newline": "corpus-nl"}
# One millisecond between the times the frames carry, so order is known.
STEP = timedelta(milliseconds=1)


@dataclass(frozen=True)
class CorpusFile:
    """One corpus file's lines and the app it is sent as."""

    app: str
    lines: list[bytes]


def read_lines(path: Path) -> list[bytes]:
    """Split a file into lines without their CR LF or LF endings."""
    lines = path.read_bytes().split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    return [line.removesuffix(b"\r") for line in lines]


def load_corpus(prefix: str) -> list[CorpusFile]:
    files = sorted(CORPUS.glob("*.log"))
    if not files:
        pytest.fail(f"no *.log files in {CORPUS}; set LOGD_CORPUS to the corpus")
    return [CorpusFile(f"{prefix}-{path.stem}", read_lines(path)) for path in files]


def rfc3339(ts: datetime) -> str:
    """Format a UTC time the way the API does, with microseconds and Z."""
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def frame(app: str, number: int, ts: datetime, line: bytes) -> bytes:
    """Make an RFC 5424 message; PROCID carries the line's number in its file."""
    stamp = rfc3339(ts).encode()
    header = b"<134>1 %s corpus-host %s %d - - " % (stamp, app.encode(), number)
    return header + line


def encode_all(corpus: list[CorpusFile], base: datetime, octet: bool) -> bytes:
    """Frame every line of every file, interleaving the files line by line."""
    chunks: list[bytes] = []
    longest = max(len(f.lines) for f in corpus)
    for number in range(longest):
        for corpus_file in corpus:
            if number < len(corpus_file.lines):
                message = frame(
                    corpus_file.app,
                    number,
                    base + number * STEP,
                    corpus_file.lines[number],
                )
                if octet:
                    chunks.append(b"%d %s" % (len(message), message))
                else:
                    chunks.append(message + b"\n")
    return b"".join(chunks)


def message_bytes(stored: dict[str, Any], sent_frame: bytes) -> bytes:
    """The message as stored, in bytes; the raw frame where it was not UTF-8."""
    if stored["invalid_utf8"]:
        assert base64.b64decode(stored["raw"]) == sent_frame
        return sent_frame
    message: str = stored["message"]
    return message.encode()


def check_app(server: LogdServer, corpus_file: CorpusFile, base: datetime) -> list[str]:
    """Compare one app's stored lines with its file; return the differences."""
    expected = len(corpus_file.lines)
    stored = server.wait_for(corpus_file.app, expected, timeout=120)
    problems: list[str] = []
    if len(stored) != expected:
        problems.append(f"{corpus_file.app}: {len(stored)} lines, want {expected}")
    numbers = [int(line["procid"]) for line in stored]
    if numbers != list(reversed(range(expected))):
        problems.append(f"{corpus_file.app}: not newest first, or lines missing")
    for line in stored:
        number = int(line["procid"])
        sent = corpus_file.lines[number]
        sent_frame = frame(corpus_file.app, number, base + number * STEP, sent)
        got = message_bytes(line, sent_frame)
        want = sent_frame if line["invalid_utf8"] else sent
        if got != want or line["parse_error"] != "":
            problems.append(
                f"{corpus_file.app} line {number}: sent {sent!r}, got {got!r} "
                f"(parse_error {line['parse_error']!r})"
            )
            continue
        ts = rfc3339(base + number * STEP)
        header = (line["app_name"], line["host"], line["facility"], line["severity"])
        if header != (corpus_file.app, "corpus-host", 16, 6) or line["ts"] != ts:
            problems.append(f"{corpus_file.app} line {number}: header fields {line}")
    return problems


@pytest.mark.parametrize("framing", ["octet-counted", "newline"])
def test_corpus_over_one_tcp_connection_comes_back_byte_for_byte(
    logd_server: LogdServer, framing: str
) -> None:
    corpus = load_corpus(APP_PREFIX[framing])
    assert sum(len(f.lines) for f in corpus) > 30_000
    # Recent times: old ones could fall outside retention or a default range.
    base = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    payload = encode_all(corpus, base, octet=framing == "octet-counted")

    with socket.create_connection((HOST, logd_server.ports.tcp), timeout=60) as conn:
        conn.sendall(payload)

    problems: list[str] = []
    for corpus_file in corpus:
        problems += check_app(logd_server, corpus_file, base)
    assert problems == [], "\n".join(problems[:20])
