"""The loader's sink inside the real consumer loop, over the in-memory consumer and a table
that deduplicates identical blocks the way a Replicated table does: boundaries are recorded
before the INSERT, a crash at any step is redone as the identical block, resends are skipped,
and ClickHouse's failures are sorted into retry and stop. (The same against the real services:
tests/integration/test_clickhouse_loader.py.)"""

from __future__ import annotations

import json
import random
import threading
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import errors as ch

from eventd.config import load_config
from eventd.config.clickhouse import DEFAULT_COLUMNS
from eventd.config.common import DeadLetterConfig
from eventd.event.codec import Decoder, encode
from eventd.event.envelope import EventParser
from eventd.event.schemas import SchemaStore
from eventd.kafka.consumer_loop import ConsumerLoop, FatalSinkError, LoopSettings, RetryableError
from eventd.kafka.deadletter import DeadLetter, InvalidLimit
from eventd.kafka.types import CommitFailedError, OffsetAndMetadata, TopicPartition
from eventd.roles.clickhouse_loader.mapping import RowMapper
from eventd.roles.clickhouse_loader.sink import ClickHouseSink, pending_end
from eventd.roles.clickhouse_loader.table import classified
from fake_kafka import FakeConsumer, FakeProducer

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(str(REPO / "conf" / "eventd.yaml"))
STORE = SchemaStore.load(str(REPO / "conf" / "schemas"))
PARSER = EventParser(STORE, CFG.events, "events.", 6, "h")
TP0, TP1 = TopicPartition("events.click", 0), TopicPartition("events.click", 1)


class Crash(BaseException):
    """Stands for kill -9: nothing after it runs, nothing is committed."""


class ReplicatedTable:
    """Stores a block once however often it is inserted, like a Replicated table."""

    def __init__(self, crash_at_insert: int = 0) -> None:
        self.crash_at_insert = crash_at_insert
        self.inserts: list[list[Any]] = []
        self.stored: dict[str, list[Any]] = {}
        self.ops: list[str] | None = None

    def ready(self) -> None:
        pass

    def insert(self, rows: list[Any]) -> None:
        self.inserts.append(list(rows))
        self.stored.setdefault(repr(rows), list(rows))
        if self.ops is not None:
            self.ops.append(f"insert {rows[0][-2]}:{rows[0][-1]}-{rows[-1][-1]}")
        if len(self.inserts) == self.crash_at_insert:
            raise Crash()

    def rows(self) -> list[Any]:
        return [r for block in self.stored.values() for r in block]

    def close(self) -> None:
        pass


def message(event_id: str, cost: str = "0.5") -> bytes:
    line = json.dumps({"type": "click", "id": event_id, "time": 1_710_064_800, "campaign_id": 1, "cost": cost})
    event = PARSER.parse(line.encode(), "t", 0, lambda: "x")
    return encode(event.schema, event.record)


def logs(n: int, resend_every: int = 0) -> dict[TopicPartition, list[bytes]]:
    out: dict[TopicPartition, list[bytes]] = {TP0: [], TP1: []}
    for i in range(n):
        tp = (TP0, TP1)[i % 2]
        out[tp].append(message(f"e{i}"))
        if resend_every and i % resend_every == 0:
            out[tp].append(message(f"e{i}"))           # a collector resend, a little later
    out[TP0].insert(5, b"garbage")
    return out


def run(consumer: FakeConsumer, table: ReplicatedTable, max_items: int = 7, window: int = 1000) -> FakeProducer:
    """Run a fresh sink and loop until every message is committed (or a Crash)."""
    sink = ClickHouseSink("d", "test", Decoder(STORE), RowMapper(DEFAULT_COLUMNS), table, window)  # type: ignore[arg-type]
    producer = FakeProducer()
    settings = LoopSettings("test", ["events.click"], max_items=max_items, max_age=0.01, poll_timeout=0.01,
                            backoff_initial=0.01, backoff_max=0.02, drain_timeout=1)
    loop = ConsumerLoop(settings, consumer, sink, DeadLetter(producer, "dlq", "test"),  # type: ignore[arg-type]
                        InvalidLimit(DeadLetterConfig(0.5, 1000)))
    stop = threading.Event()
    ends = {tp: len(msgs) for tp, msgs in consumer.logs.items()}

    def on_poll(c: FakeConsumer) -> None:
        done = all(c.committed_offsets.get(tp) == OffsetAndMetadata(end, "", -1) for tp, end in ends.items())
        if done or len(c.commits) > 10_000:
            stop.set()
    consumer.on_poll = on_poll
    try:
        loop.run(stop)
    except Crash:
        pass
    return producer


def ids(rows: list[Any]) -> list[str]:
    return sorted(r[0] for r in rows)


def test_boundaries_are_recorded_before_the_insert_and_cleared_after() -> None:
    consumer = FakeConsumer(logs(20))
    table = ReplicatedTable()
    table.ops = ops = []
    original_commit = consumer.commit
    consumer.commit = lambda offsets: (ops.append("commit " + ",".join(  # type: ignore[method-assign]
        f"{tp.partition}:{o.offset}/{o.metadata or '-'}" for tp, o in sorted(offsets.items()))),
        original_commit(offsets))[-1]
    producer = run(consumer, table)
    assert ops[:3] == ["commit 0:0/eventd:pending:7", "insert 0:0-7", "commit 0:8/-"]
    recorded: set[str] = set()
    for op in ops:                     # every block was recorded before it was inserted ...
        kind, _, what = op.partition(" ")
        if kind == "insert":
            part, _, span = what.partition(":")
            first, _, last = span.partition("-")
            assert f"{part}:{first}/eventd:pending:{last}" in recorded, (op, ops)
        else:
            recorded = set(what.split(","))
    assert all(o.metadata == "" for o in consumer.committed_offsets.values())   # ... and cleared after
    assert ids(table.rows()) == sorted(f"e{i}" for i in range(20))
    assert [dict(h)["eventd.source"] for _, _, _, h in producer.sent] == [b"events.click/0/5"]


@pytest.mark.parametrize("crash_at_insert", [1, 2, 3, 6])
def test_a_crash_after_any_insert_is_redone_as_the_identical_block(crash_at_insert: int) -> None:
    consumer = FakeConsumer(logs(60, resend_every=4))
    table = ReplicatedTable(crash_at_insert=crash_at_insert)
    run(consumer, table, max_items=9, window=5)
    crashed = table.inserts[-1]
    pending = {tp: pending_end(c.metadata) for tp, c in consumer.committed_offsets.items()}
    assert any(end is not None for end in pending.values())
    # The restart: a new process, the same Kafka state.
    restarted = FakeConsumer(consumer.logs, committed=consumer.committed_offsets)
    table.crash_at_insert = 0
    run(restarted, table, max_items=9, window=5)
    assert crashed in table.inserts[crash_at_insert:]              # redone, identical
    assert ids(table.rows()) == sorted(f"e{i}" for i in range(60))  # each event once, resends skipped


def test_a_crash_after_recording_inserts_the_recorded_block_on_restart() -> None:
    consumer = FakeConsumer(logs(30))

    class NoInsert(ReplicatedTable):
        def insert(self, rows: list[Any]) -> None:
            raise Crash()
    run(consumer, NoInsert(), max_items=9)
    first = consumer.committed_offsets[TP0]
    assert (first.offset, first.metadata) == (0, "eventd:pending:9")
    table = ReplicatedTable()
    run(FakeConsumer(consumer.logs, committed=consumer.committed_offsets), table, max_items=500)
    assert table.inserts[0][-1][-1] == 9 and table.inserts[0][0][-1] == 0     # cut exactly at 9
    assert ids(table.rows()) == sorted(f"e{i}" for i in range(30))


def test_losing_the_partitions_before_recording_inserts_nothing() -> None:
    class Zombie(FakeConsumer):
        def commit(self, offsets: dict) -> None:
            if any(o.metadata for o in offsets.values()):
                raise CommitFailedError("the group rebalanced")
            super().commit(offsets)
    sink = ClickHouseSink("d", "test", Decoder(STORE), RowMapper(DEFAULT_COLUMNS), ReplicatedTable(), 10)  # type: ignore[arg-type]
    loop = ConsumerLoop(LoopSettings("t", ["events.click"], 10, 1.0), Zombie({TP0: []}), sink,  # type: ignore[arg-type]
                        DeadLetter(FakeProducer(), "dlq", "t"), InvalidLimit(DeadLetterConfig(0.5, 10)))  # type: ignore[arg-type]
    from eventd.kafka.batch import Batch
    batch: Batch[Any] = Batch()
    batch.add(TP0, 0, ("row",))
    with pytest.raises(RetryableError, match="nothing inserted"):
        sink.write(batch, loop)
    assert sink.table.inserts == []  # type: ignore[attr-defined]


def test_pending_metadata_is_parsed_strictly() -> None:
    assert pending_end("eventd:pending:41") == 41
    assert pending_end("") is None and pending_end(None) is None
    assert pending_end("eventd:pending:x") is None and pending_end("other") is None


@pytest.mark.parametrize("exc,kind", [
    (ch.ServerException("no such column", code=16), FatalSinkError),
    (ch.ServerException("table doesn't exist", code=60), FatalSinkError),
    (ch.ServerException("wrong password", code=516), FatalSinkError),
    (ch.ServerException("table is in readonly mode (ZooKeeper)", code=242), RetryableError),
    (ch.ServerException("too many parts", code=252), RetryableError),
    (ch.ServerException("ZooKeeper session expired", code=999), RetryableError),
    (ch.NetworkError("connection refused"), RetryableError),
    (ch.SocketTimeoutError("timed out"), RetryableError),
    (ConnectionResetError("reset"), RetryableError),
    (EOFError("unexpected EOF"), RetryableError),
    (ch.TypeMismatchError("UInt8 got str"), FatalSinkError),
    (TypeError("an integer is required"), FatalSinkError),
])
def test_clickhouse_errors_are_sorted_into_retry_and_stop(exc: BaseException, kind: type) -> None:
    with pytest.raises(kind) as caught:
        with classified("inserting"):
            raise exc
    assert str(caught.value).startswith("inserting: ")


def test_random_batch_sizes_and_crashes_never_lose_or_double_an_event() -> None:
    rng = random.Random(11)
    consumer = FakeConsumer(logs(120, resend_every=5))
    table = ReplicatedTable()
    for _ in range(6):
        table.crash_at_insert = len(table.inserts) + rng.randint(1, 4)
        run(consumer, table, max_items=rng.randint(3, 20), window=8)
        consumer = FakeConsumer(consumer.logs, committed=consumer.committed_offsets)
    table.crash_at_insert = 0
    run(consumer, table, max_items=rng.randint(3, 20), window=8)
    assert ids(table.rows()) == sorted(f"e{i}" for i in range(120))
