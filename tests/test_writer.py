from __future__ import annotations

import asyncio
import time
from pathlib import Path

from logd.batch import Batcher, encode
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
    spool = Spool(tmp_path)
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
    assert writer.stats["inserted_lines"] == 1000


async def test_unreachable_storage_keeps_batches_spooled_for_the_next_start(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    down = Store("http://127.0.0.1:9", readers=1)
    spool = Spool(tmp_path)
    writer = Writer(down, spool)
    writer.start()
    batcher = Batcher(spool, writer.submit, max_rows=50)
    batcher.push(_lines(app_name, 120))
    await batcher.stop()
    assert not writer.stop(timeout=0.5)
    assert writer.stats["insert_errors"] >= 1
    assert sum(e.count for e in spool.pending()) == 120

    replay = Writer(store, Spool(tmp_path))
    replay.start()
    assert replay.stop(timeout=30)
    assert sorted(_stored(store, app_name), key=int) == sorted(
        [str(i) for i in range(120)], key=int
    )
    assert replay.stats["replayed_batches"] == 3


def test_replay_of_a_batch_already_stored_does_not_duplicate_it(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    # A crash between the insert and the spool removal leaves a stored
    # batch in the spool; replay must find it there and skip it.
    lines = _lines(app_name, 5)
    for seq, line in enumerate(lines, start=5_000_000):
        line.seq = seq
        line.app = app_name
    body = encode(lines)
    store.insert(body)
    Spool(tmp_path).write(5_000_000, 5_000_004, 5, body)

    replay = Writer(store, Spool(tmp_path))
    replay.start()
    assert replay.stop(timeout=30)
    assert len(_stored(store, app_name)) == 5
    assert replay.stats["replay_already_stored"] == 1
    assert Spool(tmp_path).pending() == []


def test_replay_of_a_partly_stored_batch_stores_it_once(
    store: Store, app_name: str, tmp_path: Path
) -> None:
    lines = _lines(app_name, 6)
    for seq, line in enumerate(lines, start=6_000_000):
        line.seq = seq
        line.app = app_name
    store.insert(encode(lines[:2]))
    Spool(tmp_path).write(6_000_000, 6_000_005, 6, encode(lines))

    replay = Writer(store, Spool(tmp_path))
    replay.start()
    assert replay.stop(timeout=30)
    assert _stored(store, app_name) == [str(i) for i in range(6)]
