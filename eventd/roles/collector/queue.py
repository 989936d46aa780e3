"""The durable local queue: segment files of checksummed records (``records.py``) in one directory.

Contract:
- :meth:`DurableQueue.append` writes a batch of records with one ``write`` and returns only when
  the bytes are in the file (the page cache: safe from a process crash). Durability against power
  loss is the :class:`~eventd.roles.collector.syncer.Syncer`'s job (the fsync policy).
- A batch is all or nothing: if it would take the queue over ``max_size`` it is refused whole
  (:class:`QueueFull`), and a failed write (disk full, I/O error) is truncated away and refused too.
- The *acknowledged position* ``acked_seq`` (every record below it is in Kafka) is persisted in
  the ``acked`` file; segments wholly below it are deleted. A crash resends at most the records
  from the persisted position (or the oldest remaining segment, if that is later) on.
- Opening a directory recovers it: a torn or corrupt tail of the last segment (power loss) is
  detected by checksum, moved to ``corrupt/`` and cut off, with a loud log line; never replayed.

Threads: one writer (the input loop) calls ``append``; the sender thread reads (``reader.py``) and
calls ``acknowledge``; the syncer thread calls ``sync_work``. Shared state is guarded by ``_lock``.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import threading
import time
from dataclasses import dataclass

from eventd.errors import CannotStart, EventdError
from eventd.roles.collector import stats
from eventd.roles.collector.records import Parser, frame

log = logging.getLogger(__name__)

SUFFIX = ".seg"
ACKED_FILE = "acked"
LOCK_FILE = ".lock"
ACK_PERSIST_INTERVAL = 0.2   # seconds between writes of the acked file while acks flow
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)


class QueueError(EventdError):
    """A batch could not be appended (I/O error); nothing of it is in the queue."""


class QueueFull(QueueError):
    """The queue is at ``max_size`` (or the disk is full); the batch was refused whole."""


@dataclass(eq=False)
class Segment:
    """One segment file. ``size`` counts bytes written whole (readers never read past it)."""

    base: int                 # seq of its first record
    path: str
    size: int = 0
    next_seq: int = 0         # seq after its last record
    fd: int = -1              # write fd, only for the active segment (then handed to the syncer)


class DurableQueue:
    """Append-only segment log with an acknowledged position; see the module docstring."""

    def __init__(self, directory: str, segment_size: int, max_size: int) -> None:
        self.dir, self.segment_size, self.max_size = directory, segment_size, max_size
        self._lock = threading.Lock()
        self._segments: list[Segment] = []
        self._bytes = 0
        self._next = 0
        self.acked_seq = 0
        self._persisted_ack = -1
        self._ack_written_at = 0.0
        self._retired: list[int] = []       # write fds of rolled segments, for the syncer to sync and close
        self._dir_dirty = False             # a segment was created or deleted since the last sync
        self._lock_fd = -1
        self._closed = False

    # ------------------------------------------------------------------ opening and recovery

    @classmethod
    def open(cls, directory: str, segment_size: int, max_size: int) -> "DurableQueue":
        """Open (creating) ``directory``, recover it, and make it ready for appends."""
        q = cls(directory, segment_size, max_size)
        try:
            os.makedirs(os.path.join(directory, "corrupt"), exist_ok=True)
            q._lock_dir()
            q._recover()
        except OSError as exc:
            q.close()
            raise CannotStart(f"queue directory {directory}: {exc.strerror or exc}") from None
        return q

    def _lock_dir(self) -> None:
        self._lock_fd = os.open(os.path.join(self.dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CannotStart(f"queue directory {self.dir} is in use by another collector process") from None

    def _recover(self) -> None:
        bases = sorted(int(n[:-len(SUFFIX)]) for n in os.listdir(self.dir)
                       if n.endswith(SUFFIX) and n[:-len(SUFFIX)].isdigit())
        self._segments = [Segment(b, self._path(b)) for b in bases]
        for seg in self._segments:
            seg.size = os.path.getsize(seg.path)
        first = self._segments[0].base if self._segments else 0
        self.acked_seq = max(self._read_acked(), first)
        self._persisted_ack = self.acked_seq
        self._drop_acked_segments()
        self._next = self._recover_last() if self._segments else self.acked_seq
        if self._next < self.acked_seq:
            # Kafka acknowledged records this disk lost (power loss with fsync off): continue after them.
            log.warning("queue %s: acknowledged position %d is beyond the last record on disk (%d)",
                        self.dir, self.acked_seq, self._next)
            self._next = self.acked_seq
        self._bytes = sum(s.size for s in self._segments)
        if not self._segments or self._segments[-1].next_seq != self._next:
            self._new_segment()
        else:
            last = self._segments[-1]
            last.fd = os.open(last.path, os.O_WRONLY | os.O_APPEND)
        log.info("queue %s: %d segment(s), %d bytes, records %d..%d not yet acknowledged by Kafka",
                 self.dir, len(self._segments), self._bytes, self.acked_seq, self._next - 1)

    def _read_acked(self) -> int:
        try:
            with open(os.path.join(self.dir, ACKED_FILE), encoding="utf-8") as fh:
                return int(json.load(fh)["seq"])
        except FileNotFoundError:
            return 0
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("queue %s: unreadable %s file (%s): resending from the oldest segment",
                      self.dir, ACKED_FILE, exc)
            return 0

    def _recover_last(self) -> int:
        """Validate the last segment whole; quarantine and cut off whatever follows its last good record."""
        last = self._segments[-1]
        with open(last.path, "rb") as fh:
            data = fh.read()
        records, pos, problem = Parser().parse(data, 0, last.base)
        if pos < len(data):
            self._quarantine(last, data, pos, problem or "incomplete record (a torn write)")
        last.size, last.next_seq = pos, last.base + len(records)
        return last.next_seq

    def _quarantine(self, seg: Segment, data: bytes, pos: int, reason: str) -> None:
        dest = os.path.join(self.dir, "corrupt", f"{os.path.basename(seg.path)}.{pos}")
        try:
            with open(dest, "wb") as fh:
                fh.write(data[pos:])
        except OSError as exc:     # a full disk must not keep the collector from starting
            dest = f"nowhere ({exc.strerror})"
        os.truncate(seg.path, pos)
        log.error("QUEUE CORRUPTION: %s: %d bytes from offset %d are not valid records (%s) — the tail of a "
                  "write cut short by a crash or power loss; moved to %s and cut off, never sent",
                  seg.path, len(data) - pos, pos, reason, dest)
        stats.CORRUPT_BYTES.inc(len(data) - pos)

    # ------------------------------------------------------------------ appending

    def append(self, payloads: list[bytes]) -> int:
        """Write one record per payload; returns the seq after the last one (the batch's end).

        Raises :class:`QueueFull` when the batch does not fit under ``max_size`` or the disk is full,
        :class:`QueueError` on another write failure; in both cases nothing of the batch remains."""
        if self._closed:
            raise QueueError("the queue is closed")
        seg = self._segments[-1]
        if seg.size >= self.segment_size or seg.fd < 0:
            try:
                seg = self._roll()
            except OSError as exc:
                if exc.errno in _DISK_FULL:
                    raise QueueFull(f"the disk of {self.dir} is full: {exc.strerror}") from None
                raise QueueError(f"cannot start a new segment in {self.dir}: {exc.strerror}") from None
        seq = self._next
        parts: list[bytes] = []
        add = parts.append
        for data in payloads:
            head, s = frame(seq, data)
            add(head)
            add(s)
            add(data)
            seq += 1
        blob = b"".join(parts)
        if self._bytes + len(blob) > self.max_size:
            raise QueueFull(f"the queue is full ({self._bytes} of {self.max_size} bytes): Kafka is not taking events")
        self._write(seg, blob)
        with self._lock:
            seg.size += len(blob)
            seg.next_seq = self._next = seq
            self._bytes += len(blob)
        return seq

    def _write(self, seg: Segment, blob: bytes) -> None:
        view, done = memoryview(blob), 0
        try:
            while done < len(blob):
                done += os.write(seg.fd, view[done:])
        except OSError as exc:
            self._undo_write(seg, exc)
            if exc.errno in _DISK_FULL:
                raise QueueFull(f"the disk of {self.dir} is full: {exc.strerror}") from None
            raise QueueError(f"cannot write to {seg.path}: {exc.strerror}") from None

    def _undo_write(self, seg: Segment, exc: OSError) -> None:
        try:
            os.ftruncate(seg.fd, seg.size)
        except OSError as again:
            # The partial batch stays in the file; readers stop at seg.size and recovery cuts it off.
            log.error("queue %s: cannot cut off a failed write (%s, then %s): starting a new segment",
                      seg.path, exc.strerror, again.strerror)
            try:
                self._roll()
            except OSError:
                pass        # the segment has no write fd now: the next append tries again

    def _roll(self) -> Segment:
        """Start a new segment at the next seq; the old write fd goes to the syncer."""
        old = self._segments[-1]
        with self._lock:
            if old.fd >= 0:
                self._retired.append(old.fd)
            old.fd = -1
        return self._new_segment()

    def _new_segment(self) -> Segment:
        seg = Segment(self._next, self._path(self._next), next_seq=self._next)
        seg.fd = os.open(seg.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_TRUNC, 0o644)
        with self._lock:
            if self._segments and self._segments[-1].path == seg.path:  # an empty segment started over
                self._bytes -= self._segments.pop().size
            self._segments.append(seg)
            self._dir_dirty = True
        return seg

    def _path(self, base: int) -> str:
        return os.path.join(self.dir, f"{base:020d}{SUFFIX}")

    # ------------------------------------------------------------------ for the syncer

    def sync_work(self) -> tuple[int, list[int], list[int], bool]:
        """What an fsync must cover now: (end seq, fds to sync, of them the retired ones to close
        afterwards, whether the directory changed). The caller owns the retired fds."""
        with self._lock:
            retired, self._retired = self._retired, []
            active = self._segments[-1].fd if self._segments else -1
            dir_dirty, self._dir_dirty = self._dir_dirty, False
            return self._next, retired + ([active] if active >= 0 else []), retired, dir_dirty

    # ------------------------------------------------------------------ for the reader and sender

    @property
    def next_seq(self) -> int:
        return self._next

    @property
    def size_bytes(self) -> int:
        return self._bytes

    @property
    def closed(self) -> bool:
        return self._closed

    def segments(self) -> list[Segment]:
        """A snapshot of the segment list, oldest first."""
        with self._lock:
            return list(self._segments)

    def successor(self, seg: Segment) -> Segment | None:
        """The segment after ``seg`` (then ``seg`` is complete), or None while ``seg`` is the active one."""
        with self._lock:
            try:
                i = self._segments.index(seg)
            except ValueError:
                return None
            return self._segments[i + 1] if i + 1 < len(self._segments) else None

    def acknowledge(self, seq: int, force: bool = False) -> None:
        """Every record below ``seq`` is in Kafka. Persists the position (at most every
        ``ACK_PERSIST_INTERVAL`` unless ``force``) and deletes segments wholly below it."""
        if seq > self.acked_seq:
            self.acked_seq = seq
        now = time.monotonic()
        if self.acked_seq == self._persisted_ack or (not force and now - self._ack_written_at < ACK_PERSIST_INTERVAL):
            return
        self._write_acked(self.acked_seq)
        self._ack_written_at = now
        self._drop_acked_segments()

    def _write_acked(self, seq: int) -> None:
        path = os.path.join(self.dir, ACKED_FILE)
        tmp = path + ".tmp"
        try:
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump({"seq": seq}, fh)
            os.replace(tmp, path)
            self._persisted_ack = seq
        except OSError as exc:  # a stale position only means more resends after a crash
            log.warning("queue %s: cannot save the acknowledged position: %s", self.dir, exc.strerror)

    def _drop_acked_segments(self) -> None:
        """Delete segments whose every record is below the acknowledged position.

        Also when saving the position failed: on a full disk, saving needs a new file and
        deleting segments is what frees the disk (found by the fault suite: a full tmpfs never
        drained). Safe, because every record of a deleted segment is in Kafka and reopening
        starts at the oldest remaining segment when the saved position is older (``_recover``)."""
        while True:
            with self._lock:
                if len(self._segments) < 2 or self._segments[1].base > self.acked_seq:
                    return
                seg = self._segments.pop(0)
                self._bytes -= seg.size
                self._dir_dirty = True
            try:
                os.unlink(seg.path)
            except OSError as exc:
                if exc.errno != errno.ENOENT:
                    log.warning("queue %s: cannot delete %s: %s", self.dir, seg.path, exc.strerror)

    # ------------------------------------------------------------------ closing

    def close(self) -> None:
        """Persist the acknowledged position and close the write fd (the syncer syncs first)."""
        if self._closed:
            return
        self._closed = True
        if self._segments and self._persisted_ack != self.acked_seq:
            self._write_acked(self.acked_seq)
        with self._lock:
            fds = self._retired + [s.fd for s in self._segments if s.fd >= 0]
            self._retired = []
            for s in self._segments:
                s.fd = -1
        for fd in fds:
            os.close(fd)
        if self._lock_fd >= 0:
            os.close(self._lock_fd)
            self._lock_fd = -1


def fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
