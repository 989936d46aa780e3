"""eventd's edge over confluent-kafka: error classes, the consumer adapter's poll and commit
contracts, the producer's byte budget. librdkafka itself is replaced by scripted fakes here;
tests/integration/test_kafka_client.py checks the same contracts against the real broker."""

from __future__ import annotations

import threading
import time
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import KafkaError as CError

from eventd.kafka.consumer import Consumer, ConsumerStuck
from eventd.kafka.partitions import murmur2
from eventd.kafka.producer import Producer
from eventd.kafka.types import (CommitFailedError, KafkaError, KafkaTimeoutError, OffsetAndMetadata,
                                TopicAlreadyExistsError, TopicPartition, client_errors, from_client, retriable)

TP0, TP1 = TopicPartition("t", 0), TopicPartition("t", 1)


def client_error(code: int, fatal: bool = False) -> confluent_kafka.KafkaException:
    return confluent_kafka.KafkaException(CError(code, "scripted", fatal=fatal))


@pytest.mark.parametrize("code, kind, is_retriable", [
    (CError._TRANSPORT, KafkaError, True),            # librdkafka's own retriable() says False
    (CError._ALL_BROKERS_DOWN, KafkaError, True),
    (CError._WAIT_COORD, KafkaError, True),
    (CError._MSG_TIMED_OUT, KafkaTimeoutError, True),
    (CError.UNKNOWN_MEMBER_ID, CommitFailedError, False),
    (CError.ILLEGAL_GENERATION, CommitFailedError, False),
    (CError.TOPIC_ALREADY_EXISTS, TopicAlreadyExistsError, False),
    (CError.MSG_SIZE_TOO_LARGE, KafkaError, False),
    (CError.TOPIC_AUTHORIZATION_FAILED, KafkaError, False),
])
def test_client_errors_are_classed_by_code(code: int, kind: type, is_retriable: bool) -> None:
    error = from_client(client_error(code), "what: ")
    assert isinstance(error, kind) and retriable(error) is is_retriable
    assert str(error).startswith("what: " + CError(code).name())


def test_a_fatal_error_is_never_retriable() -> None:
    assert not retriable(from_client(client_error(CError._TRANSPORT, fatal=True)))


def test_client_errors_converts_the_clients_exception_and_passes_others_through() -> None:
    with pytest.raises(KafkaTimeoutError, match="^listing: ") as caught:
        with client_errors("listing: "):
            raise client_error(CError._TIMED_OUT)
    assert caught.value.__suppress_context__
    with pytest.raises(ValueError, match="not the client's"):
        with client_errors("listing: "):
            raise ValueError("not the client's")


def test_murmur2_matches_the_java_client_vectors() -> None:
    # Values from Kafka's UtilsTest.testMurmur2 (Java ints, shown here unsigned).
    vectors = {b"21": -973932308, b"foobar": -790332482, b"a-little-bit-long-string": -985981536,
               b"a-little-bit-longer-string": -1486304829, b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8": -58897971,
               b"abc": 479470107}
    assert {k: murmur2(k) for k in vectors} == {k: v & 0xFFFFFFFF for k, v in vectors.items()}


# -- the consumer adapter ------------------------------------------------------------------
class FakeMessage:
    def __init__(self, tp: TopicPartition | None, offset: int = 0, error: Any = None) -> None:
        self.tp, self._offset, self._error = tp, offset, error

    def error(self) -> Any:
        return self._error

    def topic(self) -> str:
        return self.tp.topic if self.tp else ""

    def partition(self) -> int:
        return self.tp.partition if self.tp else 0

    def offset(self) -> int:
        return self._offset

    def key(self) -> bytes:
        return b"k"

    def value(self) -> bytes:
        return b"v%d" % self._offset

    def timestamp(self) -> tuple[int, int]:
        return (1, 1000 + self._offset)


class ScriptedClient:
    """librdkafka's consumer: ``poll`` pops scripted steps; a callable step is a rebalance
    served inside that poll call, before the message that follows it."""

    def __init__(self, steps: list[Any]) -> None:
        self.steps = steps
        self.assigned: list[Any] = []
        self.commit_delay = 0.0

    def poll(self, timeout: float) -> Any:
        assert timeout >= 0, "a negative timeout makes librdkafka wait forever"
        while self.steps and callable(self.steps[0]):
            self.steps.pop(0)()
        return self.steps.pop(0) if self.steps else None

    def assign(self, parts: list[Any]) -> None:
        self.assigned = [(p.topic, p.partition, p.offset) for p in parts]

    def unassign(self) -> None:
        self.assigned = []

    def commit(self, offsets: Any, asynchronous: bool) -> Any:
        time.sleep(self.commit_delay)
        return offsets


def adapter(steps: list[Any], max_records: int = 100) -> tuple[Consumer, ScriptedClient]:
    client = ScriptedClient(steps)
    return Consumer(client, max_records), client  # type: ignore[arg-type]


def test_poll_groups_messages_by_partition_up_to_the_limit() -> None:
    consumer, _ = adapter([FakeMessage(TP0, 0), FakeMessage(TP1, 0), FakeMessage(TP0, 1), FakeMessage(TP0, 2)],
                          max_records=3)
    got = consumer.poll(-1.0)       # clamped: never "wait forever"
    assert {tp: [m.offset for m in msgs] for tp, msgs in got.items()} == {TP0: [0, 1], TP1: [0]}
    assert got[TP0][1].value == b"v1" and got[TP0][1].timestamp == 1001
    assert [m.offset for m in consumer.poll(0)[TP0]] == [2]


def test_messages_read_before_a_rebalance_are_not_returned(caplog: pytest.LogCaptureFixture) -> None:
    """A rebalance served inside a later librdkafka poll call revokes what was read before it
    in the same adapter call; what follows it is returned."""
    consumer, client = adapter([])
    revoked: list[list[TopicPartition]] = []
    consumer._on_revoked = revoked.append
    consumer._on_assigned = lambda tps: {tp: 7 for tp in tps}
    part = confluent_kafka.TopicPartition("t", 0)
    client.steps = [FakeMessage(TP0, 3), FakeMessage(TP0, 4),
                    lambda: consumer._revoke(None, [part]), lambda: consumer._assign(None, [part]),
                    FakeMessage(None, error=CError(CError._TRANSPORT, "broker down")), FakeMessage(TP0, 7)]
    got = consumer.poll(0)
    assert revoked == [[TP0]] and client.assigned == [("t", 0, 7)]
    assert [m.offset for m in got[TP0]] == [7]
    assert "_TRANSPORT" in caplog.text


def test_a_commit_that_never_returns_stops_the_role_within_its_deadline() -> None:
    consumer, client = adapter([])
    client.commit_delay = 5.0
    t0 = time.monotonic()
    with pytest.raises(ConsumerStuck, match="restarting the role"):
        consumer.commit({TP0: OffsetAndMetadata(5, "")}, timeout=0.2)
    assert time.monotonic() - t0 < 2.0


def test_a_refused_commit_raises_the_classed_error() -> None:
    consumer, client = adapter([])
    client.commit = lambda offsets, asynchronous: (_ for _ in ()).throw(client_error(CError.UNKNOWN_MEMBER_ID))  # type: ignore[method-assign]
    with pytest.raises(CommitFailedError):
        consumer.commit({TP0: OffsetAndMetadata(5, "")})


# -- the producer ------------------------------------------------------------------------
class ScriptedProducer:
    """librdkafka's producer: refuses the first ``full`` produce calls with BufferError; keeps
    the delivery callbacks until ``deliver``."""

    def __init__(self, full: int = 0) -> None:
        self.full, self.pending, self.lock = full, [], threading.Lock()

    def produce(self, topic: str, value: bytes, key: bytes | None = None, on_delivery: Any = None,
                **_: Any) -> None:
        if self.full:
            self.full -= 1
            raise BufferError("Local: Queue full")
        with self.lock:
            self.pending.append(on_delivery)

    def poll(self, timeout: float) -> int:
        time.sleep(min(timeout, 0.01))
        return 0

    def flush(self, timeout: float) -> int:
        return len(self.pending)

    def deliver(self, error: Any = None) -> None:
        with self.lock:
            pending, self.pending = self.pending, []
        for report in pending:
            report(error, None)


def producer_with(fake: ScriptedProducer, cap: int) -> Producer:
    p = Producer.__new__(Producer)
    p._producer, p._cap, p._in_flight = fake, cap, 0  # type: ignore[assignment]
    p._cond = threading.Condition(threading.Lock())
    return p


def test_the_producer_waits_for_room_and_counts_bytes_back_on_delivery() -> None:
    fake = ScriptedProducer(full=2)
    p = producer_with(fake, cap=10)
    answers: list[Exception | None] = []
    future = p.send("t", b"12345", on_done=answers.append)     # BufferError twice, then queued
    assert p.in_flight_bytes == 5 and not future.is_done
    fake.deliver()
    assert answers == [None] and future.succeeded() and p.in_flight_bytes == 0


def test_a_failed_delivery_reaches_the_callback_as_an_eventd_error() -> None:
    fake = ScriptedProducer()
    p = producer_with(fake, cap=100)
    answers: list[Exception | None] = []
    future = p.send("t", b"x", on_done=answers.append)
    fake.deliver(CError(CError._MSG_TIMED_OUT, "expired"))
    assert isinstance(answers[0], KafkaTimeoutError) and future.exception is answers[0]
    assert retriable(answers[0])


def test_flush_with_messages_left_raises_a_timeout() -> None:
    fake = ScriptedProducer()
    p = producer_with(fake, cap=100)
    p.send("t", b"x")
    with pytest.raises(KafkaTimeoutError, match="1 message"):
        p.flush(0.1)


def test_client_errors_are_logged_once_per_interval_with_a_count(caplog: pytest.LogCaptureFixture,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from eventd.kafka import clients
    now = [1000.0]
    monkeypatch.setattr(clients.time, "monotonic", lambda: now[0])
    errors = clients.ErrorLog("collector-0")
    down = CError(CError._ALL_BROKERS_DOWN, "1/1 brokers are down")
    for _ in range(20):                      # an outage: many reports a second
        errors(down)
        now[0] += 0.05
    now[0] += clients.ERROR_LOG_INTERVAL
    errors(down)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 2 and lines[1].endswith("(19 more since)"), lines
