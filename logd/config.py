"""The settings of `logd serve`, and the value formats its flags take."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from logd.errors import ConfigError

_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, name: str = "duration") -> int:
    """Read "90s", "15m", "12h", "30d", "2w" (or "0") as seconds."""
    text = text.strip()
    if text == "0":
        return 0
    match = _DURATION.match(text)
    if match is None:
        raise ConfigError(
            f"{name} {text!r}: expected a whole number and a unit s, m, h, d or w "
            "(like 15m or 30d)"
        )
    return int(match.group(1)) * _UNIT_SECONDS[match.group(2)]


_SIZE = re.compile(r"^(\d+)(|B|KB|MB|GB|TB)$", re.IGNORECASE)
_UNIT_BYTES = {
    "": 1,
    "b": 1,
    "kb": 1 << 10,
    "mb": 1 << 20,
    "gb": 1 << 30,
    "tb": 1 << 40,
}


def parse_size(text: str, name: str) -> int:
    """Read "512MB", "4GB" or a plain byte count as bytes (units of 1024)."""
    match = _SIZE.match(text.strip())
    if match is None:
        raise ConfigError(
            f"{name} {text!r}: expected a whole number of bytes, KB, MB, GB or TB"
        )
    return int(match.group(1)) * _UNIT_BYTES[match.group(2).lower()]


def parse_address(text: str, name: str) -> tuple[str, int] | None:
    """Read "HOST:PORT" or "[V6]:PORT"; "off" or "" turns a listener off."""
    text = text.strip()
    if text in ("", "off"):
        return None
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"{name} {text!r}: expected HOST:PORT with a port 1-65535")
    host = host.strip("[]") or "0.0.0.0"
    return host, int(port)


@dataclass(slots=True)
class Config:
    """Everything `logd serve` needs, after flags and environment are read."""

    udp: tuple[str, int] | None = ("127.0.0.1", 5514)
    tcp: tuple[str, int] | None = ("127.0.0.1", 5514)
    tls: tuple[str, int] | None = ("127.0.0.1", 6514)
    tls_cert: str = ""
    tls_key: str = ""
    http: tuple[str, int] | None = ("127.0.0.1", 8080)
    tokens: str = ""
    insecure: bool = False
    data: Path = Path("logd-data")
    clickhouse: str = ""
    cluster: str = ""
    retention: int = 30 * 86400
    substring_index: bool = False
    max_frame: int = 65536
    udp_allow: list[str] = field(default_factory=list)
    tcp_allow: list[str] = field(default_factory=list)
    tls_allow: list[str] = field(default_factory=list)
    batch_rows: int = 100_000
    batch_interval: float = 1.0
    fsync_interval: float = 0.2
    spool_max: int = 4 << 30
    drain_timeout: int = 30
    max_connections: int = 4096
    idle_timeout: int = 600
    frame_timeout: int = 30
    docker: list[str] = field(default_factory=list)

    @property
    def dsn(self) -> str:
        """The storage DSN: the flag, else the embedded engine under data."""
        return self.clickhouse or f"chdb://{(self.data / 'clickhouse').resolve()}"

    @property
    def tls_enabled(self) -> bool:
        return bool(self.tls and self.tls_cert and self.tls_key)

    def check(self) -> None:
        """Raise ConfigError for settings that cannot work together."""
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ConfigError("--tls-cert and --tls-key go together; got only one")
        if self.max_frame < 480:
            # RFC 5424 section 6.1: receivers must take at least 480 octets.
            raise ConfigError(f"--max-frame {self.max_frame}: must be at least 480")
        if not 1 <= self.batch_rows <= 1_000_000:
            raise ConfigError(f"--batch-rows {self.batch_rows}: expected 1-1000000")
        if not 0 <= self.fsync_interval <= 60:
            raise ConfigError(
                f"--fsync-interval {self.fsync_interval}: expected 0-60 seconds"
            )
        if self.max_connections < 1:
            raise ConfigError(f"--max-connections {self.max_connections}: must be >= 1")
        if not 0.01 <= self.batch_interval <= 60:
            raise ConfigError(
                f"--batch-interval {self.batch_interval}: expected 0.01-60 seconds"
            )
