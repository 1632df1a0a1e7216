"""The tail hub: fan accepted lines out to live subscribers before storage.

The server publishes every batch of accepted lines here, on the event loop,
right after the batcher has given them their sequence, so a subscriber sees
a line a second or more before it can be queried. Publishing never waits:
each subscriber has a bounded buffer of the lines its filter matched.

When a subscriber reads more slowly than its lines arrive and its buffer
overflows, the oldest buffered lines make way for the newest and are folded
into one `Gap` that the subscriber takes before its next lines. The lines a
gap stands for are contiguous in sequence order, so a reader learns exactly
how many it missed and where they lie in storage; nobody is dropped from
silently, and memory stays bounded by the buffers.

Scope: one process. Lines are published, and subscribers see them, in
sequence order. Lines replayed from the spool at start are older than any
live line and are not published.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from types import TracebackType

from logd import log
from logd.errors import ConfigError
from logd.line import Line
from logd.metrics import Metrics

Matcher = Callable[[Line], bool]

DEFAULT_BUFFER = 10_000
# How long `Hub.close` waits for subscribers to say goodbye to their peers.
_CLOSE_SECONDS = 5.0


@dataclass(slots=True)
class Gap:
    """Lines a subscriber's buffer could not hold, contiguous in sequence.

    Times are unix microseconds; `first_*` and `last_*` are the first and the
    last skipped line, so (ts, seq) of either end makes a storage cursor.
    """

    skipped: int
    first_ts: int
    first_seq: int
    last_ts: int
    last_seq: int


class Subscription:
    """One subscriber's filter, buffer and pending gap.

    Get it from `Hub.subscribe` and use it as a context manager, or call
    `close` when done. Read with `wait` then `take`.
    """

    def __init__(self, hub: Hub, matches: Matcher, buffer: int) -> None:
        self.matches = matches
        self.buffer = buffer
        # Set when the hub shuts down; what is buffered may still be taken.
        self.closing = False
        # Set when the filter raised and the hub ended the subscription.
        self.failed = False
        # The newest line published before this subscription began.
        self.after_seq = hub.last_seq
        self._hub = hub
        self._lines: deque[Line] = deque()
        self._gap: Gap | None = None
        self._ready = asyncio.Event()

    def __enter__(self) -> Subscription:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def pending(self) -> int:
        """Lines buffered now, not counting a gap."""
        return len(self._lines)

    async def wait(self, timeout: float | None = None) -> bool:
        """Wait until lines, a gap or closing are ready; False on timeout."""
        if self._lines or self._gap is not None or self.closing:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._ready.wait()
        except TimeoutError:
            return False
        return True

    def take(self, limit: int) -> tuple[Gap | None, list[Line]]:
        """Take the pending gap, if any, and then up to `limit` lines.

        The gap comes first: the lines it stands for came before the lines
        still buffered.
        """
        gap, self._gap = self._gap, None
        lines = self._lines
        if len(lines) <= limit:
            taken = list(lines)
            lines.clear()
        else:
            taken = [lines.popleft() for _ in range(limit)]
        if not lines and not self.closing:
            self._ready.clear()
        return gap, taken

    def close(self) -> None:
        """Stop receiving lines and leave the hub."""
        self._hub._remove(self)

    def _offer(self, lines: list[Line]) -> None:
        matches = self.matches
        picked = [line for line in lines if matches(line)]
        if not picked:
            return
        self._lines.extend(picked)
        excess = len(self._lines) - self.buffer
        if excess > 0:
            self._drop(excess)
        self._ready.set()

    def _drop(self, count: int) -> None:
        lines = self._lines
        first = lines[0]
        for _ in range(count - 1):
            lines.popleft()
        last = lines.popleft()
        gap = self._gap
        if gap is None:
            self._gap = Gap(count, first.ts, first.seq, last.ts, last.seq)
            self._hub._gaps[()] += 1
        else:
            gap.skipped += count
            gap.last_ts, gap.last_seq = last.ts, last.seq
        self._hub._skipped[()] += count

    def _shut(self) -> None:
        self.closing = True
        self._ready.set()


class Hub:
    """Live subscribers and the lines published to them.

    `publish` is called on the event loop for every batch of accepted lines
    after they got their sequence; `close` ends every subscription cleanly
    when the server stops.
    """

    def __init__(self, metrics: Metrics, *, buffer: int = DEFAULT_BUFFER) -> None:
        if buffer < 1:
            raise ConfigError(f"tail buffer {buffer}: expected at least 1 line")
        self.buffer = buffer
        # The sequence of the newest line published, 0 before the first.
        self.last_seq = 0
        self.closing = False
        self._closing = asyncio.Event()
        self._subscribers: set[Subscription] = set()
        self._empty = asyncio.Event()
        self._empty.set()
        self._subscriptions = metrics.counter(
            "logd_tail_subscriptions", "Live tail subscriptions opened"
        )
        self._gaps = metrics.counter(
            "logd_tail_gaps", "Gaps: a tail subscriber's buffer overflowed"
        )
        self._skipped = metrics.counter(
            "logd_tail_skipped_lines", "Lines slow tail subscribers skipped in gaps"
        )
        self._failed = metrics.counter(
            "logd_tail_failed", "Tail subscriptions ended because their filter failed"
        )
        metrics.gauge(
            "logd_tail_subscribers",
            "Live tail subscribers now",
            lambda: {(): float(len(self._subscribers))},
        )

    @property
    def subscribers(self) -> int:
        """How many subscriptions are open."""
        return len(self._subscribers)

    def subscribe(self, matches: Matcher, buffer: int | None = None) -> Subscription:
        """Start receiving every line published from now on that `matches`.

        `buffer` (at most the hub's) bounds the lines held for this
        subscriber. The subscription's `after_seq` is the newest line
        published before it began: everything after it is delivered.
        """
        size = self.buffer if buffer is None else max(1, min(buffer, self.buffer))
        subscription = Subscription(self, matches, size)
        if self.closing:
            subscription._shut()
            return subscription
        self._subscribers.add(subscription)
        self._empty.clear()
        self._subscriptions[()] += 1
        return subscription

    def passed(self, last_seq: int) -> None:
        """Note lines stored without being published, as none subscribed.

        A subscription that begins later starts after them, so a resume
        reads them from storage.
        """
        self.last_seq = last_seq

    def publish(self, lines: list[Line]) -> None:
        """Offer lines, in sequence order, to every subscriber. Never waits."""
        if not lines:
            return
        self.last_seq = lines[-1].seq
        if not self._subscribers:
            return
        failed: list[Subscription] = []
        for subscription in self._subscribers:
            try:
                subscription._offer(lines)
            except Exception:
                # A filter that raises must not break ingest for everyone.
                log.tail.exception("tail filter failed; ending that subscription")
                failed.append(subscription)
        for subscription in failed:
            self._failed[()] += 1
            subscription.failed = True
            subscription._shut()
            self._remove(subscription)

    async def close(self, timeout: float = _CLOSE_SECONDS) -> None:
        """Tell every subscriber to finish, and wait until they have left.

        Subscribers take what they still hold, then close their connection;
        one that does not leave within `timeout` seconds is left behind.
        """
        self.closing = True
        self._closing.set()
        for subscription in self._subscribers:
            subscription._shut()
        try:
            async with asyncio.timeout(timeout):
                await self._empty.wait()
        except TimeoutError:
            log.tail.warning(
                "%d tail subscribers did not close within %.0fs",
                len(self._subscribers),
                timeout,
            )

    async def wait_closing(self) -> None:
        """Return once `close` has been called."""
        await self._closing.wait()

    def _remove(self, subscription: Subscription) -> None:
        self._subscribers.discard(subscription)
        if not self._subscribers:
            self._empty.set()
