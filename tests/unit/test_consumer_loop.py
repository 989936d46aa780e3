"""The shared consumer loop: commit only after the sink confirms, flush by age on a quiet
stream, retry without losing the batch, recorded batch boundaries, warm-up, dead letters."""

from __future__ import annotations

import threading

import pytest

from eventd.config.common import DeadLetterConfig
from eventd.errors import DecodeError
from eventd.kafka.batch import Batch, Message
from eventd.kafka.consumer_loop import ConsumerLoop, LoopSettings, RetryableError, Start
from eventd.kafka.deadletter import DeadLetter, DeadLetterFailed, InvalidLimit, TooManyInvalid
from eventd.kafka.types import OffsetAndMetadata, TopicPartition
from fake_kafka import FakeConsumer, FakeProducer

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


class RecordingSink:
    def __init__(self, starts: dict | None = None, fail_times: int = 0) -> None:
        self.starts = starts or {}
        self.fail_times = fail_times
        self.written: list[dict] = []
        self.warmed: list[Message] = []
        self.closed = False

    def start(self, partitions, committed):  # type: ignore[no-untyped-def]
        return {tp: self.starts.get(tp, Start()) for tp in partitions}

    def warm(self, msg: Message) -> None:
        self.warmed.append(msg)

    def transform(self, msg: Message) -> bytes:
        if msg.value.startswith(b"bad"):
            raise DecodeError("undecodable test message")
        return msg.value

    def write(self, batch: Batch, loop) -> None:  # type: ignore[no-untyped-def]
        if self.fail_times:
            self.fail_times -= 1
            raise RetryableError("sink down")
        self.written.append({tp: (p.first, p.last, list(p.items)) for tp, p in batch})

    def close(self) -> None:
        self.closed = True


def make_loop(consumer: FakeConsumer, sink: RecordingSink, max_items: int = 1000, max_age: float = 0.05,
              invalid: DeadLetterConfig = DeadLetterConfig(0.5, 1000)) -> tuple[ConsumerLoop, FakeProducer]:
    producer = FakeProducer()
    settings = LoopSettings("test", ["t"], max_items=max_items, max_age=max_age, poll_timeout=0.01,
                            backoff_initial=0.01, backoff_max=0.02, drain_timeout=1)
    loop = ConsumerLoop(settings, consumer, sink, DeadLetter(producer, "dlq", "test"), InvalidLimit(invalid))  # type: ignore[arg-type]
    return loop, producer


def run_until(loop: ConsumerLoop, consumer: FakeConsumer, condition) -> None:  # type: ignore[no-untyped-def]
    stop = threading.Event()
    polls = {"n": 0}

    def on_poll(_c: FakeConsumer) -> None:
        polls["n"] += 1
        if condition() or polls["n"] > 2000:
            stop.set()
    consumer.on_poll = on_poll
    loop.run(stop)


def test_quiet_stream_flushes_its_tail_by_age_and_commits_after_write() -> None:
    consumer = FakeConsumer({TP0: [b"a", b"b", b"c"]})
    sink = RecordingSink()
    loop, _ = make_loop(consumer, sink, max_items=1000, max_age=0.02)
    run_until(loop, consumer, lambda: bool(consumer.commits))
    assert sink.written == [{TP0: (0, 2, [b"a", b"b", b"c"])}]
    assert consumer.commits[0] == {TP0: OffsetAndMetadata(3, "", -1)}
    assert sink.closed and consumer.closed


def test_size_limit_splits_batches() -> None:
    consumer = FakeConsumer({TP0: [bytes([i]) for i in range(10)]})
    sink = RecordingSink()
    loop, _ = make_loop(consumer, sink, max_items=4, max_age=10)
    run_until(loop, consumer, lambda: len(sink.written) >= 2)
    assert [w[TP0][:2] for w in sink.written] == [(0, 3), (4, 7), (8, 9)]  # the tail flushed at stop


def test_retryable_error_retries_the_same_batch_and_commits_once() -> None:
    consumer = FakeConsumer({TP0: [b"a", b"b"]})
    sink = RecordingSink(fail_times=3)
    loop, _ = make_loop(consumer, sink)
    run_until(loop, consumer, lambda: bool(consumer.commits))
    assert sink.written == [{TP0: (0, 1, [b"a", b"b"])}]
    assert len(consumer.commits) == 1
    assert not consumer.paused  # resumed after the retry


def test_nothing_is_committed_when_the_sink_never_recovers() -> None:
    consumer = FakeConsumer({TP0: [b"a"]})
    sink = RecordingSink(fail_times=10**9)
    loop, _ = make_loop(consumer, sink, max_age=10)
    run_until(loop, consumer, lambda: loop.batch.messages == 1)
    assert consumer.commits == [] and sink.written == []


def test_recorded_boundary_rebuilds_the_identical_batch() -> None:
    consumer = FakeConsumer({TP0: [bytes([i]) for i in range(10)], TP1: [b"x"] * 3})
    sink = RecordingSink(starts={TP0: Start(offset=2, cut_at=5)})
    loop, _ = make_loop(consumer, sink, max_items=1000, max_age=10)
    run_until(loop, consumer, lambda: bool(sink.written))
    first = sink.written[0]
    assert first[TP0] == (2, 5, [bytes([i]) for i in range(2, 6)])


def test_warm_up_feeds_earlier_messages_without_writing_them() -> None:
    consumer = FakeConsumer({TP0: [bytes([i]) for i in range(6)]})
    sink = RecordingSink(starts={TP0: Start(offset=4, warm=3)})
    loop, _ = make_loop(consumer, sink)
    run_until(loop, consumer, lambda: bool(consumer.commits))
    assert [m.offset for m in sink.warmed] == [1, 2, 3]
    assert sink.written == [{TP0: (4, 5, [b"\x04", b"\x05"])}]


def test_bad_message_goes_to_dead_letter_and_the_stream_goes_on() -> None:
    consumer = FakeConsumer({TP0: [b"a", b"bad1", b"c"]})
    sink = RecordingSink()
    loop, producer = make_loop(consumer, sink)
    run_until(loop, consumer, lambda: bool(consumer.commits))
    assert sink.written == [{TP0: (0, 2, [b"a", b"c"])}]
    topic, value, _key, headers = producer.sent[0]
    assert (topic, value) == ("dlq", b"bad1")
    assert headers["eventd.source"] == b"t/0/1" and b"undecodable test message" in headers["eventd.reason"]
    assert producer.flushes >= 1  # dead letters acknowledged before the commit past them


def test_a_refused_dead_letter_stops_the_role_before_committing_past_it() -> None:
    from eventd.kafka.types import KafkaTimeoutError
    consumer = FakeConsumer({TP0: [b"a", b"bad1", b"c"]})
    sink = RecordingSink()
    loop, producer = make_loop(consumer, sink)
    producer.refuse = KafkaTimeoutError("expired")
    with pytest.raises(DeadLetterFailed, match="refused 1 dead letter"):
        run_until(loop, consumer, lambda: False)
    assert consumer.commits == [] and sink.written == []


def test_a_rebalance_inside_a_flush_drops_the_rest_of_the_poll() -> None:
    """The sink fails once; while the loop waits in the group, the partition is revoked and
    assigned again. The messages of the poll not yet handled must be read again from the
    committed position, not batched: every offset written once, in tiling ranges."""
    consumer = FakeConsumer({TP0: [b"%d" % i for i in range(10)]})
    sink = RecordingSink(fail_times=1)
    loop, _ = make_loop(consumer, sink, max_items=3)
    rebalanced = []
    stop = threading.Event()

    def on_poll(c: FakeConsumer) -> None:
        if sink.fail_times == 0 and not rebalanced:    # the first poll after the failed write
            rebalanced.append(True)
            c.revoke([TP0])
            c.assign([TP0])
        if c.committed_offsets.get(TP0, OffsetAndMetadata(0, "", -1)).offset >= 10 or len(sink.written) > 20:
            stop.set()
    consumer.on_poll = on_poll
    loop.run(stop)
    written = [(first, last, items) for w in sink.written for first, last, items in w.values()]
    assert [i for _, _, items in written for i in items] == [b"%d" % i for i in range(10)]
    assert all(first <= last for first, last, _ in written)
    assert consumer.committed_offsets[TP0].offset == 10


def test_too_many_invalid_stops_the_role() -> None:
    consumer = FakeConsumer({TP0: [b"bad"] * 10})
    loop, _ = make_loop(consumer, RecordingSink(), invalid=DeadLetterConfig(0.5, 4))
    with pytest.raises(TooManyInvalid, match="of the last 4 messages were invalid"):
        run_until(loop, consumer, lambda: False)


def test_revoked_partitions_are_dropped_from_the_pending_batch() -> None:
    b: Batch = Batch()
    b.add(TP0, 0, "x")
    b.add(TP1, 0, "y")
    b.drop([TP0])
    assert list(b.parts) == [TP1] and b.items == 1
