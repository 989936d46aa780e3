"""kafka-python client settings, derived from the config in one place.

Every consumer has auto-commit OFF: kafka-python's default commits whatever ``poll()``
returned, processed or not, which would lose events on a crash.
"""

from __future__ import annotations

from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from eventd.config.common import KafkaConfig

# A record the producer could not deliver within this time fails (its callback gets an error).
DELIVERY_TIMEOUT = 120.0


def _common(cfg: KafkaConfig, suffix: str) -> dict[str, Any]:
    return {"bootstrap_servers": list(cfg.bootstrap_servers), "client_id": f"{cfg.client_id}-{suffix}",
            "request_timeout_ms": int(cfg.request_timeout * 1000)}


def new_producer(cfg: KafkaConfig, suffix: str) -> KafkaProducer:
    """An idempotent producer with acks=all: a retried send is never written twice by the broker."""
    p = cfg.producer
    return KafkaProducer(**_common(cfg, suffix), acks="all", enable_idempotence=True,
                         compression_type=None if p.compression == "none" else p.compression,
                         linger_ms=int(p.linger * 1000), batch_size=p.batch_size,
                         max_request_size=p.max_request_size, allow_auto_create_topics=False,
                         max_in_flight_requests_per_connection=5,
                         delivery_timeout_ms=int(DELIVERY_TIMEOUT * 1000))


def new_consumer(cfg: KafkaConfig, suffix: str, group_id: str | None) -> KafkaConsumer:
    """A consumer that never commits on its own; roles commit after their sink confirms."""
    c = cfg.consumer
    return KafkaConsumer(**_common(cfg, suffix), group_id=group_id, enable_auto_commit=False,
                         auto_offset_reset="earliest", allow_auto_create_topics=False,
                         session_timeout_ms=int(c.session_timeout * 1000),
                         heartbeat_interval_ms=int(c.heartbeat_interval * 1000),
                         max_poll_interval_ms=int(c.max_poll_interval * 1000),
                         max_poll_records=c.max_poll_records, fetch_max_bytes=c.fetch_max_bytes,
                         max_partition_fetch_bytes=min(c.fetch_max_bytes, 8 << 20))


def new_admin(cfg: KafkaConfig) -> KafkaAdminClient:
    return KafkaAdminClient(**_common(cfg, "admin"))
