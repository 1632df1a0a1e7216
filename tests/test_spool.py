from __future__ import annotations

from pathlib import Path

from logd.spool import Spool


def test_written_batches_are_pending_in_sequence_order(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    spool.write(200, 260, 50, b"second")
    spool.write(100, 149, 50, b"first")
    entries = spool.pending()
    assert [(e.first_seq, e.last_seq, e.count) for e in entries] == [
        (100, 149, 50),
        (200, 260, 50),
    ]
    assert [spool.read(e) for e in entries] == [b"first", b"second"]
    assert spool.last_seq() == 260


def test_a_new_spool_on_the_same_folder_sees_what_was_left(tmp_path: Path) -> None:
    Spool(tmp_path).write(1, 3, 3, b"abc")
    again = Spool(tmp_path)
    assert [e.count for e in again.pending()] == [3]
    assert again.bytes == 3


def test_remove_forgets_the_batch_and_its_bytes(tmp_path: Path) -> None:
    spool = Spool(tmp_path)
    entry = spool.write(1, 2, 2, b"12345")
    spool.sync(entry)
    assert spool.bytes == 5
    spool.remove(entry)
    assert spool.pending() == []
    assert spool.bytes == 0


def test_an_unfinished_write_is_discarded_on_open(tmp_path: Path) -> None:
    (tmp_path / "00000000000000000001-2-2.tmp").write_bytes(b"half")
    spool = Spool(tmp_path)
    assert spool.pending() == []
    assert list(tmp_path.iterdir()) == []
