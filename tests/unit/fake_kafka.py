"""An in-memory stand-in for kafka-python's KafkaConsumer and for the Producer, with just
the calls the consumer loop makes. Unit tests only; every behaviour is also tested against
the real broker in tests/integration."""

from __future__ import annotations

from collections import namedtuple
from typing import Any

from eventd.kafka.types import OffsetAndMetadata, TopicPartition


Record = namedtuple("Record", "topic partition offset key value timestamp")


class FakeConsumer:
    def __init__(self, logs: dict[TopicPartition, list[bytes]], committed: dict | None = None) -> None:
        self.logs = logs
        self.committed_offsets: dict[TopicPartition, OffsetAndMetadata] = dict(committed or {})
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()
        self.listener: Any = None
        self.commits: list[dict] = []
        self.closed = False
        self.on_poll: Any = None   # hook(self) run at each poll, e.g. to set stop

    def topics(self) -> set[str]:
        return {tp.topic for tp in self.logs}

    def subscribe(self, topics: list[str], listener: Any) -> None:
        self.listener = listener

    def assignment(self) -> set[TopicPartition]:
        return set(self.positions)

    def poll(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        if self.listener is not None and not self.positions:
            self.positions = {tp: 0 for tp in self.logs}
            self.listener.on_partitions_assigned(list(self.logs))
        if self.on_poll:
            self.on_poll(self)
        out = {}
        for tp, pos in self.positions.items():
            if tp in self.paused:
                continue
            values = self.logs[tp][pos:pos + 100]
            if values:
                out[tp] = [Record(tp.topic, tp.partition, pos + i, None, v, 0) for i, v in enumerate(values)]
                self.positions[tp] = pos + len(values)
        return out

    def committed(self, tp: TopicPartition, metadata: bool = False) -> OffsetAndMetadata | None:
        return self.committed_offsets.get(tp)

    def commit(self, offsets: dict) -> None:
        self.commits.append(dict(offsets))
        self.committed_offsets.update(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.positions[tp] = offset

    def beginning_offsets(self, tps: list) -> dict:
        return {tp: 0 for tp in tps}

    def pause(self, *tps: TopicPartition) -> None:
        self.paused |= set(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self.paused -= set(tps)

    def highwater(self, tp: TopicPartition) -> int:
        return len(self.logs[tp])

    def position(self, tp: TopicPartition) -> int:
        return self.positions[tp]

    def close(self, autocommit: bool = False) -> None:
        self.closed = True


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.flushes = 0
        self.refuse: Exception | None = None     # answer every send with this error

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None, on_done: Any = None) -> None:
        self.sent.append((topic, value, key, dict(headers or [])))
        if on_done is not None:
            on_done(self.refuse)

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1
