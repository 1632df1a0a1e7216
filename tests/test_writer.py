from __future__ import annotations

import asyncio
import time
from pathlib import Path

from logd.batch import Batcher, encode, span
from logd.line import Line
from logd.spool import Spool
from logd.store import Store
from logd.writer import Writer


def _lines(app: str, count: int) -> list[Line]:
    now = time.time_ns() // 1000
    return [
        Line(ts=now, received=now, app_name=app, message=str(i)) for i in range(count)
    ]


def _stored(store: Store, app: str) -> list[str]:
    rows = store.rows(
        "SELECT message FROM logs WHERE app = {a:String} ORDER BY seq", {"a": app}
    )
    return [r[0] for r in rows]


async def test_batches_reach_storage_in_order_and_leave_the_spool(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path, span)
    writer = Writer(store, spool)
    writer.start()
    batcher = Batcher(spool, writer.submit, max_rows=300, interval=0.05)
    batcher.start()
    for _ in range(10):
        batcher.push(_lines(app_name, 100))
        await asyncio.sleep(0.01)
    await batcher.stop()
    assert writer.stop(timeout=30)
    assert _stored(store, app_name) == [str(i) for i in range(100)] * 10
    assert spool.pending() == []
    assert spool.size == 0
    assert writer.stats["inserted_lines"] == 1000


async def test_a_push_larger_than_a_batch_is_split_at_max_rows(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path, span)
    sealed: list[int] = []
    batcher = Batcher(spool, lambda entry: sealed.append(entry.count), max_rows=40)
    batcher.push(_lines(app_name, 30))
    batcher.push(_lines(app_name, 100))
    await batcher.stop()
    assert sealed == [40, 40, 40, 10]


async def test_sequences_increase_across_pushes_and_restarts(tmp_path: Path) -> None:
    spool = Spool(tmp_path, span)
    batcher = Batcher(spool, lambda entry: None)
    first = _lines("a", 3)
    batcher.push(first)
    await batcher.stop()
    again = Batcher(Spool(tmp_path, span), lambda entry: None)
    second = _lines("a", 3)
    again.push(second)
    seqs = [ln.seq for ln in first + second]
    assert seqs == sorted(set(seqs))
    assert all(ln.app == "a" for ln in first)


async def test_unreachable_storage_keeps_batches_spooled_for_the_next_start(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    down = Store("http://127.0.0.1:9", readers=1)
    spool = Spool(tmp_path, span)
    writer = Writer(down, spool)
    writer.start()
    batcher = Batcher(spool, writer.submit, max_rows=50)
    batcher.push(_lines(app_name, 120))
    await batcher.stop()
    assert not writer.stop(timeout=0.5)
    assert writer.stats["insert_errors"] >= 1
    assert sum(e.count for e in spool.pending()) == 120
    assert writer.stored_seq == 0
    highest = max(e.last_seq for e in spool.pending())

    replay = Writer(store, Spool(tmp_path, span))
    replay.start()
    assert replay.stop(timeout=30)
    assert sorted(_stored(store, app_name), key=int) == sorted(
        [str(i) for i in range(120)], key=int
    )
    assert replay.stats["replayed_batches"] == 3
    assert replay.stored_seq == highest


def _spooled(tmp_path: Path, lines: list[Line]) -> None:
    spool = Spool(tmp_path, span)
    spool.append(lines[0].seq, lines[-1].seq, len(lines), encode(lines))
    spool.seal()


def _sequenced(app: str, count: int, first_seq: int) -> list[Line]:
    lines = _lines(app, count)
    for seq, line in enumerate(lines, start=first_seq):
        line.seq = seq
        line.app = app
    return lines


def test_replay_of_a_batch_already_stored_does_not_duplicate_it(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    # A crash between the insert and the spool removal leaves a stored
    # batch in the spool; replay must find it there and skip it.
    lines = _sequenced(app_name, 5, 5_000_000)
    store.insert(encode(lines))
    _spooled(tmp_path, lines)

    replay = Writer(store, Spool(tmp_path, span))
    replay.start()
    assert replay.stop(timeout=30)
    assert len(_stored(store, app_name)) == 5
    assert replay.stats["replay_already_stored"] == 1
    assert Spool(tmp_path, span).pending() == []
    # Found stored is stored: what a page may show reaches its last line.
    assert replay.stored_seq == 5_000_004


def test_replay_of_a_partly_stored_batch_stores_it_once(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    lines = _sequenced(app_name, 6, 6_000_000)
    store.insert(encode(lines[:2]))
    _spooled(tmp_path, lines)

    replay = Writer(store, Spool(tmp_path, span))
    replay.start()
    assert replay.stop(timeout=30)
    assert _stored(store, app_name) == [str(i) for i in range(6)]


async def test_stored_seq_is_the_last_sequence_of_the_newest_batch_stored(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    spool = Spool(tmp_path, span)
    writer = Writer(store, spool)
    assert writer.stored_seq == 0
    writer.start()
    batcher = Batcher(spool, writer.submit, max_rows=50, interval=0.05)
    batcher.start()
    for _ in range(3):
        batcher.push(_lines(app_name, 70))
    await batcher.stop()
    assert writer.stop(timeout=30)

    (highest,) = store.rows(
        "SELECT max(seq) FROM logs WHERE app = {a:String}", {"a": app_name}
    )[0]
    assert writer.stats["inserted_batches"] >= 5
    assert writer.stored_seq == highest
