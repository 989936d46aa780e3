"""Where a consumer's partitions stand: the first offset at a time, and whether reading has caught
up with the end (the monitor starts its windows by time and knows when it reads live)."""

from __future__ import annotations

from typing import Callable

from eventd.kafka.consumer import Consumer
from eventd.kafka.types import KafkaError, TopicPartition


Positions = Callable[[list[TopicPartition], int], dict[TopicPartition, int]]


def positions_by_time(consumer: Consumer) -> Positions:
    """The first offset whose Kafka timestamp is at or after ``t_ms``; the end when there is none."""
    def positions(tps: list[TopicPartition], t_ms: int) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        found = consumer.offsets_for_times(tps, t_ms)
        out: dict[TopicPartition, int] = {}
        for tp in tps:
            offset = found.get(tp)
            if offset is None:
                marks = consumer.watermarks(tp)
                offset = marks[1] if marks else 0
            out[tp] = offset
        return out
    return positions


def caught_up(consumer: Consumer) -> set[TopicPartition]:
    """Assigned partitions whose read position is at their last known end."""
    assigned = consumer.assignment()
    try:
        positions = consumer.positions(assigned)
    except KafkaError:
        return set()
    done = set()
    for tp, position in positions.items():
        try:
            marks = consumer.watermarks(tp, cached=True)
        except KafkaError:
            continue
        if marks is not None and position >= marks[1]:
            done.add(tp)
    return done
