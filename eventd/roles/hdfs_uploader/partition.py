"""One assigned partition: cutting its stream into flushes.

Every consumed offset belongs to exactly one flush, records or not (a dead-lettered message
still moves the range on), so a partition's flush ranges tile its offsets without gaps or
overlaps. A flush is sealed by size, by age, when staging is full, or — for the first flush
after a restart — exactly at the end recorded before the crash (``forced_end``), so that its
regeneration has the same range, hence the same file names, as what may already be in HDFS.
"""

from __future__ import annotations

import collections
import logging

from eventd.kafka.batch import PartitionBatch
from eventd.kafka.types import TopicPartition
from eventd.roles.hdfs_uploader.records import Record
from eventd.roles.hdfs_uploader.staging import Flush, Staging

log = logging.getLogger(__name__)


class PartitionState:
    """Staging state of one partition: the open flush and the sealed ones awaiting upload.

    ``next_offset``: the first offset not yet staged (None until the first message when Kafka
    has no committed offset). ``recorded_end``: the flush end currently recorded in Kafka's
    commit metadata (two-phase record of the flush being placed).
    """

    def __init__(self, tp: TopicPartition, next_offset: int | None, forced_end: int | None) -> None:
        self.tp = tp
        self.next_offset = next_offset
        self.forced_end = forced_end
        self.recorded_end = forced_end
        self.open: Flush | None = None
        self.sealed: collections.deque[Flush] = collections.deque()
        self.tmp_cleaned = False

    def add(self, part: PartitionBatch[Record], staging: Staging) -> None:
        """Stage ``part`` (offsets ``part.first..part.last``). Offsets already staged are skipped,
        so a batch retried after a failure is staged once."""
        if self.next_offset is None:
            self.next_offset = part.first
        if part.last < self.next_offset:
            return
        if part.first > self.next_offset:
            log.warning("%s/%d: offsets %d..%d were not delivered (deleted by retention?)",
                        self.tp.topic, self.tp.partition, self.next_offset, part.first - 1)
        for record in part.items:
            if record.offset >= self.next_offset:
                self._cover(record.offset - 1, staging)
                self._place(record, staging)
        self._cover(part.last, staging)

    def roll(self, staging: Staging, now: float, roll_size: int, roll_age: float, force: bool = False) -> None:
        """Seal the open flush if it is big or old enough (or ``force``), unless it must end at
        a recorded boundary not reached yet."""
        flush = self.open
        if flush is None or self.forced_end is not None:
            return
        if force or flush.size >= roll_size or now - flush.opened >= roll_age:
            self._seal(staging, self.next_offset - 1)   # type: ignore[operator]

    def discard(self, staging: Staging) -> None:
        """Forget everything staged (partition revoked or reset): it is read again from Kafka."""
        for flush in [*self.sealed, *([self.open] if self.open else [])]:
            staging.discard(flush)
        self.sealed.clear()
        self.open = None

    @property
    def staged_bytes(self) -> int:
        return sum(f.size for f in self.sealed) + (self.open.size if self.open else 0)

    # -- internals ---------------------------------------------------------------------------
    def _cover(self, upto: int, staging: Staging) -> None:
        """Offsets ``next_offset..upto`` carry no record (dead-lettered): extend the range."""
        assert self.next_offset is not None
        while self.next_offset <= upto:
            self._open_flush()
            end = upto if self.forced_end is None else min(upto, self.forced_end)
            self.next_offset = end + 1
            if end == self.forced_end:
                self._seal(staging, end)

    def _place(self, record: Record, staging: Staging) -> None:
        flush = self._open_flush()
        staging.append(flush, record.key, record.schema, record.body)
        self.next_offset = record.offset + 1
        if record.offset == self.forced_end:
            self._seal(staging, record.offset)

    def _open_flush(self) -> Flush:
        if self.open is None:
            assert self.next_offset is not None
            self.open = Flush(self.tp, self.next_offset, uncertain=self.forced_end is not None)
        return self.open

    def _seal(self, staging: Staging, last: int) -> None:
        assert self.open is not None
        staging.seal(self.open, last)
        self.sealed.append(self.open)
        self.open = None
        if last == self.forced_end:
            self.forced_end = None
