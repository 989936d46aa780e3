"""The shared consumer loop's support for staging sinks (added for the HDFS uploader):
``write`` may return the offsets durable so far — the loop commits those, not the batch end —
and ``tick`` is called on every iteration and once more, with a deadline, when stopping."""

from __future__ import annotations

import threading
import time

from eventd.config.common import DeadLetterConfig
from eventd.kafka.batch import Batch
from eventd.kafka.consumer_loop import ConsumerLoop, LoopSettings, Start
from eventd.kafka.deadletter import DeadLetter, InvalidLimit
from eventd.kafka.types import TopicPartition
from fake_kafka import FakeConsumer, FakeProducer

TP = TopicPartition("t", 0)


class StagingSink:
    """Stages everything; makes it "durable" only in tick, 10 offsets at a time."""

    def __init__(self) -> None:
        self.staged_to = 0
        self.durable_to = 0
        self.ticks: list[float | None] = []

    def start(self, partitions, committed):  # type: ignore[no-untyped-def]
        return {tp: Start() for tp in partitions}

    def warm(self, msg) -> None:  # type: ignore[no-untyped-def]
        pass

    def transform(self, msg) -> bytes:  # type: ignore[no-untyped-def]
        return msg.value

    def write(self, batch: Batch, loop) -> dict:  # type: ignore[no-untyped-def]
        self.staged_to = batch.next_offsets()[TP]
        return {}

    def tick(self, loop, deadline):  # type: ignore[no-untyped-def]
        self.ticks.append(deadline)
        target = self.staged_to if deadline is not None else min(self.staged_to, self.durable_to + 10)
        if target > self.durable_to:
            self.durable_to = target
            return {TP: target}
        return None

    def close(self) -> None:
        pass


def test_staging_sink_commits_only_what_tick_reports() -> None:
    consumer = FakeConsumer({TP: [b"m%d" % i for i in range(95)]})
    sink = StagingSink()
    settings = LoopSettings("test", ["t"], max_items=1000, max_age=0.01, poll_timeout=0.01, drain_timeout=1)
    loop = ConsumerLoop(settings, consumer, sink, DeadLetter(FakeProducer(), "dlq", "test"),  # type: ignore[arg-type]
                        InvalidLimit(DeadLetterConfig(0.5, 100)))
    stop = threading.Event()
    seen: list[int] = []

    def on_poll(c: FakeConsumer) -> None:
        if c.committed_offsets.get(TP):
            seen.append(c.committed_offsets[TP].offset)
        if sink.durable_to >= 50:
            stop.set()
    consumer.on_poll = on_poll
    t = threading.Thread(target=loop.run, args=(stop,))
    t.start()
    t.join(10)
    assert all(off % 10 == 0 for off in seen), "never the batch end, only what tick made durable"
    assert seen == sorted(seen) and seen[-1] >= 50
    # stopping: the last tick gets a deadline and its offsets are committed before close
    assert sink.ticks[-1] is not None and sink.ticks[-1] > time.monotonic() - 5
    assert consumer.committed_offsets[TP].offset == 95
    assert consumer.closed
