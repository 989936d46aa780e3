"""The Kafka adapter with a fake producer: what it sends, and that a checkpoint completes
only when every event before it is acknowledged, in order."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import pytest
from kafka.partitioner.default import murmur2

from eventd.config import load_config
from eventd.event.codec import Decoder, encode
from eventd.event.envelope import Event, EventParser
from eventd.event.schemas import SchemaStore
from eventd.replay.ledger import Checkpoint
from eventd.replay.sinks import KafkaTarget, ReplayFailed, destination_key

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(str(REPO / "conf" / "eventd.yaml"))
STORE = SchemaStore.load(CFG.events.schema_dir)
PARSER = EventParser(STORE, CFG.events, CFG.kafka.topics.prefix, CFG.kafka.topics.partitions, "h")


class CallbackProducer:
    """Keeps each send's callback so the test decides when Kafka answers."""

    def __init__(self, fail_send: bool = False) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, int | None]] = []
        self.callbacks: list[Callable[[Exception | None], None]] = []
        self.fail_send = fail_send
        self.flushed = self.closed = False

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None,
             on_done: Any = None, partition: int | None = None) -> None:
        if self.fail_send:
            raise RuntimeError("metadata timeout")
        self.sent.append((topic, value, key, partition))
        self.callbacks.append(on_done)

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2, 3, 4, 5}

    def flush(self, timeout: float | None = None) -> None:
        self.flushed = True
        for cb in self.callbacks:
            cb(None)
        self.callbacks = []

    def close(self, timeout: float = 10.0) -> None:
        self.closed = True


def event(i: int) -> tuple[Event, bytes, int]:
    line = b'{"type": "click", "time": 1767225600, "campaign_id": %d, "id": "e%d"}' % (i, i)
    ev = PARSER.parse(line, "replay", 0, lambda: "unused")
    return ev, encode(ev.schema, ev.record), i


def cp(n: int) -> Checkpoint:
    return Checkpoint(None, n, n, "0" * 32)  # type: ignore[arg-type]


def test_sends_the_collectors_encoding_topic_and_key() -> None:
    producer = CallbackProducer()
    target = KafkaTarget(CFG, producer)
    target.add(*event(7))
    target.mark(cp(7))
    topic, value, key, partition = producer.sent[0]
    assert topic == CFG.events.types["click"].topic and key == b"7"
    assert partition == (murmur2(b"7") & 0x7FFFFFFF) % 6      # kafka-python's default partitioner
    schema, record = Decoder(STORE).decode(value)
    assert schema.type == "click" and record["id"] == "e7" and record["input"] == "replay"


def durable_list(target: KafkaTarget) -> list[int]:
    got: list[int] = []
    target.on_durable = lambda cps: got.extend(c.offset for c in cps)
    return got


def test_checkpoints_are_reported_in_order_once_all_before_are_acknowledged() -> None:
    producer = CallbackProducer()
    target = KafkaTarget(CFG, producer)
    durable = durable_list(target)
    for i in range(3):
        target.add(*event(i))
        target.mark(cp(i))
    target.mark(cp(3))                       # an empty batch: complete once the ones before are
    assert durable == []
    producer.callbacks[1](None)             # the second batch answered first
    assert durable == []
    producer.callbacks[0](None)
    assert durable == [0, 1]
    target.finish()
    assert durable == [0, 1, 2, 3] and producer.flushed


def test_a_failed_send_fails_the_run_and_reports_nothing_after_it() -> None:
    producer = CallbackProducer()
    target = KafkaTarget(CFG, producer)
    durable = durable_list(target)
    target.add(*event(1))
    target.mark(cp(1))
    target.add(*event(2))
    target.mark(cp(2))
    producer.callbacks[1](None)
    producer.callbacks[0](RuntimeError("not enough replicas"))
    assert durable == []
    with pytest.raises(ReplayFailed, match="not enough replicas"):
        target.check()
    with pytest.raises(ReplayFailed):
        target.add(*event(3))


def test_events_go_out_in_bursts_and_at_each_checkpoint_in_order() -> None:
    producer = CallbackProducer()
    target = KafkaTarget(CFG, producer)
    durable = durable_list(target)
    for i in range(target.burst - 1):
        target.add(*event(i))
    assert producer.sent == []                  # held: fewer than a burst
    target.add(*event(target.burst - 1))
    assert len(producer.sent) == target.burst   # the burst is full: all of it sent
    target.add(*event(1000))
    target.mark(cp(1000))                       # a checkpoint sends what is held before it counts
    sent_ids = [Decoder(STORE).decode(value)[1]["id"] for _, value, _, _ in producer.sent]
    assert sent_ids == [f"e{i}" for i in range(target.burst)] + ["e1000"]
    producer.flush()
    assert durable == [1000]


def test_held_events_are_never_covered_by_a_checkpoint_unless_acknowledged() -> None:
    producer = CallbackProducer()
    target = KafkaTarget(CFG, producer)
    durable = durable_list(target)
    target.add(*event(1))
    target.mark(cp(1))
    target.add(*event(2))                       # held when the run stops: never marked
    producer.callbacks[0](None)
    assert durable == [1]
    target.close()
    assert len(producer.sent) == 1              # not sent, not recorded: a re-run sends it


@pytest.mark.parametrize("when", ["burst", "checkpoint", "finish"])
def test_a_send_that_raises_fails_the_run(when: str) -> None:
    target = KafkaTarget(CFG, CallbackProducer(fail_send=True))
    with pytest.raises(ReplayFailed, match="metadata timeout"):
        for i in range(target.burst if when == "burst" else 1):
            target.add(*event(i))
        if when == "checkpoint":
            target.mark(cp(1))
        elif when == "finish":
            target.finish()


def test_destination_key_differs_per_destination() -> None:
    assert destination_key("kafka", ["a:1"], "p.") == destination_key("kafka", ["a:1"], "p.")
    assert destination_key("kafka", ["a:1"], "p.") != destination_key("kafka", ["a:1"], "q.")
