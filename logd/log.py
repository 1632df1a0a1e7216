"""Every logger logd and its HTTP side use, declared in one place.

`limited` keeps a flood of the same warning (a sender reconnecting in a
loop, storage down for an hour) to one line per key and interval, saying
how many it held back.
"""

from __future__ import annotations

import logging
import time

source = logging.getLogger("logd.source")
store = logging.getLogger("logd.store")
spool = logging.getLogger("logd.spool")
enrich = logging.getLogger("logd.enrich")
server = logging.getLogger("logd.server")
api = logging.getLogger("query.api")
tail = logging.getLogger("query.tail")

_INTERVAL = 10.0
# key -> (monotonic time of the last line logged, lines held back since)
_last: dict[str, tuple[float, int]] = {}


def limited(
    logger: logging.Logger, key: str, message: str, *args: object, level: int = 30
) -> None:
    """Log at most once per key every ten seconds; count what is held back."""
    now = time.monotonic()
    logged_at, held = _last.get(key, (0.0, 0))
    if now - logged_at < _INTERVAL:
        _last[key] = (logged_at, held + 1)
        return
    if len(_last) > 10_000:
        _last.clear()
    _last[key] = (now, 0)
    if held:
        message += " (and %d more like it)"
        args = (*args, held)
    logger.log(level, message, *args)
