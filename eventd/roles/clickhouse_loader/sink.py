"""The consumer-loop Sink of one destination: messages → rows → one INSERT per partition,
with the batch's boundaries recorded in Kafka before the INSERT.

Exactly once, per partition p and batch covering offsets [a, b]:

1. commit offset a with metadata ``eventd:pending:b`` (the boundaries, in Kafka, for this group);
2. INSERT the block of [a, b] (rows in offset order; every value comes from the messages);
3. the loop commits b + 1 with empty metadata.

A crash between 1 and 3 leaves ``pending:b`` committed at a. The partition's next owner (this
process restarted, or another after a rebalance) starts at a with ``Start(cut_at=b)``, so the
loop rebuilds exactly [a, b], and with ``Start(warm=N)`` the duplicate-id window is rebuilt
from the N messages before a: the identical block. Replicated tables drop an identical
block that is already in (crash after step 2, or a zombie owner inserting late).
"""

from __future__ import annotations

import logging
from typing import Any

from eventd.errors import DecodeError
from eventd.event.codec import HEADER_SIZE, Decoder, envelope_id
from eventd.event.dedup import RecentIds
from eventd.kafka.batch import Batch, Message, PartitionBatch
from eventd.kafka.consumer_loop import Committed, ConsumerLoop, RetryableError, Start
from eventd.kafka.types import KafkaError, OffsetAndMetadata, TopicPartition
from eventd.metrics import DUPLICATES, EVENTS_OUT
from eventd.failpoints import failpoint
from eventd.roles.clickhouse_loader.mapping import Row, RowMapper, RowReader
from eventd.roles.clickhouse_loader.table import EventsTable

log = logging.getLogger(__name__)
PENDING = "eventd:pending:"


def pending_end(metadata: str | None) -> int | None:
    """The last offset of a batch recorded as pending in commit ``metadata``, else None."""
    if not metadata or not metadata.startswith(PENDING):
        return None
    try:
        return int(metadata[len(PENDING):])
    except ValueError:
        log.warning("ignoring malformed commit metadata %r", metadata)
        return None


class ClickHouseSink:
    """Sink[Row] for one destination. Used by one consumer loop, in one thread."""

    def __init__(self, name: str, role: str, decoder: Decoder, mapper: RowMapper, table: EventsTable,
                 id_window: int) -> None:
        self.name, self.role = name, role
        self.decoder, self.mapper, self.table = decoder, mapper, table
        self.id_window = id_window
        self._recent: dict[TopicPartition, RecentIds] = {}
        self._readers: dict[bytes, RowReader] = {}     # per writer schema fingerprint

    def start(self, partitions: list[TopicPartition], committed: Committed) -> dict[TopicPartition, Start]:
        """Each partition restarts from its committed offset, finishing a recorded batch first."""
        starts = {}
        for tp in partitions:
            self._recent[tp] = RecentIds(self.id_window)
            position = committed.get(tp)
            cut = pending_end(position.metadata) if position is not None else None
            if cut is not None and position is not None:
                log.info("destination %s: %s/%d: redoing the batch recorded before a crash or rebalance, "
                         "offsets %d..%d (ClickHouse drops it if it is already in)", self.name, tp.topic,
                         tp.partition, position.offset, cut)
            starts[tp] = Start(cut_at=cut, warm=self.id_window)
        return starts

    def warm(self, msg: Message) -> None:
        """A message before the start offset: only its id, into the duplicate window."""
        try:
            event_id = envelope_id(msg.value)
        except DecodeError:      # as in transform: an unreadable id is not remembered
            return
        self._window(msg).seen(msg.offset, event_id)

    def transform(self, msg: Message) -> Row | None:
        """The row of ``msg``; None for a resend already seen. Raises DecodeError / InvalidEvent."""
        value = msg.value
        if self._window(msg).seen(msg.offset, envelope_id(value)):
            DUPLICATES.labels(self.role).inc()
            return None
        read = self._readers.get(value[2:HEADER_SIZE])
        if read is None:     # a schema not met yet (split raises the DecodeError of an unknown one)
            read = self._readers[value[2:HEADER_SIZE]] = self.mapper.reader(self.decoder.split(value)[0])
        return read(value, msg.topic, msg.partition, msg.offset)

    def write(self, batch: Batch[Row], loop: ConsumerLoop[Row]) -> None:
        """Record the boundaries, then insert each partition's block. Durable when it returns."""
        parts = [(tp, part) for tp, part in batch if part.items]
        if not parts:
            return
        self.table.ready()
        self._record(parts, loop)
        failpoint("clickhouse_loader.after_record")
        for _, part in parts:
            self.table.insert(part.items)
            EVENTS_OUT.labels(self.role, self.name).inc(len(part.items))
            failpoint("clickhouse_loader.after_insert")

    def close(self) -> None:
        self.table.close()

    def _record(self, parts: list[tuple[TopicPartition, PartitionBatch[Any]]], loop: ConsumerLoop[Row]) -> None:
        """Step 1: commit each block's first offset with its last offset as pending metadata."""
        offsets = {tp: OffsetAndMetadata(part.first, f"{PENDING}{part.last}", -1) for tp, part in parts}
        try:
            loop.commit(offsets)
        except KafkaError as exc:
            # Not recorded, so not inserted: after a rebalance the partitions' new owner does it.
            raise RetryableError(f"destination {self.name}: could not record the batch boundaries in Kafka, "
                                 f"nothing inserted: {exc}") from exc

    def _window(self, msg: Message) -> RecentIds:
        """The id window of ``msg``'s partition. A plain (topic, partition) tuple finds it
        (TopicPartition is a tuple too): no TopicPartition is built per message."""
        window = self._recent.get((msg.topic, msg.partition))  # type: ignore[call-overload]
        if window is None:       # start() always runs first; this only guards against a surprise
            window = self._recent[msg.tp] = RecentIds(self.id_window)
        return window
