from __future__ import annotations

import pytest

from logd import cli
from logd.config import parse_address, parse_duration
from logd.errors import ConfigError


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("0", 0),
        ("90s", 90),
        ("15m", 900),
        ("12h", 43200),
        ("30d", 2592000),
        ("2w", 1209600),
    ],
)
def test_durations_read_as_seconds(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "15", "m", "1.5h", "-3d", "3 days"])
def test_a_bad_duration_names_its_value(text: str) -> None:
    with pytest.raises(ConfigError, match="expected a whole number and a unit"):
        parse_duration(text, "--retention")


def test_addresses_take_ipv4_ipv6_and_off() -> None:
    assert parse_address("127.0.0.1:5514", "--tcp") == ("127.0.0.1", 5514)
    assert parse_address("[::1]:6514", "--tls") == ("::1", 6514)
    assert parse_address("off", "--udp") is None


@pytest.mark.parametrize("text", ["127.0.0.1", "host:0", "host:70000", "host:http"])
def test_a_bad_address_is_refused_with_the_flag_name(text: str) -> None:
    with pytest.raises(ConfigError, match="--tcp"):
        parse_address(text, "--tcp")


def test_environment_fills_flags_and_flags_win(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOGD_TCP", "127.0.0.1:7000")
    monkeypatch.setenv("LOGD_RETENTION", "7d")
    monkeypatch.setenv("LOGD_TCP_ALLOW", "10.0.0.0/8, 127.0.0.0/8")
    args = cli.build_parser().parse_args(["serve", "--retention", "1d"])
    config = cli.serve_config(args)
    assert config.tcp == ("127.0.0.1", 7000)
    assert config.retention == 86400
    assert config.tcp_allow == ["10.0.0.0/8", "127.0.0.0/8"]


def test_a_certificate_without_a_key_is_refused() -> None:
    args = cli.build_parser().parse_args(["serve", "--tls-cert", "c.pem"])
    with pytest.raises(ConfigError, match="--tls-key"):
        cli.serve_config(args)


def test_serve_exits_2_with_a_clear_message_on_a_bad_flag(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert cli.main(["serve", "--udp", "nowhere"]) == 2
    assert "--udp 'nowhere'" in capsys.readouterr().err
