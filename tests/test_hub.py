"""The tail hub: fan-out by filter, bounded buffers, exact gaps, clean close."""

from __future__ import annotations

import asyncio

import pytest

from logd.errors import ConfigError
from logd.hub import Hub
from logd.line import Line
from logd.metrics import Metrics

BASE_SEQ = 1_000_000


def _lines(first: int, count: int, app: str = "web") -> list[Line]:
    return [
        Line(ts=BASE_SEQ + i, received=BASE_SEQ + i, app=app, seq=BASE_SEQ + i)
        for i in range(first, first + count)
    ]


def _seqs(lines: list[Line]) -> list[int]:
    return [line.seq for line in lines]


def _is_web(line: Line) -> bool:
    return line.app == "web"


async def test_publishing_without_subscribers_only_remembers_the_newest_seq() -> None:
    hub = Hub(Metrics())
    hub.publish(_lines(0, 3))
    assert hub.last_seq == BASE_SEQ + 2
    assert hub.subscribers == 0


async def test_a_subscriber_gets_only_matching_lines_published_after_it_joined() -> (
    None
):
    hub = Hub(Metrics())
    hub.publish(_lines(0, 2))
    with hub.subscribe(_is_web) as subscription:
        assert subscription.after_seq == BASE_SEQ + 1
        hub.publish(_lines(2, 2) + _lines(4, 2, app="db") + _lines(6, 1))
        assert await subscription.wait(timeout=1)
        gap, lines = subscription.take(100)
    assert gap is None
    assert _seqs(lines) == [BASE_SEQ + 2, BASE_SEQ + 3, BASE_SEQ + 6]
    assert hub.subscribers == 0


async def test_wait_times_out_when_nothing_matches() -> None:
    hub = Hub(Metrics())
    with hub.subscribe(_is_web) as subscription:
        hub.publish(_lines(0, 5, app="db"))
        assert not await subscription.wait(timeout=0.05)


async def test_a_waiting_subscriber_wakes_when_a_line_is_published() -> None:
    hub = Hub(Metrics())
    with hub.subscribe(_is_web) as subscription:
        waiter = asyncio.create_task(subscription.wait(timeout=30))
        await asyncio.sleep(0)
        assert not waiter.done()
        hub.publish(_lines(0, 1))
        assert await waiter


async def test_an_overflowing_buffer_keeps_the_newest_lines_and_counts_a_gap() -> None:
    metrics = Metrics()
    hub = Hub(metrics, buffer=10)
    with hub.subscribe(_is_web) as subscription:
        hub.publish(_lines(0, 7))
        hub.publish(_lines(7, 18))
        gap, lines = subscription.take(100)
    assert gap is not None
    assert gap.skipped == 15
    assert (gap.first_seq, gap.last_seq) == (BASE_SEQ, BASE_SEQ + 14)
    assert (gap.first_ts, gap.last_ts) == (BASE_SEQ, BASE_SEQ + 14)
    assert _seqs(lines) == list(range(BASE_SEQ + 15, BASE_SEQ + 25))
    assert metrics.value("logd_tail_gaps") == 1
    assert metrics.value("logd_tail_skipped_lines") == 15


async def test_gaps_before_a_take_merge_and_a_later_overflow_starts_a_new_gap() -> None:
    metrics = Metrics()
    hub = Hub(metrics, buffer=4)
    with hub.subscribe(_is_web) as subscription:
        for first in range(0, 12, 3):
            hub.publish(_lines(first, 3))
        first_gap, first_lines = subscription.take(2)
        second_gap, second_lines = subscription.take(2)
        hub.publish(_lines(12, 6))
        third_gap, third_lines = subscription.take(100)
    assert first_gap is not None and first_gap.skipped == 8
    assert _seqs(first_lines) == [BASE_SEQ + 8, BASE_SEQ + 9]
    assert second_gap is None
    assert _seqs(second_lines) == [BASE_SEQ + 10, BASE_SEQ + 11]
    assert third_gap is not None
    assert (third_gap.skipped, third_gap.first_seq) == (2, BASE_SEQ + 12)
    assert _seqs(third_lines) == list(range(BASE_SEQ + 14, BASE_SEQ + 18))
    # Every line is either taken or counted in exactly one gap.
    taken = len(first_lines) + len(second_lines) + len(third_lines)
    assert taken + first_gap.skipped + third_gap.skipped == 18
    assert metrics.value("logd_tail_gaps") == 2
    assert metrics.value("logd_tail_skipped_lines") == 10


async def test_a_stalled_subscriber_never_holds_more_than_its_buffer() -> None:
    hub = Hub(Metrics(), buffer=100)
    with (
        hub.subscribe(_is_web) as stalled,
        hub.subscribe(_is_web, buffer=7) as small,
    ):
        for first in range(0, 100_000, 1000):
            hub.publish(_lines(first, 1000))
            assert stalled.pending <= 100
            assert small.pending <= 7
        gap, lines = stalled.take(1000)
        small_gap, _ = small.take(1000)
    assert gap is not None and gap.skipped + len(lines) == 100_000
    assert small_gap is not None and small_gap.skipped == 100_000 - 7


async def test_a_subscription_cannot_ask_for_more_buffer_than_the_hub_allows() -> None:
    hub = Hub(Metrics(), buffer=50)
    with hub.subscribe(_is_web, buffer=1_000_000) as subscription:
        assert subscription.buffer == 50


async def test_a_failing_filter_ends_only_its_own_subscription() -> None:
    metrics = Metrics()
    hub = Hub(metrics)

    def broken(line: Line) -> bool:
        raise ValueError("broken filter")

    with hub.subscribe(broken) as bad, hub.subscribe(_is_web) as good:
        hub.publish(_lines(0, 3))
        assert bad.closing and bad.failed
        assert not good.failed
        assert hub.subscribers == 1
        _, lines = good.take(10)
    assert len(lines) == 3
    assert metrics.value("logd_tail_failed") == 1


async def test_close_wakes_subscribers_and_waits_until_they_leave() -> None:
    hub = Hub(Metrics())
    subscription = hub.subscribe(_is_web)
    hub.publish(_lines(0, 2))
    taken: list[Line] = []

    async def reader() -> None:
        while await subscription.wait(timeout=30):
            _, lines = subscription.take(100)
            taken.extend(lines)
            if subscription.closing and not lines:
                subscription.close()
                return

    task = asyncio.create_task(reader())
    await hub.close(timeout=30)
    await task
    assert len(taken) == 2
    assert hub.subscribers == 0
    late = hub.subscribe(_is_web)
    assert late.closing
    assert hub.subscribers == 0


async def test_close_gives_up_on_a_subscriber_that_never_leaves() -> None:
    hub = Hub(Metrics())
    subscription = hub.subscribe(_is_web)
    await hub.close(timeout=0.05)
    assert subscription.closing
    assert hub.subscribers == 1


async def test_metrics_count_subscribers_and_subscriptions() -> None:
    metrics = Metrics()
    hub = Hub(metrics)
    with hub.subscribe(_is_web), hub.subscribe(_is_web):
        assert metrics.value("logd_tail_subscribers") == 2
    assert metrics.value("logd_tail_subscribers") == 0
    assert metrics.value("logd_tail_subscriptions") == 2
    assert b"logd_tail_gaps_total" in metrics.exposition()


def test_a_hub_needs_room_for_at_least_one_line() -> None:
    with pytest.raises(ConfigError, match="buffer 0"):
        Hub(Metrics(), buffer=0)
