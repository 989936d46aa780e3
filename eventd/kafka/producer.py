"""The one Kafka producer wrapper every role uses: bounded in-flight bytes, explicit flush.

kafka-python 3.0 no longer caps the producer's memory (no ``buffer_memory``), so the
wrapper counts bytes sent but not yet acknowledged and makes the caller wait above
``max_in_flight_bytes`` — memory stays bounded whatever the input rate.
"""

from __future__ import annotations

import threading
from typing import Callable

from eventd.config.common import KafkaConfig
from eventd.kafka.clients import new_producer
from eventd.kafka.types import SendFuture

Headers = list[tuple[str, bytes]]


class Producer:
    """Thread-safe; ``send`` may block while too much is in flight, ``flush`` waits for every ack."""

    def __init__(self, cfg: KafkaConfig, name: str) -> None:
        self._producer = new_producer(cfg, name)
        self._cap = cfg.producer.max_in_flight_bytes
        self._in_flight = 0
        self._cond = threading.Condition()

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None,
             on_done: Callable[[Exception | None], None] | None = None,
             partition: int | None = None) -> SendFuture:
        """Queue one message. ``on_done(error)`` runs on the sender thread once Kafka has answered.
        ``partition`` skips the partitioner (the caller computed it, e.g. with a cache)."""
        size = len(value) + (len(key) if key else 0)
        with self._cond:
            while self._in_flight and self._in_flight + size > self._cap:
                self._cond.wait(1.0)
            self._in_flight += size
        try:
            future = self._producer.send(topic, value=value, key=key, headers=headers, partition=partition)
        except Exception:
            self._done(size, None, None)   # never sent: give its bytes back to the budget
            raise
        future.add_both(lambda result: self._done(size, result, on_done))
        return future

    def _done(self, size: int, result: object, on_done: Callable[[Exception | None], None] | None) -> None:
        with self._cond:
            self._in_flight -= size
            self._cond.notify_all()
        if on_done is not None:
            on_done(result if isinstance(result, Exception) else None)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued message is acknowledged (or failed); raises on timeout."""
        self._producer.flush(timeout=timeout)

    def partitions_for(self, topic: str) -> set[int] | None:
        """The topic's partition ids (waits for metadata up to the producer's max_block_ms)."""
        return self._producer.partitions_for(topic)

    @property
    def in_flight_bytes(self) -> int:
        return self._in_flight

    def close(self, timeout: float = 10.0) -> None:
        self._producer.close(timeout=timeout)
