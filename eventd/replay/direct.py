"""``--to clickhouse|balances|hdfs``: straight into one sink, with that role's own sink classes.

Each consumer role's loading code is a :class:`~eventd.kafka.consumer_loop.Sink` written for
the shared consumer loop. Here the replay *is* the loop: every input is one pseudo
partition, ``eventd-replay-<stream key>`` partition 0, whose offset ``n`` is the input's line
``n + 1``. Each block of lines between two checkpoints is one batch (exact range: the
block's first to last line, rejected and blank lines included) given to ``Sink.write``; a
staging sink (HDFS) is then ticked until the block is placed. The checkpoint is reported
durable only after that, and only then recorded in the replay ledger.

Why each sink stays exact on a re-run (whole, or after kill -9 at any point):

- the ledger skips every block recorded; the one block that may have been written but not
  recorded is rebuilt *identically* (same lines, same ids, the ledger's ``received`` time,
  the duplicate windows warmed with every earlier line, same range);
- ClickHouse: the identical block is dropped by the Replicated tables' block deduplication
  (exactly as for the loader's own retries); ``kafka_topic`` names the input, ``kafka_offset``
  is the line number - 1;
- balances: the stored offset of the pseudo partition moves in the same MariaDB transaction
  as the money; lines below it are never applied again (counted as already in);
- HDFS: files are named after the block's line range; a file already in place is kept, the
  new copy dropped (the uploader's publisher).

The roles' sinks also commit "boundaries" through ``loop.commit`` (Kafka commit metadata);
here those calls are no-ops: the ledger is the record of boundaries.
"""

from __future__ import annotations

import logging
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from prometheus_client import REGISTRY

from eventd.config import Config
from eventd.errors import EventdError
from eventd.event.envelope import Event
from eventd.event.schemas import SchemaStore
from eventd.kafka.batch import Batch, Message, PartitionBatch
from eventd.kafka.consumer_loop import FatalSinkError, RetryableError
from eventd.kafka.types import TopicPartition
from eventd.replay.ledger import Checkpoint
from eventd.replay.sinks import OnDurable, ReplayFailed, destination_key

log = logging.getLogger(__name__)
TOPIC_PREFIX = "eventd-replay-"
RETRY_FOR = 60.0          # seconds a block is retried while its sink is unavailable
PLACE_FOR = 15.0          # seconds one attempt at placing a block (HDFS) may take
BLOCK_LINES = 10_000
BLOCK_BYTES = 8 << 20


class _Assignment:
    """The consumer the role sinks ask for their assignment: the input being replayed."""

    def __init__(self) -> None:
        self.tps: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        return set(self.tps)


class ReplayLoop:
    """Stands in for the ConsumerLoop a role sink is written for."""

    def __init__(self) -> None:
        self.consumer = _Assignment()

    def commit(self, offsets: dict[TopicPartition, Any]) -> None:
        """Boundaries are recorded in the replay ledger, not in Kafka."""


@dataclass
class Slot:
    """One role sink (one ClickHouse destination, the balances, the HDFS archive)."""

    sink: Any
    name: str
    metric_role: str                   # the ``role`` label of the duplicates the sink counts
    real_topic: bool = False           # messages carry the event's topic (HDFS checks it)
    floor: int = 0                     # offsets below are already in the sink (its stored position)
    expected: int | None = None        # the sink's stored position (sinks that keep one)
    batch: Batch[Any] = field(default_factory=Batch)


def _duplicates(role: str) -> float:
    return REGISTRY.get_sample_value("eventd_duplicates_skipped_total", {"role": role}) or 0.0


class SinkTarget:
    """A replay target over one or more role sinks (see the module docstring)."""

    streaming = False
    block_lines, block_bytes = BLOCK_LINES, BLOCK_BYTES

    def __init__(self, name: str, key: str, slots: list[Slot], stop: threading.Event,
                 closer: Callable[[], None] = lambda: None) -> None:
        self.name, self.key, self.slots = name, key, slots
        self.already = 0
        self.on_durable: OnDurable = lambda cps: None
        self._stop, self._closer = stop, closer
        self._loop = ReplayLoop()
        self._tp = TopicPartition(TOPIC_PREFIX, 0)
        self._dups = 0.0

    def begin(self, stream: str) -> None:
        """A new input: a new pseudo partition, started by each sink (its stored position)."""
        self._tp = TopicPartition(TOPIC_PREFIX + stream, 0)
        self._loop.consumer.tps = {self._tp}
        self._dups = _duplicates(self.slots[0].metric_role)
        for slot in self.slots:
            start = self._call(slot, lambda: slot.sink.start([self._tp], {self._tp: None}))[self._tp]
            slot.floor = start.offset or 0
            slot.expected = start.offset
            slot.batch = Batch()
            if slot.floor:
                log.info("%s already holds lines 1..%d of this input", slot.name, slot.floor)

    def _message(self, slot: Slot, event: Event, value: bytes, line: int) -> Message:
        topic = event.topic if slot.real_topic else self._tp.topic
        return Message(topic, 0, line - 1, event.key, value, event.received)

    def warm(self, event: Event, value: bytes, line: int) -> None:
        for slot in self.slots:
            slot.sink.warm(self._message(slot, event, value, line))

    def add(self, event: Event, value: bytes, line: int) -> None:
        """Transform with every sink first (a refusal raises before anything is kept)."""
        offset, items = line - 1, []  # type: int, list[Any]
        for slot in self.slots:
            msg = self._message(slot, event, value, line)
            if offset < slot.floor:
                slot.sink.warm(msg)
                items.append(None)
            else:
                items.append(slot.sink.transform(msg))
        if offset < self.slots[0].floor:
            self.already += 1
        for slot, item in zip(self.slots, items):
            if offset >= slot.floor:
                slot.batch.add(self._tp, offset, item)

    def mark(self, checkpoint: Checkpoint) -> None:
        """Write the block of lines ``after+1 .. line`` to every sink; durable when this returns."""
        for slot in self.slots:
            self._write(slot, checkpoint)
        dups = _duplicates(self.slots[0].metric_role)
        self.already += int(dups - self._dups)
        self._dups = dups
        self.on_durable([checkpoint])

    def _write(self, slot: Slot, cp: Checkpoint) -> None:
        """Offsets ``after .. line - 1`` (lines ``after+1 .. line``), minus what the sink already has."""
        batch, slot.batch = slot.batch, Batch()
        first, last = max(cp.after, slot.floor), cp.line - 1
        if first > last:
            return              # the whole block is below the sink's stored position
        if slot.expected is not None and first > slot.expected:
            raise ReplayFailed(f"{slot.name} holds this input up to line {slot.expected} only, but the replay "
                               f"ledger says lines up to {first} were delivered (was the sink restored from a "
                               f"backup?): delete the ledger file to replay from the sink's own position")
        part = batch.parts.get(self._tp) or PartitionBatch(first, last)
        part.first, part.last = first, last
        batch.parts = {self._tp: part}
        self._call(slot, lambda: self._write_once(slot, batch, last + 1))
        if slot.expected is not None:
            slot.expected = last + 1

    def _write_once(self, slot: Slot, batch: Batch[Any], end: int) -> None:
        durable = slot.sink.write(batch, self._loop) or {}
        if hasattr(slot.sink, "tick"):           # a staging sink: place the block now
            durable.update(slot.sink.tick(self._loop, time.monotonic() + PLACE_FOR) or {})
            if durable.get(self._tp) != end:
                raise RetryableError(f"the block of lines {batch.parts[self._tp].first + 1}..{end} is not "
                                     f"placed yet")

    def _call(self, slot: Slot, action: Callable[[], Any]) -> Any:
        """Run ``action``; a RetryableError is retried with backoff for up to RETRY_FOR seconds."""
        deadline, backoff = time.monotonic() + RETRY_FOR, 0.5
        while True:
            try:
                return action()
            except FatalSinkError as exc:
                raise ReplayFailed(f"{slot.name}: {exc}") from None
            except RetryableError as exc:
                if time.monotonic() + backoff > deadline or self._stop.is_set():
                    raise ReplayFailed(f"{slot.name}: still failing after {RETRY_FOR:.0f}s: {exc}") from None
                log.warning("%s: %s; retrying in %.1fs", slot.name, exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def check(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def close(self) -> None:
        try:
            for slot in self.slots:
                slot.sink.close()
        finally:
            self._closer()


# -- the three targets: each built from its role's own classes, as the role's main() does ---------

def _clickhouse(cfg: Config, store: SchemaStore, stop: threading.Event) -> SinkTarget:
    from eventd.event.codec import Decoder
    from eventd.roles.clickhouse_loader.mapping import RowMapper
    from eventd.roles.clickhouse_loader.sink import ClickHouseSink
    from eventd.roles.clickhouse_loader.table import EventsTable
    lc = cfg.clickhouse_loader
    if not lc.destinations:
        raise ReplayFailed("clickhouse_loader.destinations is empty: nowhere to load")
    mapper = RowMapper.build(lc.columns, store, cfg.events)
    slots = []
    for dest in lc.destinations:
        role = f"replay/clickhouse/{dest.name}"
        table = EventsTable(dest, mapper.column_types())
        slots.append(Slot(ClickHouseSink(dest.name, role, Decoder(store), mapper, table, lc.duplicate_id_window),
                          f"ClickHouse destination {dest.name}", role))
    key = destination_key("clickhouse", [(d.name, sorted(d.hosts), d.database) for d in lc.destinations])
    target = SinkTarget("clickhouse", key, slots, stop)
    for slot in slots:   # tables checked before any line is read
        target._call(slot, slot.sink.table.ready)
    return target


def _balances(cfg: Config, store: SchemaStore, stop: threading.Event) -> SinkTarget:
    from eventd.kafka.producer import Producer
    from eventd.roles import balance_aggregator as ba
    from eventd.roles.balance_aggregator.outbox import Outbox, OutboxSweeper
    from eventd.roles.balance_aggregator.schema import Sql
    from eventd.roles.balance_aggregator.store import connect
    from eventd.roles.base import RoleContext
    bc = cfg.balance_aggregator
    ba.check_database(cfg)
    sql = Sql(bc.tables)
    # Budget stops and unknown-campaign dead letters go through the role's outbox, as live.
    producer = Producer(cfg.kafka, "replay-balances")
    outbox = Outbox(sql, producer, ba.ROLE, bc.control_resend_after)
    sweeper = OutboxSweeper(outbox, bc.mariadb, connect)
    sink = ba._sink(RoleContext(cfg, ba.ROLE, 0, stop), sql, outbox, sweeper)
    sweeper.start()
    m = bc.mariadb
    key = destination_key("balances", m.host, m.port, m.database)
    return SinkTarget("balances", key, [Slot(sink, f"MariaDB {m.database}", ba.ROLE)], stop,
                      closer=lambda: ba._close(producer, sweeper))


def _hdfs(cfg: Config, store: SchemaStore, stop: threading.Event) -> SinkTarget:
    from eventd.roles import hdfs_uploader as hu
    from eventd.roles.hdfs_uploader.publish import Publisher
    from eventd.roles.hdfs_uploader.records import RecordReader
    from eventd.roles.hdfs_uploader.sink import HdfsSink
    from eventd.roles.hdfs_uploader.staging import Staging
    h, t = cfg.hdfs_uploader, cfg.kafka.topics
    client = hu.client_for(h)
    hu._check_base(client, h.base_dir)
    root = os.path.join(h.staging_dir, f"replay-{os.getpid()}")   # never the role's own staging
    try:
        staging = Staging(root, h.codec, h.block_size, "replay")
    except OSError as exc:
        raise ReplayFailed(f"cannot use staging directory {root}: {exc}") from None
    reader = RecordReader(store, h.verify_records, lambda family: cfg.events.route(family, t.prefix, t.partitions).topic)
    sink = HdfsSink(h, reader, staging, Publisher(client, h.base_dir), "replay")
    key = destination_key("hdfs", h.namenode_host, h.namenode_port, h.base_dir)
    return SinkTarget("hdfs", key, [Slot(sink, f"HDFS {h.base_dir}", "replay", real_topic=True)], stop,
                      closer=lambda: shutil.rmtree(root, ignore_errors=True))


_BUILDERS = {"clickhouse": _clickhouse, "balances": _balances, "hdfs": _hdfs}


def open_direct(to: str, cfg: Config, store: SchemaStore, stop: threading.Event) -> SinkTarget:
    """The target for ``--to clickhouse|balances|hdfs``; the sink is checked before any line is read."""
    try:
        return _BUILDERS[to](cfg, store, stop)
    except ReplayFailed:
        raise
    except EventdError as exc:   # CannotStart and the like, from the role's own start-up checks
        raise ReplayFailed(f"{to}: {exc}") from None
