"""The sink between the consumer loop and MariaDB, with the transaction faked: where partitions
start, when the dedup window is rebuilt, duplicates, a retried window, a stale partition."""

from __future__ import annotations

import threading
from datetime import date
from typing import Any

from eventd.kafka.batch import Batch
from eventd.kafka.consumer_loop import Start
from eventd.kafka.types import TopicPartition
from eventd.roles.balance_aggregator.apply import Outcome, Part
from eventd.roles.balance_aggregator.events import Charge
from eventd.roles.balance_aggregator.sink import BalanceSink

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


def charge(tp: TopicPartition, offset: int, event_id: str, cost: int = 1) -> Charge:
    return Charge(tp.topic, tp.partition, offset, event_id, 1, None, None, cost, 0, date(2026, 1, 1), None, b"")


class FakeDb:
    def __init__(self, stored: dict[TopicPartition, int]) -> None:
        self.stored = stored

    def stored_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: self.stored.setdefault(tp, 0) for tp in tps}

    def close(self) -> None:
        pass


class FakeApplier:
    """Applies like the real one: classifies each part against ``db.stored`` and moves it."""

    def __init__(self, db: FakeDb) -> None:
        self.db, self.windows = db, []  # type: ignore[var-annotated]

    def apply(self, parts: list[Part]) -> Outcome:
        outcome = Outcome()
        for part in parts:
            p, found = part.progress, self.db.stored.get(part.progress.tp)
            if found == p.expected:
                outcome.applied.append(p)
            elif found == p.next:
                outcome.done.append(p)
            else:
                outcome.lost.append((p, found))
        if outcome.applied and not outcome.lost:
            for p in outcome.applied:
                self.db.stored[p.tp] = p.next
            self.windows.append([(part.progress.tp, [c.event_id for c in part.charges]) for part in parts
                                 if part.progress in outcome.applied])
        return outcome


class FakeOutbox:
    def __init__(self) -> None:
        self.published: list[Any] = []

    def publish(self, rows: list[Any]) -> None:
        self.published += rows


class FakeLoop:
    def __init__(self) -> None:
        self.calls: list[tuple[str, list[TopicPartition]]] = []
        self.consumer = self

    def restart(self, tps: list[TopicPartition]) -> None:
        self.calls.append(("restarted", tps))

    def assignment(self) -> set[TopicPartition]:
        return {TP0, TP1}


def make_sink(stored: dict[TopicPartition, int], dedup: int = 100) -> tuple[BalanceSink, FakeApplier]:
    db = FakeDb(stored)
    applier = FakeApplier(db)
    sink = BalanceSink(db, applier, None, FakeOutbox(), dedup, "test", threading.Event())  # type: ignore[arg-type]
    return sink, applier


def batch_of(*charges: Charge) -> Batch[Charge]:
    b: Batch[Charge] = Batch()
    for c in charges:
        b.add(TopicPartition(c.topic, c.partition), c.offset, c)
    return b


def test_partitions_start_at_the_stored_offset_and_rebuild_the_dedup_window_before_it() -> None:
    sink, _ = make_sink({TP0: 250, TP1: 30})
    starts = sink.start([TP0, TP1], {})
    assert starts == {TP0: Start(offset=250, warm=100), TP1: Start(offset=30, warm=30)}


def test_a_window_held_since_the_last_write_is_kept_on_reassignment() -> None:
    sink, _ = make_sink({TP0: 0})
    sink.start([TP0], {})
    sink.write(batch_of(charge(TP0, 0, "a"), charge(TP0, 1, "b")), FakeLoop())  # type: ignore[arg-type]
    assert sink.start([TP0], {}) == {TP0: Start(offset=2, warm=0)}


def test_a_window_that_read_ahead_of_the_stored_offset_is_rebuilt() -> None:
    sink, _ = make_sink({TP0: 0})
    sink.start([TP0], {})
    sink.write(batch_of(charge(TP0, 0, "a")), FakeLoop())  # type: ignore[arg-type]
    sink.db.stored[TP0] = 5            # another aggregator went on meanwhile
    assert sink.start([TP0], {}) == {TP0: Start(offset=5, warm=5)}


def test_duplicates_are_not_charged_and_warm_messages_count() -> None:
    sink, applier = make_sink({TP0: 2})
    sink.start([TP0], {})
    sink._ids[TP0].add(1, "old")        # as Sink.warm() records the messages before offset 2
    sink.write(batch_of(charge(TP0, 2, "old"), charge(TP0, 3, "new"), charge(TP0, 4, "new")),
               FakeLoop())  # type: ignore[arg-type]
    assert applier.windows == [[(TP0, ["new"])]]


def test_a_retried_window_that_had_committed_is_not_applied_again() -> None:
    sink, applier = make_sink({TP0: 0})
    sink.start([TP0], {})
    batch = batch_of(charge(TP0, 0, "a"))
    sink.db.stored[TP0] = 1            # the COMMIT went through, its answer was lost
    sink.write(batch, FakeLoop())      # type: ignore[arg-type]
    assert applier.windows == [] and sink._expected[TP0] == 1 and sink._ids[TP0].seen("a", 1)


def test_a_stale_partition_is_dropped_and_restarted_while_the_others_are_applied() -> None:
    sink, applier = make_sink({TP0: 0, TP1: 0})
    sink.start([TP0, TP1], {})
    sink.db.stored[TP1] = 9            # another aggregator applied TP1 meanwhile
    loop = FakeLoop()
    batch = batch_of(charge(TP0, 0, "a"), charge(TP1, 0, "b"))
    sink.write(batch, loop)            # type: ignore[arg-type]
    assert applier.windows == [[(TP0, ["a"])]]
    assert loop.calls == [("restarted", [TP1])]
    assert list(batch.parts) == [TP0]                 # the loop commits only what was applied
    assert sink.start([TP1], {}) == {TP1: Start(offset=9, warm=9)}


def test_the_loop_starts_assigned_partitions_at_the_stored_offset() -> None:
    """Nothing of a partition before the offset the sink stored is read, let alone applied."""
    from eventd.config.common import DeadLetterConfig
    from eventd.kafka.consumer_loop import ConsumerLoop, LoopSettings
    from eventd.kafka.deadletter import DeadLetter, InvalidLimit
    from fake_kafka import FakeConsumer, FakeProducer

    class Sink:
        started: list[TopicPartition] = []
        written: list[tuple[int, int]] = []

        def start(self, partitions, committed):  # type: ignore[no-untyped-def]
            self.started += partitions
            return {tp: Start(offset=2) for tp in partitions}

        def warm(self, msg):  # type: ignore[no-untyped-def]
            pass

        def transform(self, msg):  # type: ignore[no-untyped-def]
            return msg.value

        def write(self, batch, loop):  # type: ignore[no-untyped-def]
            self.written += [(p.first, p.last) for _, p in batch]

        def close(self) -> None:
            pass

    consumer = FakeConsumer({TP0: [b"0", b"1", b"2", b"3"]})
    sink = Sink()
    settings = LoopSettings("test", ["t"], max_items=100, max_age=0.01, poll_timeout=0.01)
    loop = ConsumerLoop(settings, consumer, sink, DeadLetter(FakeProducer(), "dlq", "test"),  # type: ignore[arg-type]
                        InvalidLimit(DeadLetterConfig(0.5, 100)))
    stop = threading.Event()
    consumer.on_poll = lambda c: stop.set() if sink.written else None
    loop.run(stop)
    assert sink.started == [TP0] and sink.written == [(2, 3)]      # nothing read before the stored offset
