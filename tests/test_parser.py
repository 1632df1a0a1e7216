"""Tests for logd.parser: RFC 5424, RFC 3164 and Docker's syslog formats."""

from __future__ import annotations

import dataclasses
import logging
import logging.handlers
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from logd.framing import Framer, TruncatedFrame
from logd.line import Line
from logd.parser import _bsd_header, parse

BOM = b"\xef\xbb\xbf"
SOURCE = "127.0.0.1:40000"
MONTHS = (
    "Jan",
    "Feb",
    "Mar",
    "Apr",
    "May",
    "Jun",
    "Jul",
    "Aug",
    "Sep",
    "Oct",
    "Nov",
    "Dec",
)


def us(when: datetime) -> int:
    """Epoch microseconds of an aware datetime, computed without floats."""
    delta = when - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


RECEIVED = us(datetime(2026, 12, 3, 17, 43, 21, tzinfo=UTC))


def utc(year: int, month: int, day: int, *clock: int) -> int:
    """Epoch microseconds of a UTC date, then hour, minute, second, microsecond."""
    hour, minute, second, micro = (*clock, 0, 0, 0, 0)[:4]
    return us(datetime(year, month, day, hour, minute, second, micro, tzinfo=UTC))


def ok(frame: bytes, received: int = RECEIVED) -> Line:
    """Parse a frame that must parse, and check what every parsed line shares."""
    line = parse(frame, received, SOURCE)
    assert line.parse_error == ""
    assert line.received == received
    assert line.source == SOURCE
    return line


def failed(frame: bytes) -> Line:
    """Parse a frame that must not parse, and check the fallback fields."""
    line = parse(frame, RECEIVED, SOURCE)
    assert line.parse_error
    assert (line.facility, line.severity) == (1, 5)
    assert line.ts == RECEIVED
    assert line.raw == bytes(frame)
    assert line.message == frame.decode(errors="replace")
    assert line.source == SOURCE
    return line


def frames_of(data: bytes) -> list[bytes]:
    framer = Framer()
    return framer.feed(data) + framer.close()


# RFC 5424, section 6.5


def test_rfc5424_example_1_with_bom_and_nil_values() -> None:
    line = ok(
        b"<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - "
        + BOM
        + b"'su root' failed for lonvick on /dev/pts/8"
    )
    assert (line.facility, line.severity) == (4, 2)
    assert line.ts == utc(2003, 10, 11, 22, 14, 15, 3000)
    assert line.host == "mymachine.example.com"
    assert (line.app_name, line.procid, line.msgid) == ("su", "", "ID47")
    assert line.structured_data == ""
    assert line.message == "'su root' failed for lonvick on /dev/pts/8"


def test_rfc5424_example_2_with_negative_offset_and_microseconds() -> None:
    line = ok(
        b"<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - "
        b"%% It's time to make the do-nuts."
    )
    assert (line.facility, line.severity) == (20, 5)
    assert line.ts == utc(2003, 8, 24, 12, 14, 15, 3)
    assert (line.host, line.app_name, line.procid, line.msgid) == (
        "192.0.2.1",
        "myproc",
        "8710",
        "",
    )
    assert line.message == "%% It's time to make the do-nuts."


def test_rfc5424_example_3_with_structured_data_and_bom() -> None:
    sd = b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
    line = ok(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 "
        + sd
        + b" "
        + BOM
        + b"An application event log entry..."
    )
    assert line.structured_data == sd.decode()
    assert line.message == "An application event log entry..."
    assert (line.app_name, line.msgid) == ("evntslog", "ID47")


def test_rfc5424_example_4_two_sd_elements_and_no_msg() -> None:
    sd = (
        b'[exampleSDID@32473 iut="3" eventSource="Application" eventID="1011"]'
        b'[examplePriority@32473 class="high"]'
    )
    line = ok(
        b"<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 " + sd
    )
    assert line.structured_data == sd.decode()
    assert line.message == ""


def test_loggen_line() -> None:
    line = ok(
        b"<38>1 2026-12-03T17:43:20.123456+00:00 localhost prg00000 1234 - "
        b'[meta sequenceId="1"] seq: 0000000001, thread: 0000, runid: 1764780000, '
        b"stamp: 2026-12-03T17:43:20 PADD"
    )
    assert (line.facility, line.severity) == (4, 6)
    assert line.ts == utc(2026, 12, 3, 17, 43, 20, 123456)
    assert (line.host, line.app_name, line.procid, line.msgid) == (
        "localhost",
        "prg00000",
        "1234",
        "",
    )
    assert line.structured_data == '[meta sequenceId="1"]'
    assert line.message.startswith("seq: 0000000001, thread: 0000")


def test_sd_values_keep_escapes_spaces_and_brackets_as_sent() -> None:
    sd = rb'[ex@1 a="say \"hi\"" b="back\\slash" c="close \] here" d="two  spaces"]'
    sd += b'[x y=""]'
    line = ok(b"<13>1 - host app - - " + sd + b" after")
    assert line.structured_data == sd.decode()
    assert line.message == "after"


@pytest.mark.parametrize(
    "sd",
    [b'[unclosed a="1"', b'[a b="1"]glued', b"[]", b"[a b=1]", b'[a b="1]', b"plain"],
)
def test_malformed_structured_data_is_an_error_naming_it(sd: bytes) -> None:
    line = failed(b"<13>1 - host app - - " + sd + b" msg")
    assert line.parse_error.startswith("STRUCTURED-DATA ")


def test_nil_values_everywhere_and_empty_message() -> None:
    frames = (b"<13>1 - - - - - -", b"<13>1 - - - - - - ", b"<13>1 - - - - - ")
    for frame in (*frames, b"<13>1 - - - - -"):
        line = ok(frame)
        assert line.ts == RECEIVED
        assert (line.host, line.app_name, line.procid, line.msgid) == ("", "", "", "")
        assert (line.structured_data, line.message) == ("", "")


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (b"2026-12-03T17:43:20Z", utc(2026, 12, 3, 17, 43, 20)),
        (b"2026-12-03t17:43:20.5z", utc(2026, 12, 3, 17, 43, 20, 500000)),
        (b"2026-12-03T23:13:20.25+05:30", utc(2026, 12, 3, 17, 43, 20, 250000)),
        (b"2026-12-03T17:43:20.123456789Z", utc(2026, 12, 3, 17, 43, 20, 123456)),
        (b"2026-12-03T17:43:20-00:00", utc(2026, 12, 3, 17, 43, 20)),
        (b"2026-12-03T17:43:20", utc(2026, 12, 3, 17, 43, 20)),
        (b"1969-12-31T23:59:59.5Z", utc(1969, 12, 31, 23, 59, 59, 500000)),
        (b"2016-12-31T23:59:60Z", utc(2017, 1, 1)),
    ],
)
def test_rfc5424_timestamps(stamp: bytes, expected: int) -> None:
    assert ok(b"<13>1 " + stamp + b" h a p m - x").ts == expected


@pytest.mark.parametrize("zone", [b"+05:30", b"-07:00", b"+00:00", b"Z"])
def test_rfc5424_offsets_give_the_same_time_on_every_line(zone: bytes) -> None:
    # The first line with an offset takes the slow path and caches it.
    hours = {b"+05:30": -5.5, b"-07:00": 7, b"+00:00": 0, b"Z": 0}[zone]
    shift = timedelta(hours=hours)
    for micro in (1, 123456, 999999):
        stamp = b"2026-12-03T17:43:20.%06d" % micro + zone
        expected = us(datetime(2026, 12, 3, 17, 43, 20, micro, tzinfo=UTC) + shift)
        assert ok(b"<13>1 " + stamp + b" h a p m - x").ts == expected


@pytest.mark.parametrize(
    "stamp",
    [
        b"2026-13-03T17:43:20Z",
        b"2026-02-30T17:43:20Z",
        b"2026-12-03T24:00:00Z",
        b"2026-12-03T17:43:20+24:00",
        b"2026-12-03T17:43:20.Z",
        b"2026-12-03T17:43:20,5Z",
        b"2026-12-03T17:43Z",
        b"2026-12-03",
    ],
)
def test_invalid_rfc5424_timestamp_is_an_error_naming_it(stamp: bytes) -> None:
    line = failed(b"<13>1 " + stamp + b" h a p m - x")
    assert line.parse_error.startswith(f"TIMESTAMP {stamp.decode()!r}")


def test_rfc5424_header_cut_short_is_an_error_naming_the_missing_field() -> None:
    line = failed(b"<13>1 2026-12-03T17:43:20Z host app")
    assert "PROCID" in line.parse_error


def test_leading_zeros_in_pri_are_tolerated() -> None:
    line = ok(b"<013>1 - host app - - - hi")
    assert (line.facility, line.severity, line.host) == (1, 5, "host")


def test_version_1_without_a_header_is_a_plain_message() -> None:
    line = ok(b"<13>1 apple fell")
    assert line.message == "1 apple fell"
    assert line.ts == RECEIVED


# RFC 3164, section 5.4


def test_rfc3164_example_1() -> None:
    line = ok(
        b"<34>Oct 11 22:14:15 mymachine su: 'su root' failed for lonvick on /dev/pts/8"
    )
    assert (line.facility, line.severity) == (4, 2)
    assert line.ts == utc(2026, 10, 11, 22, 14, 15)
    assert (line.host, line.app_name, line.procid) == ("mymachine", "su", "")
    assert line.message == "'su root' failed for lonvick on /dev/pts/8"


def test_rfc3164_example_2_without_pri_is_an_error() -> None:
    line = failed(b"Use the BFG!")
    assert line.parse_error.startswith("no PRI")
    assert "b'Use the BFG!'" in line.parse_error


def test_rfc3164_example_2_as_relayed_takes_the_first_word_as_tag() -> None:
    # RFC 3164 4.1.3: the TAG ends at the first non-alphanumeric character.
    line = ok(b"<13>Feb  5 17:32:18 10.0.0.99 Use the BFG!")
    assert line.ts == utc(2026, 2, 5, 17, 32, 18)
    assert (line.host, line.app_name, line.message) == ("10.0.0.99", "Use", "the BFG!")


def test_rfc3164_example_3_keeps_what_follows_the_host() -> None:
    line = ok(
        b"<165>Aug 24 05:34:00 CST 1987 mymachine myproc[10]: %% It's time to make "
        b"the do-nuts.  %%  Ingredients: Mix=OK, Jeans=OK Dish=OK"
    )
    assert line.ts == utc(2026, 8, 24, 5, 34)
    assert line.host == "CST"
    assert "myproc[10]: %% It's time to make the do-nuts." in line.message


def test_rfc3164_example_4_without_a_valid_time_is_all_message() -> None:
    rest = (
        b"1990 Oct 22 10:52:01 TZ-6 scapegoat.dmz.example.org 10.1.2.3 "
        b"sched[0]: That's All Folks!"
    )
    line = ok(b"<0>" + rest)
    assert (line.facility, line.severity) == (0, 0)
    assert line.ts == RECEIVED
    assert (line.host, line.app_name) == ("", "")
    assert line.message == rest.decode()


@pytest.mark.parametrize(
    ("header", "host", "tag", "pid"),
    [
        (b"myhost myapp[42]:", "myhost", "myapp", "42"),
        (b"myhost myapp:", "myhost", "myapp", ""),
        (b"myhost myapp[42]", "myhost", "myapp", "42"),
        (b"myhost myapp", "myhost", "myapp", ""),
        (b"myapp[42]:", "", "myapp", "42"),
        (b"myapp[42]", "", "myapp", "42"),
        (b"kernel:", "", "kernel", ""),
        (b"myhost nginx:1.27/web-1[42]:", "myhost", "nginx:1.27/web-1", "42"),
    ],
)
def test_rfc3164_host_and_tag_forms(
    header: bytes, host: str, tag: str, pid: str
) -> None:
    line = ok(b"<13>Dec  3 17:43:20 " + header + b" the message")
    assert (line.host, line.app_name, line.procid) == (host, tag, pid)
    assert line.message == "the message"
    assert line.ts == utc(2026, 12, 3, 17, 43, 20)


@pytest.mark.parametrize(
    "rest",
    [
        b"Nov 14 09:00:01 myhost myapp[42]: msg",
        b"Nov 14 09:00:02 myapp[42]: msg",
        b"Nov 14 09:00:03 myhost nginx:1.27[42]: msg",
        b"Nov 14 09:00:04 myhost myapp msg",
        b"Nov 14 09:00:05.5 myhost myapp: msg",
        b"Nov 14 09:00:07.25 myapp[9]: msg",
        b"Nov 14 09:00:06 myhost myapp:",
    ],
)
def test_rfc3164_line_parses_the_same_when_its_time_was_seen_before(
    rest: bytes,
) -> None:
    # The second line takes the cached time and skips the time regex.
    first = ok(b"<13>" + rest)
    assert ok(b"<13>" + rest) == first
    assert ok(b"<13>" + rest, RECEIVED + 1).ts == first.ts
    next_year = utc(2027, 11, 20)
    assert ok(b"<13>" + rest, next_year).ts - first.ts == 365 * 86_400 * 10**6


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        (b"Dec  3 17:43:20", utc(2026, 12, 3, 17, 43, 20)),
        (b"Dec 3 17:43:20", utc(2026, 12, 3, 17, 43, 20)),
        (b"Dec 03 17:43:20", utc(2026, 12, 3, 17, 43, 20)),
        (b"Dec  3 17:43:20.25", utc(2026, 12, 3, 17, 43, 20, 250000)),
        (b"Dec  3 2024 17:43:20", utc(2024, 12, 3, 17, 43, 20)),
        (b"2026-12-03T18:43:20.5+01:00", utc(2026, 12, 3, 17, 43, 20, 500000)),
        (b"2026-12-03T17:43:20Z", utc(2026, 12, 3, 17, 43, 20)),
        (b"2026-12-03T17:43:20", utc(2026, 12, 3, 17, 43, 20)),
        (b" 2026-12-03T17:43:20Z", utc(2026, 12, 3, 17, 43, 20)),
    ],
)
def test_rfc3164_timestamp_forms(stamp: bytes, expected: int) -> None:
    line = ok(b"<13>" + stamp + b" host app[1]: msg")
    assert line.ts == expected
    assert (line.host, line.app_name, line.procid, line.message) == (
        "host",
        "app",
        "1",
        "msg",
    )


def test_rfc3164_fractions_on_lines_of_the_same_second() -> None:
    for micro in (250000, 5, 999999):
        frame = b"<13>Dec  3 17:43:20.%06d h a: m" % micro
        assert ok(frame).ts == utc(2026, 12, 3, 17, 43, 20, micro)


def test_rfc3164_time_without_year_around_new_year_is_last_year() -> None:
    received = utc(2027, 1, 1, 0, 0, 10)
    assert ok(b"<13>Dec 31 23:59:50 h a: m", received).ts == utc(
        2026, 12, 31, 23, 59, 50
    )
    assert ok(b"<13>Jan  1 00:00:05 h a: m", received).ts == utc(2027, 1, 1, 0, 0, 5)


def test_rfc3164_time_without_year_just_after_new_year_is_next_year() -> None:
    # A sender east of UTC (or a fast clock) reaches New Year before we do.
    received = utc(2026, 12, 31, 22, 0, 0)
    assert ok(b"<13>Jan  1 08:00:00 h a: m", received).ts == utc(2027, 1, 1, 8)
    assert ok(b"<13>Dec 31 21:00:00 h a: m", received).ts == utc(2026, 12, 31, 21)


def test_rfc3164_feb_29_in_a_year_without_one_is_last_years() -> None:
    received = utc(2025, 1, 15)
    assert ok(b"<13>Feb 29 10:00:00 h a: m", received).ts == utc(2024, 2, 29, 10)


def test_rfc3164_time_slightly_ahead_keeps_this_year() -> None:
    line = ok(b"<13>Dec  4 20:00:00 h a: m")
    assert line.ts == utc(2026, 12, 4, 20)


def test_rfc3164_impossible_date_stays_in_the_message() -> None:
    line = ok(b"<13>Feb 30 12:00:00 host app: msg")
    assert line.ts == RECEIVED
    assert line.message == "Feb 30 12:00:00 host app: msg"


@pytest.mark.parametrize(
    ("rest", "tag", "pid", "message"),
    [
        (b"myapp: disk full", "myapp", "", "disk full"),
        (b"my.app/worker-1[42]: disk full", "my.app/worker-1", "42", "disk full"),
        (b"myapp:", "myapp", "", ""),
        (b"myapp:disk full", "", "", "myapp:disk full"),
        (b"two words: disk full", "", "", "two words: disk full"),
        (b": disk full", "", "", ": disk full"),
    ],
)
def test_tag_without_a_time_needs_a_colon_after_one_word(
    rest: bytes, tag: str, pid: str, message: str
) -> None:
    line = ok(b"<14>" + rest)
    assert (line.host, line.app_name, line.procid, line.message) == (
        "",
        tag,
        pid,
        message,
    )
    assert line.ts == RECEIVED


def test_valid_pri_with_plain_text_is_a_message_not_an_error() -> None:
    line = ok(b"<14>just some text: no header")
    assert (line.facility, line.severity) == (1, 6)
    assert line.ts == RECEIVED
    assert (line.host, line.app_name, line.message) == (
        "",
        "",
        "just some text: no header",
    )


# Docker's syslog driver (daemon/logger/syslog)


def test_docker_rfc5424_format() -> None:
    line = ok(
        b"<30>1 2026-12-03T18:43:20+01:00 dockerhost 3f4e5a6b7c8d 4242 3f4e5a6b7c8d"
        b" - hello"
    )
    assert (line.facility, line.severity) == (3, 6)
    assert line.ts == utc(2026, 12, 3, 17, 43, 20)
    assert line.host == "dockerhost"
    assert (line.app_name, line.procid, line.msgid) == (
        "3f4e5a6b7c8d",
        "4242",
        "3f4e5a6b7c8d",
    )
    assert (line.structured_data, line.message) == ("", "hello")


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        # Go's "05.999999" drops trailing zeros, and the whole fraction at zero.
        (b"2026-12-03T17:43:20.123456Z", utc(2026, 12, 3, 17, 43, 20, 123456)),
        (b"2026-12-03T17:43:20.5Z", utc(2026, 12, 3, 17, 43, 20, 500000)),
        (b"2026-12-03T17:43:20Z", utc(2026, 12, 3, 17, 43, 20)),
        (b"2026-12-03T18:43:20.00012+01:00", utc(2026, 12, 3, 17, 43, 20, 120)),
    ],
)
def test_docker_rfc5424micro_format(stamp: bytes, expected: int) -> None:
    line = ok(b"<27>1 " + stamp + b" dockerhost web-1 4242 web-1 - oops")
    assert (line.facility, line.severity) == (3, 3)
    assert line.ts == expected
    assert (line.app_name, line.procid, line.msgid, line.message) == (
        "web-1",
        "4242",
        "web-1",
        "oops",
    )


def test_docker_rfc3164_format() -> None:
    line = ok(b"<30>Dec  3 17:43:20 dockerhost web-1[4242]: hello")
    assert line.ts == utc(2026, 12, 3, 17, 43, 20)
    assert (line.host, line.app_name, line.procid, line.message) == (
        "dockerhost",
        "web-1",
        "4242",
        "hello",
    )


def test_docker_default_format_has_no_hostname() -> None:
    line = ok(b"<30>Dec  3 17:43:20 3f4e5a6b7c8d[4242]: hello")
    assert (line.host, line.app_name, line.procid, line.message) == (
        "",
        "3f4e5a6b7c8d",
        "4242",
        "hello",
    )


@pytest.mark.parametrize(
    "data",
    [
        b"<30>1 2026-12-03T17:43:20Z dockerhost web-1 4242 web-1 - \n",
        b"<30>1 2026-12-03T17:43:20.5Z dockerhost web-1 4242 web-1 - \n",
        b"<30>Dec  3 17:43:20 dockerhost web-1[4242]: \n",
        b"<30>Dec  3 17:43:20 web-1[4242]: \n",
    ],
)
@pytest.mark.parametrize("octet_counted", [False, True])
def test_docker_empty_messages_are_valid(data: bytes, octet_counted: bool) -> None:
    if octet_counted:
        # Over TLS the driver counts octets, and counts its LF in.
        data = b"%d %s" % (len(data), data)
    (frame,) = frames_of(data)
    line = ok(frame)
    assert (line.app_name, line.procid, line.message) == ("web-1", "4242", "")


# Errors, encodings and truncation


def test_pri_out_of_range_is_an_error_naming_it() -> None:
    line = failed(b"<999>1 - - - - - - msg")
    assert line.parse_error == "PRI <999> out of range 0-191"


def test_pri_192_is_out_of_range() -> None:
    assert failed(b"<192>msg").parse_error == "PRI <192> out of range 0-191"


@pytest.mark.parametrize(
    ("frame", "start"),
    [
        (b"", "no PRI"),
        (b"no pri at all", "no PRI"),
        (b"<", "PRI not closed"),
        (b"<12", "PRI not closed"),
        (b"<1234>x", "PRI not closed"),
        (b"<>x", "PRI b'<>'"),
        (b"<1a>x", "PRI b'<1a>'"),
        (b"<-1>x", "PRI b'<-1>'"),
    ],
)
def test_frames_without_a_usable_pri_are_errors_naming_the_bytes(
    frame: bytes, start: str
) -> None:
    assert failed(frame).parse_error.startswith(start)


def test_invalid_utf8_is_replaced_and_flagged_with_raw_bytes() -> None:
    frame = b"<13>1 - h\xffst app - - - caf\xc3"
    line = ok(frame)
    assert line.invalid_utf8
    assert line.raw == frame
    assert (line.host, line.message) == ("h\ufffdst", "caf\ufffd")


def test_invalid_utf8_in_an_unparsable_frame_is_flagged_too() -> None:
    line = failed(b"\xff\xfe garbage")
    assert line.invalid_utf8
    assert line.message.startswith("\ufffd\ufffd")


def test_valid_utf8_keeps_raw_empty() -> None:
    line = ok("<13>1 - höst - - - - grüße".encode())
    assert (line.host, line.message, line.raw, line.invalid_utf8) == (
        "höst",
        "grüße",
        b"",
        False,
    )


def test_truncated_frame_is_flagged_and_parsed_as_far_as_it_goes() -> None:
    line = ok(TruncatedFrame(b"<13>1 2026-12-03T17:43:20Z h app - - - a long mess"))
    assert line.truncated
    assert (line.app_name, line.message) == ("app", "a long mess")
    assert type(line.raw) is bytes


def test_truncated_frame_cut_inside_structured_data_is_kept_raw() -> None:
    frame = TruncatedFrame(b'<13>1 - h app - - [meta a="12')
    line = failed(frame)
    assert line.truncated
    assert type(line.raw) is bytes


def test_nul_terminated_frames_from_pythons_syslog_handler() -> None:
    lines = [ok(frame) for frame in frames_of(b"<14>hello\x00<11>myapp: oops\x00")]
    assert [(ln.severity, ln.app_name, ln.message) for ln in lines] == [
        (6, "", "hello"),
        (3, "myapp", "oops"),
    ]


# Real senders on loopback


def received_over_tcp(send: Callable[[int], None]) -> bytes:
    """Listen on loopback, run ``send(port)``, return what one connection sent."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        server.settimeout(10)
        port = server.getsockname()[1]
        send(port)
        conn, _ = server.accept()
        with conn:
            conn.settimeout(10)
            data = b""
            while chunk := conn.recv(65536):
                data += chunk
    return data


def test_python_syslog_handler_over_tcp() -> None:
    def send(port: int) -> None:
        handler = logging.handlers.SysLogHandler(
            ("127.0.0.1", port), socktype=socket.SOCK_STREAM
        )
        record = logging.makeLogRecord(
            {
                "msg": "disk %s full",
                "args": ("/var",),
                "levelno": logging.ERROR,
                "levelname": "ERROR",
            }
        )
        handler.emit(record)
        handler.ident = "web-1: "
        handler.emit(record)
        handler.close()

    lines = [ok(frame) for frame in frames_of(received_over_tcp(send))]
    assert [(ln.facility, ln.severity, ln.app_name, ln.message) for ln in lines] == [
        (1, 3, "", "disk /var full"),
        (1, 3, "web-1", "disk /var full"),
    ]


@pytest.mark.parametrize("flags", [["--rfc5424", "--octet-count"], ["--rfc3164"]])
def test_util_linux_logger_over_tcp(flags: list[str]) -> None:
    def send(port: int) -> None:
        subprocess.run(
            [
                "logger",
                "--tcp",
                "--server",
                "127.0.0.1",
                "--port",
                str(port),
                "--tag",
                "web-1",
                "--id=4242",
                "--priority",
                "local3.warning",
                *flags,
                "hello from logger",
            ],
            check=True,
            timeout=10,
            # RFC 3164 times are local: make local UTC, as the parser assumes.
            env={**os.environ, "TZ": "UTC"},
        )

    (frame,) = frames_of(received_over_tcp(send))
    now = us(datetime.now(UTC))
    line = ok(frame, now)
    assert (line.facility, line.severity) == (19, 4)
    assert (line.app_name, line.procid) == ("web-1", "4242")
    assert line.message == "hello from logger"
    assert abs(line.ts - now) < 60_000_000


# Shape and purity


def test_line_fields_are_in_the_order_the_parser_builds_them() -> None:
    # parse() builds Line positionally because keywords cost twice as much.
    names = [field.name for field in dataclasses.fields(Line)][:15]
    assert names == [
        "ts",
        "received",
        "facility",
        "severity",
        "host",
        "app_name",
        "procid",
        "msgid",
        "message",
        "structured_data",
        "source",
        "parse_error",
        "invalid_utf8",
        "truncated",
        "raw",
    ]


def test_framing_and_parser_import_no_io_modules() -> None:
    code = (
        "import sys, logd.framing, logd.parser\n"
        "bad = {'asyncio', 'socket', 'selectors', 'ssl'} & set(sys.modules)\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=30)


# Properties


def assert_never_failed_inside(line: Line, frame: bytes) -> None:
    assert not line.parse_error.startswith("internal"), line.parse_error
    assert isinstance(line, Line)
    if line.parse_error or line.invalid_utf8:
        assert line.raw == frame
    assert line.truncated == (type(frame) is TruncatedFrame)


prefixes = st.sampled_from(
    [
        b"",
        b"<13>",
        b"<13>1 ",
        b"<13>1 2026-12-03T17:43:20.123456+00:00 h a p m ",
        b"<13>1 - h a p m [x",
        b"<13>Dec  3 17:43:20 ",
        b"<13>Feb 29 17:43:20 host ",
        b"<13>2026-12-03T17:43:20",
    ]
)


@settings(max_examples=300)
@given(prefixes, st.binary(max_size=80), st.booleans(), st.integers(0, 2**62))
def test_parse_never_raises_on_any_bytes(
    prefix: bytes, tail: bytes, cut: bool, received: int
) -> None:
    frame = prefix + tail
    if cut:
        frame = TruncatedFrame(frame)
    assert_never_failed_inside(parse(frame, received, SOURCE), frame)


@settings(max_examples=200)
@given(st.text(max_size=60).map(lambda t: t.encode(errors="surrogatepass")))
def test_parse_never_raises_on_any_text(frame: bytes) -> None:
    assert_never_failed_inside(
        parse(b"<13>1 " + frame, RECEIVED, SOURCE), b"<13>1 " + frame
    )


printusascii = st.characters(min_codepoint=33, max_codepoint=126)
header_fields = st.text(printusascii, min_size=1, max_size=12)
sd_names = st.text(
    st.characters(min_codepoint=33, max_codepoint=126, exclude_characters='= ]"'),
    min_size=1,
    max_size=8,
)


@st.composite
def sd_elements(draw: st.DrawFn) -> str:
    params = draw(st.lists(st.tuples(sd_names, st.text(max_size=10)), max_size=3))
    text = "[" + draw(sd_names)
    for name, value in params:
        escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")
        text += f' {name}="{escaped}"'
    return text + "]"


@st.composite
def stamps(draw: st.DrawFn) -> tuple[str, int | None]:
    """An RFC 3339 time and its epoch microseconds, or NILVALUE and None."""
    if draw(st.booleans()) and draw(st.booleans()):
        return "-", None
    when = draw(st.datetimes(datetime(1900, 1, 2), datetime(9999, 12, 30)))
    minutes = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59))
    zone = timezone(timedelta(minutes=minutes))
    when = when.replace(tzinfo=zone)
    digits = draw(st.integers(0, 6))
    micro = f"{when.microsecond:06d}"
    if digits:
        when = when.replace(microsecond=int(micro[:digits].ljust(6, "0")))
    else:
        when = when.replace(microsecond=0)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    text += "." + micro[:digits] if digits else ""
    if minutes == 0 and draw(st.booleans()):
        text += "Z"
    else:
        sign = "-" if minutes < 0 else "+"
        text += f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
    return text, us(when)


@settings(max_examples=200)
@given(
    st.integers(0, 191),
    stamps(),
    st.lists(header_fields, min_size=4, max_size=4),
    st.lists(sd_elements(), max_size=3),
    st.text(max_size=40).filter(lambda m: not m.startswith("\ufeff")),
    st.booleans(),
)
def test_rfc5424_round_trip(
    pri: int,
    stamp: tuple[str, int | None],
    header: list[str],
    elements: list[str],
    message: str,
    bom: bool,
) -> None:
    sd = "".join(elements)
    text = f"<{pri}>1 {stamp[0]} {' '.join(header)} {sd or '-'}"
    if message or bom:
        text += " " + ("\ufeff" if bom else "") + message
    line = ok(text.encode())
    nil = ["" if value == "-" else value for value in header]
    assert (line.facility, line.severity) == divmod(pri, 8)
    assert line.ts == (RECEIVED if stamp[1] is None else stamp[1])
    assert [line.host, line.app_name, line.procid, line.msgid] == nil
    assert (line.structured_data, line.message) == (sd, message)
    assert not line.invalid_utf8


hosts = st.text(st.sampled_from("abcxyz019.-"), min_size=1, max_size=10)
tags = st.text(st.sampled_from("abcXYZ059_-./"), min_size=1, max_size=10)


@settings(max_examples=200)
@given(
    st.integers(0, 191),
    st.datetimes(datetime(2000, 1, 1), datetime(2100, 1, 1)),
    st.integers(-300 * 86_400, 2 * 86_400),
    hosts,
    tags,
    st.one_of(st.none(), st.integers(0, 10**7)),
    st.text(max_size=40),
)
def test_rfc3164_round_trip(
    pri: int,
    arrival: datetime,
    skew: int,
    host: str,
    tag: str,
    pid: int | None,
    message: str,
) -> None:
    received = us(arrival.replace(tzinfo=UTC))
    sent = (arrival + timedelta(seconds=skew)).replace(microsecond=0, tzinfo=UTC)
    stamp = f"{MONTHS[sent.month - 1]} {sent.day:2d} {sent:%H:%M:%S}"
    tag_text = tag if pid is None else f"{tag}[{pid}]"
    line = ok(f"<{pri}>{stamp} {host} {tag_text}: {message}".encode(), received)
    assert (line.facility, line.severity) == divmod(pri, 8)
    assert line.ts == us(sent)
    assert (line.host, line.app_name, line.message) == (host, tag, message)
    assert line.procid == ("" if pid is None else str(pid))


header_words = st.one_of(
    st.sampled_from(["h", "a:", "a[1]", "a[1]:", "a[]:", "[a]", "a:b", "a]:", ":", ""]),
    st.text(st.sampled_from("ab1:[]"), max_size=6),
)


@settings(max_examples=300)
@given(st.lists(header_words, max_size=4).map(" ".join), st.text(max_size=10))
def test_rfc3164_shortcut_agrees_with_the_host_and_tag_rule(
    header: str, message: str
) -> None:
    # The time regex also reads the usual "HOST TAG[PID]: "; it must never
    # read a header differently from `_bsd_header`, which handles the rest.
    after = f"{header} {message}"
    line = ok(f"<13>Dec  3 17:43:20 {after}".encode())
    host, tag, pid, rest = _bsd_header(after)
    assert (line.host, line.app_name, line.procid, line.message) == (
        host,
        tag,
        pid,
        rest,
    )
