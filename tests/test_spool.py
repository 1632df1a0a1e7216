from __future__ import annotations

from pathlib import Path

from logd.batch import encode, span
from logd.line import Line
from logd.spool import Spool, fsync_and_close


def _chunk(first_seq: int, count: int) -> bytes:
    now = 1_796_000_000_000_000
    lines = [
        Line(ts=now, received=now, app="a", message=f"m{i}", seq=first_seq + i)
        for i in range(count)
    ]
    return encode(lines)


def _append(spool: Spool, first_seq: int, count: int) -> None:
    spool.append(first_seq, first_seq + count - 1, count, _chunk(first_seq, count))


def test_sealed_segments_are_pending_in_sequence_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, span)
    _append(spool, 100, 30)
    _append(spool, 130, 20)
    first = spool.seal()
    _append(spool, 200, 5)
    second = spool.seal()
    assert first is not None and second is not None
    assert [(e.first_seq, e.last_seq, e.count) for e in spool.pending()] == [
        (100, 149, 50),
        (200, 204, 5),
    ]
    assert spool.last_seq() == 204
    assert spool.seal() is None


def test_a_segment_body_is_its_chunks_in_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path, span)
    _append(spool, 1, 2)
    _append(spool, 3, 4)
    entry = spool.seal()
    assert entry is not None
    assert entry.path.read_bytes() == _chunk(1, 2) + b"\n" + _chunk(3, 4) + b"\n"


def test_size_counts_open_and_sealed_bytes_until_removed(tmp_path: Path) -> None:
    spool = Spool(tmp_path, span)
    _append(spool, 1, 3)
    open_size = spool.size
    assert open_size == len(_chunk(1, 3)) + 1
    entry = spool.seal()
    assert entry is not None
    assert spool.size == open_size
    spool.remove(entry)
    assert spool.size == 0
    assert spool.pending() == []


def test_a_segment_left_open_by_a_crash_is_sealed_on_open(tmp_path: Path) -> None:
    spool = Spool(tmp_path, span)
    _append(spool, 10, 3)
    _append(spool, 13, 2)
    # No seal: the process died here. The next start recovers the segment.
    again = Spool(tmp_path, span)
    assert [(e.first_seq, e.last_seq, e.count) for e in again.pending()] == [
        (10, 14, 5)
    ]
    assert again.size == spool.size


def test_a_half_written_chunk_is_cut_and_the_whole_ones_kept(tmp_path: Path) -> None:
    spool = Spool(tmp_path, span)
    _append(spool, 1, 4)
    [segment] = list(tmp_path.iterdir())
    with open(segment, "ab") as f:
        f.write(_chunk(5, 3)[:40])
    again = Spool(tmp_path, span)
    [entry] = again.pending()
    assert (entry.first_seq, entry.last_seq, entry.count) == (1, 4, 4)
    assert entry.path.read_bytes() == _chunk(1, 4) + b"\n"


def test_an_empty_open_segment_is_dropped(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000001.open").write_bytes(b"")
    spool = Spool(tmp_path, span)
    assert spool.pending() == []
    assert list(tmp_path.iterdir()) == []


def test_sync_forces_the_open_segment_and_is_a_no_op_when_clean(tmp_path: Path) -> None:
    spool = Spool(tmp_path, span)
    assert spool.unsynced() is None
    _append(spool, 1, 1)
    first = spool.unsynced()
    assert first is not None
    fsync_and_close(first)
    assert spool.unsynced() is None
    _append(spool, 2, 1)
    fd = spool.unsynced()
    assert fd is not None
    spool.seal()
    # The duplicate outlives the sealed segment's own descriptor.
    fsync_and_close(fd)
