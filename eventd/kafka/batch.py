"""Batches of consumed messages, kept per partition with their exact offset ranges."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Generic, Iterator, NamedTuple, TypeVar

from eventd.kafka.types import TopicPartition

T = TypeVar("T")


class Message(NamedTuple):
    """One Kafka message as a role sees it (a tuple: immutable, and the consumer builds one per
    message with ``tuple.__new__``, a single C call — a dataclass costs a Python ``__init__``)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)


@dataclass
class PartitionBatch(Generic[T]):
    """The items of one partition covering offsets ``first..last`` (inclusive). Messages that
    produced no item (dead-lettered, filtered) still count in the range: committing
    ``last + 1`` moves past them too."""

    first: int
    last: int
    items: list[T] = field(default_factory=list)


@dataclass
class Batch(Generic[T]):
    parts: dict[TopicPartition, PartitionBatch[T]] = field(default_factory=dict)
    opened: float = field(default_factory=time.monotonic)
    items: int = 0
    messages: int = 0

    def add(self, tp: TopicPartition, offset: int, item: T | None) -> None:
        part = self.parts.get(tp)
        if part is None:
            part = self.parts[tp] = PartitionBatch(offset, offset)
        part.last = offset
        self.messages += 1
        if item is not None:
            part.items.append(item)
            self.items += 1

    def extend(self, tp: TopicPartition, first: int, last: int, items: list[T], messages: int) -> None:
        """``add`` of ``messages`` consecutive messages ``first..last`` that gave ``items``."""
        part = self.parts.get(tp)
        if part is None:
            part = self.parts[tp] = PartitionBatch(first, last)
        part.last = last
        part.items += items
        self.messages += messages
        self.items += len(items)

    def drop(self, tps: list[TopicPartition]) -> None:
        """Forget the parts of ``tps`` (revoked partitions: their new owner redoes them)."""
        for tp in tps:
            part = self.parts.pop(tp, None)
            if part is not None:
                self.items -= len(part.items)
                self.messages -= part.last - part.first + 1

    def split(self, held: list[TopicPartition]) -> tuple["Batch[T]", "Batch[T]"]:
        """(this batch without ``held``, a new batch with only the parts of ``held``)."""
        kept: Batch[T] = Batch()
        for tp in held:
            part = self.parts.get(tp)
            if part is not None:
                kept.parts[tp] = part
                kept.items += len(part.items)
                kept.messages += part.last - part.first + 1
        self.drop(held)
        return self, kept

    def age(self) -> float:
        return time.monotonic() - self.opened

    def next_offsets(self) -> dict[TopicPartition, int]:
        return {tp: p.last + 1 for tp, p in self.parts.items()}

    def __iter__(self) -> Iterator[tuple[TopicPartition, PartitionBatch[T]]]:
        return iter(sorted(self.parts.items()))

    def __bool__(self) -> bool:
        return bool(self.parts)
