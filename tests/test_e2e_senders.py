"""End to end: real syslog senders into a real `logd serve`, read back by the API.

Senders: util-linux `logger`, syslog-ng's `loggen` (installed by
scripts/install-loggen; these tests fail when it is missing), the
rfc5424-logging-handler package, Python's own `SysLogHandler`, and raw sockets
for malformed frames. Every line sent is read back and checked field by field:
app, facility, severity, host, time and message.
"""

from __future__ import annotations

import base64
import logging
import logging.handlers
import os
import re
import shutil
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from rfc5424logging import Rfc5424SysLogHandler, transport

from tests.conftest import StartLogd
from tests.serve import HOST, LogdServer, TlsFiles

# Room around a send window for clocks read at slightly different moments.
SLACK = timedelta(seconds=1)
HOSTNAME = socket.gethostname()
BOM = "\ufeff"
LOGGEN_DIR = Path(os.environ.get("LOGD_LOGGEN_DIR", "/opt/loggen"))

Row = dict[str, Any]


def utc_now() -> datetime:
    return datetime.now(UTC)


def parse_time(text: str) -> datetime:
    """Parse the API's RFC 3339 times, which end in Z."""
    return datetime.fromisoformat(text)


def by_message(lines: list[Row]) -> dict[str, Row]:
    """Index lines by message, failing on duplicates the index would hide."""
    index = {line["message"]: line for line in lines}
    assert len(index) == len(lines), [line["message"] for line in lines]
    return index


def assert_clean(line: Row) -> None:
    """A well-formed line from a loopback peer that is not a container."""
    assert line["parse_error"] == ""
    assert line["invalid_utf8"] is False
    assert line["truncated"] is False
    assert line["raw"] == ""
    assert line["source"].startswith(f"{HOST}:")
    assert line["container"] == ""
    assert line["labels"] == {}
    assert isinstance(line["seq"], int)


def assert_newest_first(lines: list[Row]) -> None:
    keys = [(parse_time(line["ts"]), line["seq"]) for line in lines]
    assert keys == sorted(keys, reverse=True)


def assert_received_within(line: Row, start: datetime, end: datetime) -> None:
    received = parse_time(line["received"])
    assert start - SLACK <= received <= end + SLACK


def send_tcp(port: int, data: bytes) -> None:
    """Send bytes over one TCP connection and close it."""
    with socket.create_connection((HOST, port), timeout=10) as conn:
        conn.sendall(data)


# --- util-linux logger ---------------------------------------------------------

LOGGER_TRANSPORTS = {
    "udp": ["--udp"],
    "tcp-newline": ["--tcp"],
    "tcp-octet-counted": ["--tcp", "--octet-count"],
}


def run_logger(
    port: int, args: list[str], stdin: str | None = None
) -> tuple[datetime, datetime]:
    """Run logger against loopback; return the wall-clock window it ran in."""
    # RFC 3164 times carry no zone; UTC makes them comparable with the API's.
    env = {**os.environ, "TZ": "UTC"}
    start = utc_now()
    subprocess.run(
        ["logger", "-n", HOST, "-P", str(port), *args],
        input=stdin,
        text=True,
        env=env,
        check=True,
        timeout=30,
    )
    return start, utc_now()


@pytest.mark.parametrize("transport_name", sorted(LOGGER_TRANSPORTS))
def test_logger_rfc5424_lines_come_back_with_every_field(
    logd_server: LogdServer, app: str, transport_name: str
) -> None:
    port = logd_server.ports.udp if transport_name == "udp" else logd_server.ports.tcp
    framing = LOGGER_TRANSPORTS[transport_name]
    first = "first ✓ héllo wörld, two trailing spaces  "
    window_a = run_logger(
        port,
        [
            *framing,
            "--rfc5424=notq",
            "-t",
            app,
            "-p",
            "local0.err",
            "--id=4242",
            "--msgid",
            "ORDER7",
            "--sd-id",
            "zoo@32473",
            "--sd-param",
            'tiger="hungry"',
            first,
        ],
    )
    window_b = run_logger(
        port,
        [*framing, "--rfc5424=notq", "-t", app, "-p", "user.warning"],
        stdin="line one\nline two\n\nline four\n",
    )

    lines = logd_server.wait_for(app, 5)
    assert len(lines) == 5
    assert_newest_first(lines)
    index = by_message(lines)
    assert set(index) == {first, "line one", "line two", "", "line four"}

    for line in lines:
        assert_clean(line)
        assert line["app"] == app
        assert line["app_name"] == app
        assert line["host"] == HOSTNAME

    line = index[first]
    assert (line["facility"], line["severity"]) == (16, 3)
    assert (line["procid"], line["msgid"]) == ("4242", "ORDER7")
    assert line["structured_data"] == '[zoo@32473 tiger="hungry"]'
    assert window_a[0] - SLACK <= parse_time(line["ts"]) <= window_a[1] + SLACK

    for message in ("line one", "line two", "", "line four"):
        line = index[message]
        assert (line["facility"], line["severity"]) == (1, 4)
        assert (line["procid"], line["msgid"], line["structured_data"]) == ("", "", "")
        assert window_b[0] - SLACK <= parse_time(line["ts"]) <= window_b[1] + SLACK


@pytest.mark.parametrize("transport_name", sorted(LOGGER_TRANSPORTS))
def test_logger_rfc3164_lines_come_back_with_tag_as_app(
    logd_server: LogdServer, app: str, transport_name: str
) -> None:
    port = logd_server.ports.udp if transport_name == "udp" else logd_server.ports.tcp
    framing = LOGGER_TRANSPORTS[transport_name]
    first = "first ✓ héllo wörld, two trailing spaces  "
    window_a = run_logger(
        port,
        [*framing, "--rfc3164", "-t", app, "-p", "local0.err", "--id=4242", first],
    )
    window_b = run_logger(
        port,
        [*framing, "--rfc3164", "-t", app, "-p", "local7.debug"],
        stdin="line one\nline two\n",
    )

    lines = logd_server.wait_for(app, 3)
    assert len(lines) == 3
    assert_newest_first(lines)
    index = by_message(lines)
    assert set(index) == {first, "line one", "line two"}

    for line in lines:
        assert_clean(line)
        assert line["app"] == app
        assert line["app_name"] == app
        # logger sends the short host name in RFC 3164.
        assert line["host"] == HOSTNAME.split(".")[0]
        assert (line["msgid"], line["structured_data"]) == ("", "")

    line = index[first]
    assert (line["facility"], line["severity"], line["procid"]) == (16, 3, "4242")
    assert_whole_second_within(parse_time(line["ts"]), window_a)

    for message in ("line one", "line two"):
        line = index[message]
        assert (line["facility"], line["severity"], line["procid"]) == (23, 7, "")
        assert_whole_second_within(parse_time(line["ts"]), window_b)


def assert_whole_second_within(ts: datetime, window: tuple[datetime, datetime]) -> None:
    """RFC 3164 times have whole seconds: the send time cut to the second."""
    assert ts.microsecond == 0
    start = window[0].replace(microsecond=0)
    assert start - SLACK <= ts <= window[1] + SLACK


# --- syslog-ng loggen -----------------------------------------------------------

LOGGEN_RUNS = {
    "tcp-octet-counted": ["--inet", "--stream"],
    "tcp-newline": ["--inet", "--stream", "--no-framing"],
    # Over UDP loggen would put an octet count inside the datagram; RFC 5426
    # has none, so it is turned off. The rate keeps loopback from dropping.
    "udp": ["--inet", "--dgram", "--no-framing", "--rate", "2000"],
    # The TLS plugin replaces the socket one; it does not verify the server.
    "tls": ["--use-ssl"],
}
LOGGEN_BODY = re.compile(
    r"seq: (?P<seq>\d{10}), thread: 0000, runid: (?P<runid>\d+), "
    r"stamp: (?P<stamp>\S+) (?:PADD)*(?:P|PA|PAD)?"
)


def loggen_command() -> list[str]:
    """The loggen wrapper; fail (never skip) with how to install it."""
    wrapper = LOGGEN_DIR / "loggen"
    found = str(wrapper) if wrapper.exists() else shutil.which("loggen")
    if found is None:
        pytest.fail(
            f"loggen not found at {wrapper} nor on PATH; run scripts/install-loggen "
            "(or set LOGD_LOGGEN_DIR to where it was installed)"
        )
    return [found]


def loggen_body(message: str) -> str:
    """Loggen's message without the newline it ends every message with.

    The newline sits inside the octet-counted frame (and the datagram), so it
    is message text by the letter of RFC 5424; whether a receiver keeps it is
    not fixed by the contract, so it is the one thing this comparison forgives.
    """
    return message.removesuffix("\n")


@pytest.mark.parametrize("run", sorted(LOGGEN_RUNS))
def test_loggen_rfc5424_count_is_exact_and_fields_survive(
    start_logd: StartLogd, run: str
) -> None:
    # loggen always names its app prg00000, so it gets a server to itself.
    server = start_logd(tls=run == "tls")
    port = {
        "udp": server.ports.udp,
        "tls": server.ports.tls,
    }.get(run, server.ports.tcp)
    count = 1000 if run == "udp" else 5000
    sdata = '[loggen@32473 run="e2e"]'
    sent = subprocess.run(
        [
            *loggen_command(),
            *LOGGEN_RUNS[run],
            "--syslog-proto",
            "--sdata",
            sdata,
            "--number",
            str(count),
            "--quiet",
            HOST,
            str(port),
        ],
        env={**os.environ, "TZ": "UTC"},
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    )
    # loggen exits 0 even when it could not start; it says so on stderr.
    assert "error" not in sent.stderr, sent.stderr

    lines = server.wait_for("prg00000", count, timeout=60)
    assert len(lines) == count
    assert_newest_first(lines)
    seqs = []
    for line in lines:
        assert_clean(line)
        assert (line["app"], line["app_name"], line["host"]) == (
            "prg00000",
            "prg00000",
            "localhost",
        )
        assert (line["facility"], line["severity"]) == (4, 6)
        assert (line["procid"], line["msgid"]) == ("1234", "")
        assert line["structured_data"] == sdata
        # RFC 5424 section 6.4: the BOM marks UTF-8, it is not message text.
        assert not line["message"].startswith(BOM)
        body = LOGGEN_BODY.fullmatch(loggen_body(line["message"]))
        assert body is not None, line["message"]
        # The header's time and the stamp in the body are the same second.
        assert parse_time(line["ts"]) == datetime.fromisoformat(body["stamp"]).replace(
            tzinfo=UTC
        )
        seqs.append(int(body["seq"]))
    assert sorted(seqs) == list(range(count))


# --- rfc5424-logging-handler ----------------------------------------------------


class Recorder(logging.Filter):
    """Keep every record a logger lets through, to know its exact time."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def filter(self, record: logging.LogRecord) -> bool:
        self.records.append(record)
        return True


@pytest.fixture
def recorded_logger(request: pytest.FixtureRequest) -> Iterator[tuple[Any, Recorder]]:
    """A private logger at DEBUG whose records are recorded; handlers closed after."""
    logger = logging.getLogger(f"e2e.{request.node.name}")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    recorder = Recorder()
    logger.addFilter(recorder)
    yield logger, recorder
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
        handler.close()
    logger.removeFilter(recorder)


RFC5424_SD = {"e2e@32473": {"k": "v", "odd": 'a"b]c\\'}}
# What the handler makes of RFC5424_SD: '"', ']' and '\' escaped.
RFC5424_SD_TEXT = '[e2e@32473 k="v" odd="a\\"b\\]c\\\\"]'
HANDLER_FRAMINGS = {
    "octet-counted": transport.FRAMING_OCTET_COUNTING,
    "newline": transport.FRAMING_NON_TRANSPARENT,
}


def log_rfc5424_records(logger: logging.Logger) -> None:
    """Log records that exercise levels, msgid, per-record SD and UTF-8."""
    logger.debug("plain ascii")
    logger.info("héllo wörld ✓", extra={"msgid": "GREET"})
    logger.warning(
        "with request data",
        extra={"msgid": "REQ", "structured_data": {"req@32473": {"id": "7"}}},
    )
    logger.error("two\nlines")
    logger.critical("trailing spaces  ")


def check_rfc5424_records(
    lines: list[Row], records: list[logging.LogRecord], app: str, newline: bool
) -> None:
    """Compare stored lines with the handler's records one by one."""
    expected_levels = {
        "DEBUG": 7,
        "INFO": 6,
        "WARNING": 4,
        "ERROR": 3,
        "CRITICAL": 2,
    }
    assert len(lines) == len(records)
    assert_newest_first(lines)
    index = by_message(lines)
    for record in records:
        message = record.getMessage()
        if newline:
            # The handler escapes LF itself when it frames with LF.
            message = message.replace("\n", "\\n")
        line = index[message]
        assert_clean(line)
        assert (line["app"], line["app_name"], line["host"]) == (app, app, "e2e-host")
        assert (line["facility"], line["severity"]) == (
            1,
            expected_levels[record.levelname],
        )
        assert line["procid"] == str(os.getpid())
        assert line["msgid"] == getattr(record, "msgid", "")
        sd = RFC5424_SD_TEXT
        if hasattr(record, "structured_data"):
            sd += '[req@32473 id="7"]'
        assert line["structured_data"] == sd
        # The handler writes the record's own time, to the microsecond.
        assert parse_time(line["ts"]) == datetime.fromtimestamp(record.created, UTC)


@pytest.mark.parametrize("framing", sorted(HANDLER_FRAMINGS))
def test_rfc5424_handler_over_tcp_keeps_msgid_sd_and_exact_time(
    logd_server: LogdServer,
    app: str,
    framing: str,
    recorded_logger: tuple[logging.Logger, Recorder],
) -> None:
    logger, recorder = recorded_logger
    logger.addHandler(
        Rfc5424SysLogHandler(
            address=(HOST, logd_server.ports.tcp),
            socktype=socket.SOCK_STREAM,
            framing=HANDLER_FRAMINGS[framing],
            appname=app,
            hostname="e2e-host",
            structured_data=RFC5424_SD,
        )
    )
    log_rfc5424_records(logger)
    logger.handlers[0].close()

    lines = logd_server.wait_for(app, len(recorder.records))
    check_rfc5424_records(lines, recorder.records, app, framing == "newline")


def test_rfc5424_handler_over_udp_keeps_msgid_sd_and_exact_time(
    logd_server: LogdServer,
    app: str,
    recorded_logger: tuple[logging.Logger, Recorder],
) -> None:
    logger, recorder = recorded_logger
    logger.addHandler(
        Rfc5424SysLogHandler(
            address=(HOST, logd_server.ports.udp),
            socktype=socket.SOCK_DGRAM,
            appname=app,
            hostname="e2e-host",
            structured_data=RFC5424_SD,
        )
    )
    log_rfc5424_records(logger)

    lines = logd_server.wait_for(app, len(recorder.records))
    check_rfc5424_records(lines, recorder.records, app, newline=False)


@pytest.mark.parametrize("framing", sorted(HANDLER_FRAMINGS))
def test_rfc5424_handler_over_tls_trusting_the_test_ca(
    logd_tls_server: LogdServer,
    tls_files: TlsFiles,
    app: str,
    framing: str,
    recorded_logger: tuple[logging.Logger, Recorder],
) -> None:
    logger, recorder = recorded_logger
    logger.addHandler(
        Rfc5424SysLogHandler(
            address=(HOST, logd_tls_server.ports.tls),
            socktype=socket.SOCK_STREAM,
            framing=HANDLER_FRAMINGS[framing],
            appname=app,
            hostname="e2e-host",
            structured_data=RFC5424_SD,
            tls_enable=True,
            tls_ca_bundle=str(tls_files.ca),
            tls_verify=True,
        )
    )
    log_rfc5424_records(logger)
    logger.handlers[0].close()

    lines = logd_tls_server.wait_for(app, len(recorder.records))
    check_rfc5424_records(lines, recorder.records, app, framing == "newline")


def test_tls_listener_refuses_a_client_that_does_not_trust_it(
    logd_tls_server: LogdServer,
) -> None:
    # A client with only the system's CAs must not complete the handshake.
    context = ssl.create_default_context()
    with (
        socket.create_connection((HOST, logd_tls_server.ports.tls), timeout=10) as raw,
        pytest.raises(ssl.SSLCertVerificationError),
    ):
        context.wrap_socket(raw, server_hostname=HOST)


# --- Python's logging.handlers.SysLogHandler ------------------------------------


SYSLOG_HANDLER_LEVELS = {"DEBUG": 7, "INFO": 6, "WARNING": 4, "ERROR": 3, "CRITICAL": 2}


def log_stdlib_records(logger: logging.Logger, app: str) -> tuple[datetime, datetime]:
    # Python's handler sends "<PRI>" + the formatted record + NUL: no time, no
    # host. The formatter's "app: " prefix is the RFC 3164 TAG.
    logger.handlers[0].setFormatter(logging.Formatter(f"{app}: %(message)s"))
    start = utc_now()
    logger.info("héllo wörld ✓")
    logger.warning("second record")
    logger.error("third record, trailing spaces  ")
    logger.debug("fourth")
    end = utc_now()
    logger.handlers[0].close()
    return start, end


def check_stdlib_records(
    lines: list[Row],
    records: list[logging.LogRecord],
    app: str,
    window: tuple[datetime, datetime],
) -> None:
    assert len(lines) == len(records)
    index = by_message(lines)
    for record in records:
        # The NUL is the handler's terminator, not part of the message.
        line = index[record.getMessage()]
        assert_clean(line)
        assert (line["app"], line["app_name"]) == (app, app)
        # local3 is facility 19.
        assert (line["facility"], line["severity"]) == (
            19,
            SYSLOG_HANDLER_LEVELS[record.levelname],
        )
        # The frame names no host: the receiver may leave it empty or use
        # the peer's address, nothing else.
        assert line["host"] in ("", HOST)
        # Nor a time: it is the time of arrival.
        assert window[0] - SLACK <= parse_time(line["ts"]) <= window[1] + SLACK
        assert_received_within(line, *window)
        assert line["ts"] == line["received"]


def test_stdlib_syslog_handler_over_udp(
    logd_server: LogdServer,
    app: str,
    recorded_logger: tuple[logging.Logger, Recorder],
) -> None:
    logger, recorder = recorded_logger
    logger.addHandler(
        logging.handlers.SysLogHandler(
            address=(HOST, logd_server.ports.udp),
            facility=logging.handlers.SysLogHandler.LOG_LOCAL3,
        )
    )
    window = log_stdlib_records(logger, app)

    lines = logd_server.wait_for(app, len(recorder.records))
    check_stdlib_records(lines, recorder.records, app, window)


def test_stdlib_syslog_handler_over_tcp_frames_end_in_nul(
    logd_server: LogdServer,
    app: str,
    recorded_logger: tuple[logging.Logger, Recorder],
) -> None:
    logger, recorder = recorded_logger
    logger.addHandler(
        logging.handlers.SysLogHandler(
            address=(HOST, logd_server.ports.tcp),
            facility=logging.handlers.SysLogHandler.LOG_LOCAL3,
            socktype=socket.SOCK_STREAM,
        )
    )
    window = log_stdlib_records(logger, app)

    lines = logd_server.wait_for(app, len(recorder.records))
    check_stdlib_records(lines, recorder.records, app, window)


# --- malformed frames -----------------------------------------------------------


def all_lines(server: LogdServer) -> list[Row]:
    """Every line a server stored, whatever app it was filed under.

    A frame that does not parse names no app, and `app=` cannot ask for the
    empty name, so this leaves the app filter out.
    """
    lines: list[Row] = server.get("/api/v1/logs", limit=1000)["lines"]
    return lines


def wait_for_total(server: LogdServer, count: int, timeout: float = 30.0) -> list[Row]:
    """Poll `/api/v1/apps` until it counts `count` lines in all; return them."""
    total = 0
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        total = sum(entry["lines"] for entry in server.apps())
        if total >= count:
            return all_lines(server)
        time.sleep(0.25)
    raise AssertionError(
        f"{total} of {count} lines stored; stderr:\n{server.stderr(4000)}"
    )


def test_malformed_and_non_utf8_frames_are_stored_raw_and_flagged(
    start_logd: StartLogd,
) -> None:
    # A server of its own: a frame that does not parse has no app name to
    # tell it apart, so the test reads back everything the server stored.
    server = start_logd()
    sent_ts = (utc_now() - timedelta(minutes=1)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    garbage = b"<999>garbage"
    headerless = b"no pri, not utf-8: \xff\xfe"
    bad_utf8 = (
        b"<13>1 %s e2e-host badutf8 - - - caf\xe9 \xff\xfe end" % sent_ts.encode()
    )
    start = utc_now()
    send_tcp(server.ports.tcp, garbage + b"\n")
    send_tcp(server.ports.tcp, b"%d %s" % (len(bad_utf8), bad_utf8))
    send_tcp(server.ports.tcp, headerless + b"\n")
    end = utc_now()

    lines = wait_for_total(server, 3)
    assert len(lines) == 3
    by_raw = {base64.b64decode(line["raw"]): line for line in lines}
    assert set(by_raw) == {garbage, bad_utf8, headerless}
    for line in lines:
        assert line["truncated"] is False
        assert line["source"].startswith(f"{HOST}:")

    # PRI 999 is out of range (0-191): a parse error, kept as it came.
    line = by_raw[garbage]
    assert line["parse_error"] != ""
    assert line["invalid_utf8"] is False
    assert_received_within(line, start, end)

    # No PRI: RFC 3164 makes it user.notice; the bytes are not UTF-8.
    line = by_raw[headerless]
    assert line["invalid_utf8"] is True
    assert "\ufffd" in line["message"]
    assert_received_within(line, start, end)

    # A good RFC 5424 header with a body that is not UTF-8.
    line = by_raw[bad_utf8]
    assert line["parse_error"] == ""
    assert line["invalid_utf8"] is True
    assert (line["app"], line["host"], line["severity"]) == ("badutf8", "e2e-host", 5)
    assert line["ts"] == sent_ts
    assert line["message"].startswith("caf\ufffd")
    assert line["message"].endswith(" end")
