"""Choosing the partition ourselves, exactly as the Java client's default partitioner does
(murmur2 of the key over the topic's sorted partitions; librdkafka's ``murmur2_random``), with a
cache per key.

Why choose it here rather than in librdkafka: the sender must know an event's partition before
sending it (its durable queue drains in order per partition), and the cache makes it nearly free
(message keys such as campaign ids repeat). Same key → same partition as any other producer.
"""

from __future__ import annotations

import time
from typing import Callable

from eventd.kafka.types import KafkaError


CACHE_KEYS = 100_000        # per topic; cleared when full (keys like event ids never repeat)
RECHECK_SECONDS = 30.0      # partitions added to a topic are noticed within this time

_Entry = tuple[list[int], dict[bytes, int], float]    # sorted partition ids, key → partition, recheck time


class Partitions:
    """``partition(topic, key)``; ``lookup(topic)`` returns the topic's partition ids (may block).
    A recheck that fails (Kafka down) keeps the partitions known; only a first lookup raises."""

    def __init__(self, lookup: Callable[[str], set[int] | None],
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._lookup, self._clock = lookup, clock
        self._topics: dict[str, _Entry] = {}

    def partition(self, topic: str, key: bytes) -> int:
        entry = self._topics.get(topic)
        if entry is None or self._clock() > entry[2]:
            entry = self._refresh(topic, entry)
        cache = entry[1]
        p = cache.get(key)
        if p is None:
            if len(cache) >= CACHE_KEYS:
                cache.clear()
            ids = entry[0]
            p = cache[key] = ids[(murmur2(key) & 0x7FFFFFFF) % len(ids)]
        return p

    def _refresh(self, topic: str, old: _Entry | None) -> _Entry:
        try:
            found = self._lookup(topic)
        except KafkaError:
            if old is None:
                raise
            found = set(old[0])   # Kafka unreachable for now: keep the partitions known, look again later
        if not found:
            raise LookupError(f"topic {topic} has no partitions known to the producer")
        ids = sorted(found)
        cache = old[1] if old is not None and old[0] == ids else {}
        entry = (ids, cache, self._clock() + RECHECK_SECONDS)
        self._topics[topic] = entry
        return entry


def murmur2(data: bytes) -> int:
    """The 32-bit murmur2 hash of ``data`` as Kafka computes it (seed 0x9747b28c), unsigned."""
    m, r = 0x5BD1E995, 24
    length = len(data)
    h = (0x9747B28C ^ length) & 0xFFFFFFFF
    whole = length & ~3
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & 0xFFFFFFFF
        k ^= k >> r
        k = (k * m) & 0xFFFFFFFF
        h = ((h * m) & 0xFFFFFFFF) ^ k
    tail = data[whole:]
    if tail:
        h ^= int.from_bytes(tail, "little")   # the Java switch: byte 2 << 16, byte 1 << 8, byte 0
        h = (h * m) & 0xFFFFFFFF
    h ^= h >> 13
    h = (h * m) & 0xFFFFFFFF
    h ^= h >> 15
    return h
