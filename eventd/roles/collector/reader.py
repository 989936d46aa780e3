"""Reading the queue back in seq order, for the sender.

A reader starts at a seq (the acknowledged position, or any seq after a rewind) and returns
records in order. It never reads past a segment's ``size`` (bytes written whole), so it never
sees half a batch. A region that is not valid records — only possible after a power loss or a
disk fault — is skipped to the next segment with a loud log line; the seqs it held are reported
in :attr:`QueueReader.lost` so the sender can count them as settled (they can never be sent).
"""

from __future__ import annotations

import logging
import os

from eventd.roles.collector import stats
from eventd.roles.collector.queue import DurableQueue, Segment
from eventd.roles.collector.records import HEADER_SIZE, SEQ, Parser, Record

log = logging.getLogger(__name__)

READ_SIZE = 1 << 20


class QueueReader:
    """Not thread-safe: one reader per sender thread."""

    def __init__(self, queue: DurableQueue, start: int) -> None:
        self.queue = queue
        self._parser = Parser()
        self._seg: Segment | None = None
        self._fd = -1
        self._pos = 0            # byte offset of the next record in the segment
        self._expected = 0       # seq of the next record in the segment
        self._skip_below = 0     # records below this seq are not returned (already acknowledged)
        self._resync = False     # after a corrupt region in a segment still being written
        self.lost: list[tuple[int, int]] = []   # [from, to) seq ranges skipped as corrupt, for the sender
        self.seek(start)

    def seek(self, seq: int) -> None:
        """Continue with record ``seq`` (scans its segment from the start)."""
        segments = self.queue.segments()
        seg = segments[0] if segments else None
        for s in segments:
            if s.base <= seq:
                seg = s
        self._open(seg)
        self._skip_below = seq

    def _open(self, seg: Segment | None) -> None:
        self._close_fd()
        self._seg, self._pos, self._resync = seg, 0, False
        self._expected = seg.base if seg else self.queue.next_seq
        if seg is not None:
            try:
                self._fd = os.open(seg.path, os.O_RDONLY)
            except FileNotFoundError:  # deleted as acknowledged meanwhile: the successor takes over
                self._fd = -1

    @property
    def position(self) -> int:
        """The seq of the next record :meth:`read` returns."""
        return max(self._expected, self._skip_below)

    def read(self, max_records: int) -> list[Record]:
        """Up to ``max_records`` records in seq order; empty when caught up with the writer."""
        while self._seg is not None:
            succ = self.queue.successor(self._seg)   # looked up first: then _seg.size is final
            size = self._seg.size
            if self._fd < 0 or self._pos >= size:
                if succ is None:
                    return []
                self._advance(succ)
                continue
            records = self._read_some(size, max_records)
            if records and records[0].seq < self._skip_below:
                records = [r for r in records if r.seq >= self._skip_below]
            if records:
                return records
        return []

    def _read_some(self, size: int, max_records: int) -> list[Record]:
        """Records from the current position; always moves the position (or skips a corrupt region)."""
        buf = os.pread(self._fd, min(size - self._pos, READ_SIZE), self._pos)
        if self._resync:
            self._resync_at(buf)
        records, used, problem = self._parser.parse(buf, 0, self._expected, max_records)
        if not records and problem is None:
            whole = Parser.next_length(buf, 0)
            if whole is not None and len(buf) < whole and self._pos + whole <= size:
                buf = os.pread(self._fd, whole, self._pos)   # one record larger than READ_SIZE
                records, used, problem = self._parser.parse(buf, 0, self._expected, max_records)
            else:
                problem = "incomplete record before the end of the written data (a torn write)"
        if records:
            self._pos += used
            self._expected = records[-1].seq + 1
            return records
        self._skip_corrupt(size, problem or "unreadable record")
        return []

    def _skip_corrupt(self, size: int, problem: str) -> None:
        assert self._seg is not None
        log.error("QUEUE CORRUPTION: %s: %d bytes from offset %d are not valid records (%s) — skipped, "
                  "never sent", self._seg.path, size - self._pos, self._pos, problem)
        stats.CORRUPT_BYTES.inc(size - self._pos)
        self._pos = size
        # The writer may still append to this segment: its next record starts at ``size``
        # with a seq we cannot know, so take the seq from that record's header.
        self._resync = True

    def _resync_at(self, buf: bytes) -> None:
        if len(buf) < HEADER_SIZE + SEQ.size:
            return
        (seq,) = SEQ.unpack_from(buf, HEADER_SIZE)
        self._resync = False
        if seq > self._expected:
            self._lose(self._expected, seq)
            self._expected = seq

    def _lose(self, start: int, end: int) -> None:
        start = max(start, self._skip_below)
        if end > start:
            self.lost.append((start, end))
            log.error("QUEUE CORRUPTION: records %d..%d were lost from %s", start, end - 1,
                      self._seg.path if self._seg else self.queue.dir)

    def _advance(self, succ: Segment) -> None:
        if succ.base > self._expected:
            self._lose(self._expected, succ.base)
        self._open(succ)

    def _close_fd(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def close(self) -> None:
        self._close_fd()
        self._seg = None
