"""The sender against a fake producer: acknowledged position, out-of-order acks, failures and
resends, caps on what is in flight, Kafka unreachable at start, drain on stop."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, Callable

import pytest
from kafka.partitioner.default import DefaultPartitioner, murmur2

from eventd.kafka.types import KafkaTimeoutError, RetriableKafkaError
from eventd.roles.collector.acks import AckTracker
from eventd.kafka.partitions import Partitions
from eventd.roles.collector.queue import DurableQueue
from eventd.roles.collector.records import payload
from eventd.roles.collector.sender import Sender


class FakeProducer:
    """Records sends; the test completes them (in any order) with ``ack``/``fail``."""

    def __init__(self, partitions: int = 3, auto_ack: bool = False) -> None:
        self.partitions, self.auto_ack = partitions, auto_ack
        self.sent: list[tuple[str, bytes, bytes, int]] = []
        self.pending: dict[bytes, Callable[[Exception | None], None]] = {}
        self.lock = threading.Lock()
        self.closed = False
        self.raise_on_send: Exception | None = None

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None,
             on_done: Any = None, partition: int | None = None) -> None:
        if self.raise_on_send is not None:
            raise self.raise_on_send
        with self.lock:
            self.sent.append((topic, value, key or b"", partition if partition is not None else -1))
            if self.auto_ack:
                on_done(None)
            else:
                self.pending[value] = on_done

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    def complete(self, values: list[bytes], error: Exception | None = None) -> None:
        with self.lock:
            callbacks = [self.pending.pop(v) for v in values]
        for cb in callbacks:
            cb(error)

    def close(self, timeout: float = 10.0) -> None:
        self.closed = True


def value(i: int) -> bytes:
    return b"event-%05d" % i


def fill(q: DurableQueue, start: int, end: int) -> None:
    q.append([payload("events.click", b"c%d" % (i % 7), value(i)) for i in range(start, end)])


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


@pytest.fixture
def queue(tmp_path: Path) -> DurableQueue:
    return DurableQueue.open(str(tmp_path / "q"), 4096, 1 << 20)


def start(queue: DurableQueue, producer: Any, max_events: int = 1000, max_bytes: int = 1 << 20) -> Sender:
    s = Sender(queue, lambda: producer, max_events, max_bytes)
    s.start()
    return s


def test_acks_in_any_order_advance_only_the_contiguous_position(queue: DurableQueue) -> None:
    p = FakeProducer()
    fill(queue, 0, 5)
    s = start(queue, p)
    wait_until(lambda: len(p.sent) == 5)
    p.complete([value(1), value(3), value(4)])
    time.sleep(0.2)
    assert s.tracker.watermark == 0
    p.complete([value(0)])
    wait_until(lambda: s.tracker.watermark == 2)
    p.complete([value(2)])
    wait_until(lambda: s.tracker.watermark == 5)
    assert s.stop(1.0)
    assert queue.acked_seq == 5


def test_failed_sends_are_resent_but_acknowledged_ones_are_not(queue: DurableQueue) -> None:
    p = FakeProducer()
    fill(queue, 0, 4)
    s = start(queue, p)
    wait_until(lambda: len(p.sent) == 4)
    p.complete([value(0), value(2)])
    p.complete([value(1), value(3)], KafkaTimeoutError("expired"))
    wait_until(lambda: len(p.sent) == 6)
    assert [v for _, v, _, _ in p.sent[4:]] == [value(1), value(3)]   # in queue order, 0 and 2 not again
    p.complete([value(1), value(3)])
    wait_until(lambda: s.tracker.watermark == 4)
    s.stop(1.0)


def test_partition_is_the_default_partitioners_choice(queue: DurableQueue) -> None:
    p = FakeProducer(partitions=6, auto_ack=True)
    fill(queue, 0, 30)
    s = start(queue, p)
    wait_until(lambda: s.tracker.watermark == 30)
    s.stop(1.0)

    class Cluster:
        def topics(self) -> set[str]:
            return {"events.click"}

        def partitions_for_topic(self, topic: str) -> set[int]:
            return set(range(6))

        available_partitions_for_topic = partitions_for_topic

    for topic, _, key, partition in p.sent:
        assert partition == DefaultPartitioner().partition(topic, key, key, None, None, Cluster())


def test_in_flight_is_capped(queue: DurableQueue) -> None:
    p = FakeProducer()
    fill(queue, 0, 50)
    s = start(queue, p, max_events=10)
    wait_until(lambda: len(p.sent) == 10)
    time.sleep(0.2)
    assert len(p.sent) == 10
    p.complete([value(i) for i in range(10)])
    wait_until(lambda: len(p.sent) == 20)
    s.stop(0.1)


def test_in_flight_bytes_are_capped(queue: DurableQueue) -> None:
    p = FakeProducer()
    fill(queue, 0, 20)
    s = start(queue, p, max_bytes=5 * (len(value(0)) + 2))
    wait_until(lambda: len(p.sent) == 5)
    time.sleep(0.2)
    assert len(p.sent) == 5
    p.complete([value(i) for i in range(5)])
    wait_until(lambda: len(p.sent) == 10)
    assert [v for _, v, _, _ in p.sent] == [value(i) for i in range(10)]
    s.stop(0.1)


def test_kafka_unreachable_at_start_is_retried(queue: DurableQueue) -> None:
    p = FakeProducer(auto_ack=True)
    attempts = []

    def connect() -> FakeProducer:
        attempts.append(1)
        if len(attempts) < 3:
            raise ConnectionError("no brokers")
        return p

    fill(queue, 0, 3)
    s = Sender(queue, connect, 100, 1 << 20)
    s.start()
    wait_until(lambda: s.tracker.watermark == 3, timeout=10)
    assert len(attempts) == 3 and s.connected
    s.stop(0.5)


def test_send_that_raises_is_retried_from_the_same_record(queue: DurableQueue) -> None:
    p = FakeProducer(auto_ack=True)
    p.raise_on_send = KafkaTimeoutError("metadata not available")
    fill(queue, 0, 3)
    s = start(queue, p)
    time.sleep(0.3)
    assert s.tracker.watermark == 0
    p.raise_on_send = None
    wait_until(lambda: s.tracker.watermark == 3, timeout=10)
    assert [v for _, v, _, _ in p.sent] == [value(i) for i in range(3)]
    s.stop(0.5)


def test_stop_drains_the_backlog_then_closes(queue: DurableQueue) -> None:
    p = FakeProducer(auto_ack=True)
    s = start(queue, p)
    fill(queue, 0, 100)
    assert s.stop(5.0)
    assert p.closed and queue.acked_seq == 100 and len(p.sent) == 100


def test_stop_with_kafka_silent_keeps_the_backlog(queue: DurableQueue) -> None:
    p = FakeProducer()
    fill(queue, 0, 10)
    s = start(queue, p)
    wait_until(lambda: len(p.sent) == 10)
    p.complete([value(0), value(1)])
    assert not s.stop(0.3)
    assert queue.acked_seq == 2


def test_resend_after_restart_starts_at_the_acknowledged_position(tmp_path: Path) -> None:
    q = DurableQueue.open(str(tmp_path / "q"), 4096, 1 << 20)
    fill(q, 0, 10)
    p = FakeProducer()
    s = start(q, p)
    wait_until(lambda: len(p.sent) == 10)
    p.complete([value(i) for i in (0, 1, 2, 5)])
    s.stop(0.2)
    q.close()
    q2 = DurableQueue.open(str(tmp_path / "q"), 4096, 1 << 20)
    p2 = FakeProducer(auto_ack=True)
    s2 = start(q2, p2)
    wait_until(lambda: s2.tracker.watermark == 10)
    assert [v for _, v, _, _ in p2.sent] == [value(i) for i in range(3, 10)]
    s2.stop(0.2)


def test_ack_tracker() -> None:
    t = AckTracker(10)
    for seq in (12, 11, 14):
        t.settle(seq)
    assert t.watermark == 10 and t.settled(12) and not t.settled(13)
    t.settle(10)
    assert t.watermark == 13 and t.pending_above == 1
    t.settle_range(13, 20)
    assert t.watermark == 20 and t.pending_above == 0
    t.settle(3)
    assert t.watermark == 20


def test_partition_cache_notices_new_partitions() -> None:
    now = [0.0]
    counts = {"t": 3}
    parts = Partitions(lambda topic: set(range(counts[topic])), clock=lambda: now[0])
    first = {k: parts.partition("t", k) for k in (b"a", b"b", b"c", b"d", b"e")}
    assert all(0 <= p < 3 for p in first.values())
    counts["t"] = 12
    now[0] = 100.0
    again = {k: parts.partition("t", k) for k in first}
    assert again == {k: (murmur2(k) & 0x7FFFFFFF) % 12 for k in first}
    assert first == {k: (murmur2(k) & 0x7FFFFFFF) % 3 for k in first}


def test_partition_cache_keeps_its_partitions_while_kafka_is_unreachable() -> None:
    now, down = [0.0], [False]

    def lookup(topic: str) -> set[int]:
        if down[0]:
            raise RetriableKafkaError("metadata: _TRANSPORT")
        return set(range(6))
    parts = Partitions(lookup, clock=lambda: now[0])
    before = parts.partition("t", b"campaign-7")
    down[0], now[0] = True, 100.0                  # a recheck is due, and Kafka is down
    assert parts.partition("t", b"campaign-7") == before
    with pytest.raises(RetriableKafkaError):      # a topic never looked up cannot be guessed
        parts.partition("other", b"campaign-7")


def test_a_producer_that_never_answers_is_replaced_and_everything_resent(
        queue: DurableQueue, monkeypatch: pytest.MonkeyPatch) -> None:
    import eventd.roles.collector.sender as sender_module
    monkeypatch.setattr(sender_module, "STALL_AFTER", 0.5)
    wedged, fresh = FakeProducer(), FakeProducer(auto_ack=True)
    producers = iter([wedged, fresh])
    fill(queue, 0, 30)
    s = Sender(queue, lambda: next(producers), 1000, 1 << 20)
    s.start()
    wait_until(lambda: len(wedged.sent) == 30)
    wedged.complete([value(i) for i in range(10)])              # answers 10, then falls silent
    wait_until(lambda: len(fresh.sent) == 20)                   # abandoned: the other 20 go again
    wait_until(lambda: wedged.closed)                           # closed without waiting for it
    assert sorted(v for _, v, _, _ in fresh.sent) == [value(i) for i in range(10, 30)]
    wedged.complete([value(i) for i in range(10, 30)], KafkaTimeoutError("late"))   # stale: ignored
    fill(queue, 30, 40)
    wait_until(lambda: s.tracker.watermark == 40)
    assert s.stop(5) and s.unacked == 0
