"""Where a consumer's partitions stand: the first offset at a time, and whether reading has caught
up with the end (the monitor starts its windows by time and knows when it reads live)."""

from __future__ import annotations

from typing import Callable

from kafka import KafkaConsumer

from eventd.kafka.types import KafkaError, TopicPartition


Positions = Callable[[list[TopicPartition], int], dict[TopicPartition, int]]


def positions_by_time(consumer: KafkaConsumer) -> Positions:
    """The first offset whose Kafka timestamp is at or after ``t_ms``; the end when there is none."""
    def positions(tps: list[TopicPartition], t_ms: int) -> dict[TopicPartition, int]:
        if not tps:
            return {}
        found = consumer.offsets_for_times({tp: t_ms for tp in tps})
        missing = [tp for tp in tps if found.get(tp) is None]
        ends = consumer.end_offsets(missing) if missing else {}
        return {tp: found[tp].offset if found.get(tp) is not None else ends[tp] for tp in tps}
    return positions


def caught_up(consumer: KafkaConsumer) -> set[TopicPartition]:
    """Assigned partitions whose read position is at their last known end."""
    done = set()
    for tp in consumer.assignment():
        try:
            high = consumer.highwater(tp)
            if high is not None and consumer.position(tp) >= high:
                done.add(tp)
        except KafkaError:
            pass
    return done
