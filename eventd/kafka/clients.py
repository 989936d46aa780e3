"""Kafka client settings (librdkafka, through confluent-kafka), derived from the config in one place.

Every consumer has auto-commit OFF and offset store OFF: the client's default commits whatever
was read, processed or not, which would lose events on a crash. Every producer uses the
``murmur2_random`` partitioner: librdkafka's default (CRC32) would put keys on other partitions
than the Java client, kafka-python and eventd's own ``Partitions`` do.
"""

from __future__ import annotations

import logging
import time
from typing import Any

from confluent_kafka.admin import AdminClient

from eventd.config.common import KafkaConfig

log = logging.getLogger("eventd.kafka.client")
librdkafka_log = logging.getLogger("eventd.kafka.librdkafka")

# A record the producer could not deliver within this time fails (its callback gets an error).
DELIVERY_TIMEOUT = 120.0
ERROR_LOG_INTERVAL = 10.0     # librdkafka reports "all brokers down" several times a second


def _common(cfg: KafkaConfig, suffix: str) -> dict[str, Any]:
    return {"bootstrap.servers": ",".join(cfg.bootstrap_servers), "client.id": f"{cfg.client_id}-{suffix}",
            "socket.timeout.ms": int(cfg.request_timeout * 1000), "error_cb": ErrorLog(suffix),
            # librdkafka logs each failed reconnect (every 50-100 ms while a broker is down); the
            # error callback below reports the same, rate-limited. Its own log keeps CRIT and worse.
            "logger": librdkafka_log, "log_level": 2}


def producer_config(cfg: KafkaConfig, suffix: str) -> dict[str, Any]:
    """An idempotent producer with acks=all: a retried send is never written twice by the broker."""
    p = cfg.producer
    return {**_common(cfg, suffix), "acks": "all", "enable.idempotence": True,
            "compression.type": p.compression, "linger.ms": p.linger * 1000,
            "batch.size": min(p.batch_size, p.max_request_size), "message.max.bytes": p.max_request_size,
            "allow.auto.create.topics": False, "max.in.flight.requests.per.connection": 5,
            "delivery.timeout.ms": int(DELIVERY_TIMEOUT * 1000),
            "request.timeout.ms": int(cfg.request_timeout * 1000), "partitioner": "murmur2_random",
            # The wrapper's byte budget is the real cap; librdkafka's own must not bite first.
            "queue.buffering.max.kbytes": max(1, p.max_in_flight_bytes // 1024) + 1024,
            "queue.buffering.max.messages": 10_000_000}


def consumer_config(cfg: KafkaConfig, suffix: str, group_id: str) -> dict[str, Any]:
    """A consumer that never commits or stores offsets on its own; roles commit after their sink
    confirms. The eager ``range`` assignor: a rebalance revokes every partition, as the loop expects."""
    c = cfg.consumer
    return {**_common(cfg, suffix), "group.id": group_id, "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
            "allow.auto.create.topics": False, "partition.assignment.strategy": "range",
            "session.timeout.ms": int(c.session_timeout * 1000),
            "heartbeat.interval.ms": int(c.heartbeat_interval * 1000),
            "max.poll.interval.ms": int(c.max_poll_interval * 1000),
            "fetch.max.bytes": c.fetch_max_bytes, "max.partition.fetch.bytes": min(c.fetch_max_bytes, 8 << 20),
            # Prefetched messages are bounded like one fetch, whatever the number of partitions.
            "queued.max.messages.kbytes": max(1024, c.fetch_max_bytes // 1024)}


def new_admin(cfg: KafkaConfig) -> AdminClient:
    """Keep the client referenced until its futures are done: dropped, it fails them (_DESTROY)."""
    return AdminClient(_common(cfg, "admin"))


class ErrorLog:
    """librdkafka's error callback (and the consumer's error events): an outage reports many times
    a second, so each kind of error is logged once per ``ERROR_LOG_INTERVAL`` with how many were
    suppressed."""

    def __init__(self, client: str) -> None:
        self.client = client
        self._last: dict[str, tuple[float, int]] = {}

    def __call__(self, err: Any) -> None:
        name, now = err.name(), time.monotonic()
        last, suppressed = self._last.get(name, (0.0, 0))
        if now - last < ERROR_LOG_INTERVAL:
            self._last[name] = (last, suppressed + 1)
            return
        self._last[name] = (now, 0)
        more = f" ({suppressed} more since)" if suppressed else ""
        level = logging.ERROR if err.fatal() else logging.WARNING
        log.log(level, "kafka %s: %s: %s%s", self.client, name, err.str(), more)
