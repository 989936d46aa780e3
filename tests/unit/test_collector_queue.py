"""The collector's durable queue: record format, appends, caps, acknowledged position, recovery
from torn and corrupt data, and reading back."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from eventd.errors import CannotStart
from eventd.roles.collector import queue as queue_mod
from eventd.roles.collector.queue import ACKED_FILE, DurableQueue, QueueError, QueueFull
from eventd.roles.collector.reader import QueueReader
from eventd.roles.collector.records import HEADER_SIZE, Parser, encode, payload

SEG = 4096


def msg(i: int, size: int = 40) -> bytes:
    return payload(f"events.t{i % 3}", f"k{i}".encode(), (b"v%06d" % i).ljust(size, b"."))


def open_q(path: Path, seg: int = SEG, cap: int = 1 << 20) -> DurableQueue:
    return DurableQueue.open(str(path), seg, cap)


def read_all(q: DurableQueue, start: int | None = None) -> list:
    r = QueueReader(q, q.acked_seq if start is None else start)
    out = []
    while True:
        got = r.read(1000)
        if not got:
            break
        out.extend(got)
    r.close()
    return out


def segment_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.seg"))


# ---------------------------------------------------------------------------------------- record format

def test_record_roundtrip_and_checksum() -> None:
    data = encode(7, payload("events.click", b"key", b"\xc3\x01value"))
    records, end, problem = Parser().parse(data, 0, 7)
    assert problem is None and end == len(data)
    (r,) = records
    assert (r.seq, r.topic, r.key, r.value) == (7, "events.click", b"key", b"\xc3\x01value")
    flipped = bytearray(data)
    flipped[-1] ^= 1
    assert Parser().parse(bytes(flipped), 0, 7) == ([], 0, "checksum mismatch")


def test_parser_reports_implausible_length_wrong_seq_and_stops_at_incomplete() -> None:
    data = encode(1, msg(1)) + encode(2, msg(2))
    assert Parser().parse(data, 0, 5)[2] == "record seq 1 where 5 was expected"
    assert Parser().parse(b"\xff\xff\xff\xff" + bytes(20), 0, 0)[2].startswith("implausible record length")
    records, end, problem = Parser().parse(data[:-3], 0, 1)
    assert [r.seq for r in records] == [1] and problem is None and end == len(encode(1, msg(1)))


# ---------------------------------------------------------------------------------------- appending

def test_append_assigns_consecutive_seqs_and_reads_back_in_order(tmp_path: Path) -> None:
    q = open_q(tmp_path)
    assert q.append([msg(0), msg(1)]) == 2
    assert q.append([msg(2)]) == 3
    got = read_all(q)
    assert [(r.seq, r.key) for r in got] == [(0, b"k0"), (1, b"k1"), (2, b"k2")]
    assert got[0].value.startswith(b"v000000") and got[2].topic == "events.t2"


def test_segments_roll_and_reader_crosses_them(tmp_path: Path) -> None:
    q = open_q(tmp_path)
    for i in range(200):
        q.append([msg(i)])
    assert len(segment_files(tmp_path)) > 2
    assert [r.seq for r in read_all(q)] == list(range(200))


def test_batch_over_the_cap_is_refused_whole(tmp_path: Path) -> None:
    q = open_q(tmp_path, seg=SEG, cap=2 * SEG)
    n = 0
    while True:
        try:
            q.append([msg(n), msg(n + 1)])
        except QueueFull as exc:
            assert "full" in str(exc)
            break
        n += 2
    size = q.size_bytes
    assert size <= 2 * SEG
    with pytest.raises(QueueFull):
        q.append([msg(1)] * 50)
    assert q.size_bytes == size and q.next_seq == n
    assert [r.seq for r in read_all(q)] == list(range(n))


def test_disk_full_write_is_cut_off_and_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q = open_q(tmp_path)
    q.append([msg(0)])
    real_write = os.write

    def half_then_enospc(fd: int, data: bytes) -> int:
        if len(data) > 100:
            real_write(fd, bytes(data[:50]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(queue_mod.os, "write", half_then_enospc)
    with pytest.raises(QueueFull, match="disk .* is full"):
        q.append([msg(1), msg(2), msg(3)])
    monkeypatch.undo()
    q.append([msg(4)])
    got = read_all(q)
    assert [(r.seq, r.key) for r in got] == [(0, b"k0"), (1, b"k4")]
    q.close()
    q2 = open_q(tmp_path)   # nothing of the failed batch on disk either
    assert [r.key for r in read_all(q2)] == [b"k0", b"k4"]


def test_io_error_is_queue_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q = open_q(tmp_path)

    def eio(fd: int, data: bytes) -> int:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(queue_mod.os, "write", eio)
    with pytest.raises(QueueError, match="Input/output error") as info:
        q.append([msg(0)])
    assert not isinstance(info.value, QueueFull)


# ---------------------------------------------------------------------------------------- acknowledging

def test_acknowledged_position_persists_and_deletes_old_segments(tmp_path: Path) -> None:
    q = open_q(tmp_path)
    for i in range(300):
        q.append([msg(i)])
    before = len(segment_files(tmp_path))
    q.acknowledge(250, force=True)
    assert len(segment_files(tmp_path)) < before
    assert (tmp_path / ACKED_FILE).read_text() == '{"seq": 250}'
    q.close()
    q2 = open_q(tmp_path)
    assert q2.acked_seq == 250 and q2.next_seq == 300
    assert [r.seq for r in read_all(q2)] == list(range(250, 300))
    assert q2.append([msg(300)]) == 301


def test_a_full_disk_that_refuses_the_position_file_still_frees_acknowledged_segments(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q = open_q(tmp_path)
    for i in range(300):
        q.append([msg(i)])
    q.acknowledge(10, force=True)                   # saved: 10
    before = len(segment_files(tmp_path))

    def full(*_: object) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(queue_mod.os, "replace", full)
    q.acknowledge(250, force=True)                  # not saved: the disk is full
    assert (tmp_path / ACKED_FILE).read_text() == '{"seq": 10}'
    assert len(segment_files(tmp_path)) < before    # but the space is given back
    monkeypatch.undo()
    os.close(q._lock_fd)                            # a crash: nothing more is saved, the lock is gone
    q2 = open_q(tmp_path)
    first = q2.acked_seq
    assert 10 < first <= 250                        # the oldest remaining segment, not the stale 10
    assert [r.seq for r in read_all(q2)] == list(range(first, 300))


def test_size_shrinks_as_segments_are_acknowledged(tmp_path: Path) -> None:
    q = open_q(tmp_path, cap=4 * SEG)
    n = 0
    with pytest.raises(QueueFull):
        while True:
            q.append([msg(n)])
            n += 1
    q.acknowledge(n, force=True)
    assert q.size_bytes < 2 * SEG
    q.append([msg(n)])


def test_acknowledged_beyond_the_data_on_disk(tmp_path: Path) -> None:
    """Kafka acknowledged records a power loss then took from the disk: continue after them."""
    q = open_q(tmp_path)
    q.append([msg(i) for i in range(5)])
    q.acknowledge(5, force=True)
    q.close()
    for f in segment_files(tmp_path):
        os.truncate(f, 0)
    q2 = open_q(tmp_path)
    assert q2.next_seq == 5
    assert q2.append([msg(5)]) == 6
    assert [r.seq for r in read_all(q2)] == [5]


def test_second_process_cannot_open_the_same_directory(tmp_path: Path) -> None:
    open_q(tmp_path)
    with pytest.raises(CannotStart, match="in use"):
        open_q(tmp_path)


# ---------------------------------------------------------------------------------------- recovery

def test_torn_tail_is_quarantined_cut_off_and_never_read(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    q = open_q(tmp_path)
    q.append([msg(i) for i in range(3)])
    q.close()
    seg = segment_files(tmp_path)[-1]
    good = seg.stat().st_size
    whole = encode(3, msg(3))
    with open(seg, "ab") as fh:
        fh.write(whole[:len(whole) // 2])             # a write cut short by a crash
    q2 = open_q(tmp_path)
    assert "QUEUE CORRUPTION" in caplog.text
    assert seg.stat().st_size == good
    assert [p.stat().st_size for p in (tmp_path / "corrupt").iterdir()] == [len(whole) // 2]
    assert q2.next_seq == 3
    q2.append([msg(9)])
    assert [r.seq for r in read_all(q2)] == [0, 1, 2, 3]


def test_garbage_after_power_loss_is_skipped_by_checksum(tmp_path: Path) -> None:
    q = open_q(tmp_path)
    q.append([msg(i) for i in range(4)])
    q.close()
    seg = segment_files(tmp_path)[-1]
    data = bytearray(seg.read_bytes())
    second = len(encode(0, msg(0)))
    data[second + HEADER_SIZE + 3] ^= 0xFF          # corrupt record 1's body
    seg.write_bytes(bytes(data))
    q2 = open_q(tmp_path)
    assert [r.seq for r in read_all(q2)] == [0]
    assert q2.next_seq == 1


def test_reader_skips_a_corrupt_older_segment_and_reports_the_lost_seqs(tmp_path: Path,
                                                                        caplog: pytest.LogCaptureFixture) -> None:
    q = open_q(tmp_path)
    for i in range(200):
        q.append([msg(i)])
    q.close()
    first = segment_files(tmp_path)[0]
    data = bytearray(first.read_bytes())
    rec = len(encode(0, msg(0)))
    data[5 * rec + HEADER_SIZE + 2] ^= 0xFF          # record 5 of the first segment
    first.write_bytes(bytes(data))
    q2 = open_q(tmp_path)
    r = QueueReader(q2, 0)
    seqs = []
    while batch := r.read(1000):
        seqs.extend(x.seq for x in batch)
    second_base = int(segment_files(tmp_path)[1].name[:-4])
    assert seqs == list(range(5)) + list(range(second_base, 200))
    assert r.lost == [(5, second_base)]
    assert "QUEUE CORRUPTION" in caplog.text


def test_reader_follows_the_writer(tmp_path: Path) -> None:
    q = open_q(tmp_path)
    r = QueueReader(q, 0)
    assert r.read(10) == []
    q.append([msg(0)])
    assert [x.seq for x in r.read(10)] == [0]
    for i in range(1, 150):
        q.append([msg(i)])
    seqs = []
    while batch := r.read(7):
        seqs.extend(x.seq for x in batch)
    assert seqs == list(range(1, 150))


def test_seek_skips_acknowledged_records(tmp_path: Path) -> None:
    q = open_q(tmp_path)
    for i in range(100):
        q.append([msg(i)])
    assert [r.seq for r in read_all(q, start=42)] == list(range(42, 100))


def test_record_larger_than_the_read_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from eventd.roles.collector import reader as reader_mod
    monkeypatch.setattr(reader_mod, "READ_SIZE", 64)
    q = open_q(tmp_path)
    q.append([msg(0, size=500), msg(1, size=10)])
    assert [r.seq for r in read_all(q)] == [0, 1]


def test_no_room_for_a_new_segment_is_refusal_then_recovers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    q = open_q(tmp_path)
    while len(segment_files(tmp_path)) == 1:
        q.append([msg(q.next_seq)])
    while q.segments()[-1].size < SEG:
        q.append([msg(q.next_seq)])
    real_open = os.open

    def no_inodes(path: str, flags: int, mode: int = 0o777) -> int:
        if flags & os.O_CREAT:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_open(path, flags, mode)

    monkeypatch.setattr(queue_mod.os, "open", no_inodes)
    end = q.next_seq
    with pytest.raises(QueueFull):
        q.append([msg(end)])
    monkeypatch.undo()
    assert q.append([msg(end)]) == end + 1
    assert [r.seq for r in read_all(q)] == list(range(end + 1))
