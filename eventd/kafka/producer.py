"""The one Kafka producer wrapper every role uses: bounded in-flight bytes, explicit flush.

The wrapper counts bytes sent but not yet acknowledged and makes the caller wait above
``max_in_flight_bytes``, so memory stays bounded whatever the input rate and librdkafka's own
queue limit (``BufferError``) is never the first to bite. librdkafka answers deliveries only
inside ``poll()``; a daemon thread per producer polls, so ``on_done`` runs there — never on
the caller's thread.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

import confluent_kafka

from eventd.config.common import KafkaConfig
from eventd.kafka.clients import producer_config
from eventd.kafka.types import KafkaError, KafkaTimeoutError, SendFuture, client_errors, from_client

Headers = list[tuple[str, bytes]]
OnDone = Callable[[Exception | None], None]
METADATA_TIMEOUT = 10.0


class Producer:
    """Thread-safe; ``send`` may block while too much is in flight, ``flush`` waits for every ack."""

    def __init__(self, cfg: KafkaConfig, name: str) -> None:
        self._producer = confluent_kafka.Producer(producer_config(cfg, name))
        self._cap = cfg.producer.max_in_flight_bytes
        self._in_flight = 0
        self._cond = threading.Condition(threading.Lock())   # a plain lock: cheaper than the default RLock
        self._closed = threading.Event()
        self._poller = threading.Thread(target=self._poll, name=f"kafka-poll-{name}", daemon=True)
        self._poller.start()

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: Headers | None = None,
             on_done: OnDone | None = None, partition: int | None = None) -> SendFuture:
        """Queue one message. ``on_done(error)`` runs on the producer's poll thread once Kafka has
        answered. ``partition`` skips the partitioner (the caller computed it, e.g. with a cache).
        Raises :class:`KafkaError` when the message cannot even be queued (unknown topic, too big)."""
        size = len(value) + (len(key) if key else 0)
        with self._cond:
            while self._in_flight and self._in_flight + size > self._cap:
                self._cond.wait(1.0)
            self._in_flight += size
        report = _Report(self, size, on_done)
        try:
            self._produce(topic, value, key, headers, partition, report)
        except BaseException:
            self._release(size)    # never queued: give its bytes back to the budget
            raise
        return report

    def _produce(self, topic: str, value: bytes, key: bytes | None, headers: Headers | None,
                 partition: int | None, report: "_Report") -> None:
        args: dict[str, Any] = {"key": key, "on_delivery": report}
        if headers:
            args["headers"] = headers
        if partition is not None:
            args["partition"] = partition
        while True:
            try:
                self._producer.produce(topic, value, **args)
                return
            except BufferError:          # librdkafka's queue is full: wait for deliveries
                self._producer.poll(0.05)
            except confluent_kafka.KafkaException as exc:
                raise from_client(exc, f"cannot send to {topic}: ") from None

    def _release(self, size: int) -> None:
        with self._cond:
            self._in_flight -= size
            self._cond.notify_all()

    def _poll(self) -> None:
        while not self._closed.is_set():
            self._producer.poll(0.1)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every queued message is acknowledged (or failed); raises
        :class:`KafkaTimeoutError` if some are still unanswered after ``timeout`` seconds."""
        left = self._producer.flush(-1 if timeout is None else timeout)
        if left:
            raise KafkaTimeoutError(f"{left} message(s) not acknowledged by Kafka within {timeout:.0f}s")

    def partitions_for(self, topic: str) -> set[int] | None:
        """The topic's partition ids; None when the cluster does not know the topic."""
        with client_errors(f"metadata of {topic}: "):
            meta = self._producer.list_topics(topic, timeout=METADATA_TIMEOUT)
        t = meta.topics.get(topic)
        return set(t.partitions) if t is not None and t.error is None and t.partitions else None

    @property
    def in_flight_bytes(self) -> int:
        return self._in_flight

    def close(self, timeout: float = 10.0) -> None:
        """Deliver what is queued within ``timeout``, drop the rest (it was never acknowledged)."""
        try:
            if self._producer.flush(timeout):
                self._producer.purge()
                self._producer.poll(0)   # run the purged messages' callbacks (they fail)
        finally:
            self._closed.set()
            self._poller.join(1.0)


class _Report(SendFuture):
    """One message's future, and its delivery callback: releases its bytes, completes itself,
    calls ``on_done`` (one object per message, not two: a send costs a few microseconds)."""

    __slots__ = ("producer", "size", "on_done")

    def __init__(self, producer: Producer, size: int, on_done: OnDone | None) -> None:
        super().__init__()
        self.producer, self.size, self.on_done = producer, size, on_done

    def __call__(self, err: Any, _msg: Any) -> None:
        error: KafkaError | None = None if err is None else from_client(err, "delivery failed: ")
        self.producer._release(self.size)
        self.complete(error)
        if self.on_done is not None:
            self.on_done(error)
