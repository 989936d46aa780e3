"""An in-memory stand-in for eventd's Kafka consumer adapter (eventd.kafka.consumer.Consumer)
and for the Producer, with just the calls the consumer loop makes. As with librdkafka, the
rebalance callbacks run inside ``poll`` on the caller's thread. Unit tests only; every
behaviour is also tested against the real broker in tests/integration."""

from __future__ import annotations

from typing import Any

from eventd.kafka.batch import Message
from eventd.kafka.types import OffsetAndMetadata, TopicPartition


class FakeConsumer:
    def __init__(self, logs: dict[TopicPartition, list[bytes]], committed: dict | None = None) -> None:
        self.logs = logs
        self.committed_offsets: dict[TopicPartition, OffsetAndMetadata] = dict(committed or {})
        self.offsets: dict[TopicPartition, int] = {}     # next offset to read
        self.paused: set[TopicPartition] = set()
        self.on_assigned: Any = None
        self.on_revoked: Any = None
        self.commits: list[dict] = []
        self.closed = False
        self.on_poll: Any = None   # hook(self) run at each poll, e.g. to set stop

    def topics(self) -> set[str]:
        return {tp.topic for tp in self.logs}

    def subscribe(self, topics: list[str], on_assigned: Any, on_revoked: Any) -> None:
        self.on_assigned, self.on_revoked = on_assigned, on_revoked

    def assignment(self) -> set[TopicPartition]:
        return set(self.offsets)

    def assign(self, tps: list[TopicPartition]) -> None:
        """A rebalance giving ``tps``: the loop chooses their start (as inside librdkafka's poll)."""
        starts = self.on_assigned(list(tps))
        for tp in tps:
            self.offsets[tp] = starts.get(tp, self.committed_offsets[tp].offset
                                            if tp in self.committed_offsets else 0)

    def revoke(self, tps: list[TopicPartition]) -> None:
        self.on_revoked(list(tps))
        for tp in tps:
            self.offsets.pop(tp, None)
            self.paused.discard(tp)

    def poll(self, timeout: float = 0) -> dict:
        if self.on_assigned is not None and not self.offsets:
            self.assign(list(self.logs))
        if self.on_poll:
            self.on_poll(self)
        out = {}
        for tp, pos in self.offsets.items():
            if tp in self.paused:
                continue
            values = self.logs[tp][pos:pos + 100]
            if values:
                out[tp] = [Message(tp.topic, tp.partition, pos + i, None, v, 0) for i, v in enumerate(values)]
                self.offsets[tp] = pos + len(values)
        return out

    def committed(self, tps: list[TopicPartition]) -> dict[TopicPartition, OffsetAndMetadata | None]:
        return {tp: self.committed_offsets.get(tp) for tp in tps}

    def commit(self, offsets: dict) -> None:
        self.commits.append(dict(offsets))
        self.committed_offsets.update(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.offsets[tp] = offset

    def watermarks(self, tp: TopicPartition, cached: bool = False) -> tuple[int, int]:
        return 0, len(self.logs[tp])

    def pause_all(self) -> None:
        self.paused |= set(self.offsets)

    def resume_all(self) -> None:
        self.paused.clear()

    def positions(self, tps: Any) -> dict[TopicPartition, int]:
        return {tp: self.offsets[tp] for tp in tps}

    def close(self) -> None:
        if self.offsets and self.on_revoked is not None:
            self.on_revoked(list(self.offsets))
        self.closed = True


class FakeProducer:
    def __init__(self) -> None:
        self.sent: list[tuple] = []
        self.flushes = 0
        self.refuse: Exception | None = None     # answer every send with this error

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Any = None, on_done: Any = None,
             partition: int | None = None) -> None:
        self.sent.append((topic, value, key, dict(headers or [])))
        if on_done is not None:
            on_done(self.refuse)

    def flush(self, timeout: float | None = None) -> None:
        self.flushes += 1
