"""eventd's Kafka edge against the real broker: commit metadata round trips (the two-phase
recovery of the loader and the uploader stands on it), a never-committed partition reads as None,
partitions are assigned at the sink's offsets, a second member takes over with the first one's
pending marker, keys land where the Java client (and kafka-python) put them, topics are created
once."""

from __future__ import annotations

import time

from kafka import KafkaConsumer  # kafka-python: an independent client checks where messages landed

from eventd.config import load_config
from eventd.kafka.consumer import Consumer, new_consumer
from eventd.kafka.producer import Producer
from eventd.kafka.topics import create_topics, existing_topics
from eventd.kafka.types import OffsetAndMetadata, TopicPartition
from harness import KAFKA, TestEnv

PARTITIONS = 4


def setup_topic(env: TestEnv) -> tuple[object, str]:
    cfg = load_config(str(env.write_config()))
    topic = env.topic("client")
    assert create_topics(cfg.kafka, {topic: PARTITIONS}) == [topic]
    assert create_topics(cfg.kafka, {topic: PARTITIONS}) == []       # idempotent
    assert topic in existing_topics(cfg.kafka)
    return cfg, topic


def produce(cfg: object, topic: str, keys: list[bytes]) -> None:
    producer = Producer(cfg.kafka, "test")  # type: ignore[attr-defined]
    errors: list[Exception | None] = []
    for key in keys:
        producer.send(topic, b"value-" + key, key=key, on_done=errors.append)
    producer.flush(30)
    producer.close()
    assert errors == [None] * len(keys)


def read_until(consumer: Consumer, want: int, timeout: float = 60) -> dict[TopicPartition, list[int]]:
    got: dict[TopicPartition, list[int]] = {}
    end = time.monotonic() + timeout
    while sum(map(len, got.values())) < want and time.monotonic() < end:
        for tp, msgs in consumer.poll(0.5).items():
            got.setdefault(tp, []).extend(m.offset for m in msgs)
    return got


def test_commit_metadata_round_trips_and_assignment_starts_where_the_sink_says(env: TestEnv) -> None:
    cfg, topic = setup_topic(env)
    keys = [b"campaign-%d" % i for i in range(200)]
    produce(cfg, topic, keys)
    group = f"{env.id}-client"
    tps = [TopicPartition(topic, p) for p in range(PARTITIONS)]

    end = ends(topic)
    first = new_consumer(cfg.kafka, "a", group)  # type: ignore[attr-defined]
    first.subscribe([topic], lambda assigned: {tp: 2 for tp in assigned}, lambda revoked: None)
    got = read_until(first, sum(n - 2 for n in end.values()))
    assert got == {tp: list(range(2, n)) for tp, n in end.items()}     # from the sink's offset, each once
    assert first.committed(tps) == {tp: None for tp in tps}          # never committed
    first.commit({tps[0]: OffsetAndMetadata(5, "eventd:pending:9"), tps[1]: OffsetAndMetadata(7, "")})
    committed = first.committed(tps)
    assert committed[tps[0]] == OffsetAndMetadata(5, "eventd:pending:9")
    assert committed[tps[1]].offset == 7 and not committed[tps[1]].metadata
    first.close()

    # A second member of the group sees the first one's marker, as a loader taking over does.
    second = new_consumer(cfg.kafka, "b", group)  # type: ignore[attr-defined]
    seen: dict[TopicPartition, OffsetAndMetadata | None] = {}

    def assigned(parts: list[TopicPartition]) -> dict[TopicPartition, int]:
        seen.update(second.committed(parts))
        return {}                                  # the committed offsets (or the earliest)
    second.subscribe([topic], assigned, lambda revoked: None)
    got = read_until(second, end[tps[0]] - 5 + end[tps[1]] - 7 + end[tps[2]] + end[tps[3]])
    assert seen[tps[0]] == OffsetAndMetadata(5, "eventd:pending:9")
    assert got == {tps[0]: list(range(5, end[tps[0]])), tps[1]: list(range(7, end[tps[1]])),
                   tps[2]: list(range(end[tps[2]])), tps[3]: list(range(end[tps[3]]))}
    second.close()


def test_keys_land_on_the_java_clients_partitions(env: TestEnv) -> None:
    from kafka.partitioner.default import murmur2
    cfg, topic = setup_topic(env)
    keys = [b"campaign-%d" % i for i in range(300)] + [b"", b"\xff\xfe", "géo".encode()]
    produce(cfg, topic, keys)
    reader = KafkaConsumer(bootstrap_servers=KAFKA, auto_offset_reset="earliest", consumer_timeout_ms=5000)
    try:
        reader.subscribe([topic])
        placed = {r.key: r.partition for r in reader}
    finally:
        reader.close()
    assert placed == {k: (murmur2(k) & 0x7FFFFFFF) % PARTITIONS for k in keys}


def ends(topic: str) -> dict[TopicPartition, int]:
    from kafka import TopicPartition as KTP
    reader = KafkaConsumer(bootstrap_servers=KAFKA)
    try:
        return {TopicPartition(tp.topic, tp.partition): n
                for tp, n in reader.end_offsets([KTP(topic, p) for p in range(PARTITIONS)]).items()}
    finally:
        reader.close()
