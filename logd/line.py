"""The record every stage of the pipeline passes along: one syslog line."""

from __future__ import annotations

from dataclasses import dataclass, field

# RFC 3164 section 4.3.3: a message without a PRI is user.notice.
DEFAULT_FACILITY = 1
DEFAULT_SEVERITY = 5


@dataclass(slots=True)
class Line:
    """One received syslog frame, parsed or flagged, on its way to storage.

    Times are integer microseconds since the Unix epoch, UTC. `ts` is the
    time the message carries, or `received` when it carries none that parses.
    Text fields are empty strings when the message leaves them out (RFC 5424's
    NILVALUE "-" becomes "").
    """

    ts: int
    received: int
    facility: int = DEFAULT_FACILITY
    severity: int = DEFAULT_SEVERITY
    host: str = ""
    app_name: str = ""
    procid: str = ""
    msgid: str = ""
    message: str = ""
    # The STRUCTURED-DATA part exactly as sent, "" for NILVALUE.
    structured_data: str = ""
    source: str = ""
    # "" when the frame parsed; otherwise why not, and `raw` holds the frame.
    parse_error: str = ""
    # The frame was not valid UTF-8: the text fields carry U+FFFD and `raw`
    # holds the bytes as received.
    invalid_utf8: bool = False
    # The frame was longer than the configured maximum and was cut there.
    truncated: bool = False
    raw: bytes = b""
    # Filled by enrichment; `app` falls back to `app_name` at the batcher.
    app: str = ""
    service: str = ""
    container: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # Assigned by the batcher: unique and increasing, for stable ordering.
    seq: int = 0
