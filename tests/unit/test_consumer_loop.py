"""The shared consumer loop: commit only after the sink confirms, flush by age on a quiet
stream, retry without losing the batch, recorded batch boundaries, warm-up, dead letters."""

from __future__ import annotations

import collections
import random
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

    def transform(self, msg: Message) -> bytes | None:
        if msg.value.startswith(b"bad"):
            raise DecodeError("undecodable test message")
        return None if msg.value.startswith(b"skip") else msg.value

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


def one_by_one(values: list[bytes], max_items: int) -> list[tuple[int, int, list[bytes]]]:
    """The batches of one partition as the loop's rule states it, message by message: a batch
    ends at the message that brings its items to ``max_items`` (bad and skipped messages
    count in the offset range, not as items)."""
    batches, first, items = [], 0, []
    for offset, v in enumerate(values):
        if not v.startswith((b"bad", b"skip")):
            items.append(v)
        if len(items) == max_items:
            batches.append((first, offset, items))
            first, items = offset + 1, []
    if first < len(values):
        batches.append((first, len(values) - 1, items))
    return batches


@pytest.mark.parametrize("seed", range(6))
def test_runs_of_messages_make_the_batches_one_by_one_handling_makes(seed: int) -> None:
    """The loop transforms a poll's messages in runs; the batches must be those of the rule
    applied message by message, with bad and skipped messages anywhere (also at the limit)."""
    rng = random.Random(seed)
    values = [rng.choice([b"bad", b"skip", b"ok", b"ok", b"ok"]) + b"%d" % i for i in range(rng.randint(1, 450))]
    max_items = rng.randint(1, 40)
    consumer = FakeConsumer({TP0: values})
    sink = RecordingSink()
    loop, _ = make_loop(consumer, sink, max_items=max_items, max_age=100,
                        invalid=DeadLetterConfig(1.0, 1000))
    run_until(loop, consumer, lambda: consumer.offsets.get(TP0, 0) >= len(values))
    assert [w[TP0] for w in sink.written] == one_by_one(values, max_items)


class DequeLimit:
    """The invalid limit as first written: a deque of the last ``window`` flags."""

    def __init__(self, ratio: float, window: int) -> None:
        self.ratio, self.recent = ratio, collections.deque(maxlen=window)

    def exceeded_after(self, invalid: bool) -> bool:
        self.recent.append(invalid)
        return invalid and len(self.recent) == self.recent.maxlen and sum(self.recent) > self.ratio * self.recent.maxlen


@pytest.mark.parametrize("seed", range(20))
def test_invalid_limit_counts_the_last_window_of_messages(seed: int) -> None:
    rng = random.Random(seed)
    ratio, window = rng.choice([0.0, 0.1, 0.5, 0.9]), rng.randint(1, 30)
    reference, limit = DequeLimit(ratio, window), InvalidLimit(DeadLetterConfig(ratio, window))
    share = rng.random()
    for i in range(500):
        invalid = rng.random() < share
        expect = reference.exceeded_after(invalid)
        if expect:
            with pytest.raises(TooManyInvalid, match=f"of the last {window} messages were invalid"):
                limit.record(invalid)
            return
        limit.record(invalid)
