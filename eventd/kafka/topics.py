"""Creating the topics the configuration needs (``eventd setup``). Idempotent."""

from __future__ import annotations

import logging

import confluent_kafka
from confluent_kafka.admin import NewTopic

from eventd.config import Config
from eventd.config.common import KafkaConfig
from eventd.event.schemas import GENERIC, SchemaStore
from eventd.kafka.clients import AdminClient, new_admin
from eventd.kafka.types import TopicAlreadyExistsError, client_errors, from_client

log = logging.getLogger(__name__)


def needed_topics(cfg: Config, store: SchemaStore) -> dict[str, int]:
    """Topic name → partitions: every event type with a schema or a route, the generic topic,
    the dead-letter topic and the control topic."""
    t = cfg.kafka.topics
    names = set(store.latest) | set(cfg.events.types)
    topics = {cfg.events.route(n, t.prefix, t.partitions).topic: cfg.events.route(n, t.prefix, t.partitions).partitions
              for n in names}
    topics.setdefault(t.prefix + GENERIC, t.partitions)
    topics[t.dead_letter] = 1
    topics[t.control] = 1
    return topics


def ensure_topics(cfg: Config, store: SchemaStore) -> list[str]:
    """Create the missing topics; returns the names created (empty on a second run)."""
    return create_topics(cfg.kafka, needed_topics(cfg, store))


METADATA_TIMEOUT = 30.0


def existing_topics(kafka: KafkaConfig) -> set[str]:
    """The names of the topics the cluster has."""
    return _list(new_admin(kafka))


def _list(admin: AdminClient) -> set[str]:
    with client_errors("listing the topics: "):
        return set(admin.list_topics(timeout=METADATA_TIMEOUT).topics)


def create_topics(kafka: KafkaConfig, wanted: dict[str, int]) -> list[str]:
    """Create those of ``wanted`` (name → partitions) that do not exist; returns their names."""
    admin = new_admin(kafka)        # referenced until every future is done (see new_admin)
    existing = _list(admin)
    new = [NewTopic(name, n, kafka.topics.replication_factor)
           for name, n in sorted(wanted.items()) if name not in existing]
    if not new:
        return []
    for name, future in admin.create_topics(new, operation_timeout=METADATA_TIMEOUT).items():
        try:
            future.result()
        except confluent_kafka.KafkaException as exc:
            error = from_client(exc, f"creating topic {name}: ")
            if not isinstance(error, TopicAlreadyExistsError):   # created concurrently by another `setup`
                raise error from None
    return [t.topic for t in new]


def event_topics(cfg: Config, store: SchemaStore, types: tuple[str, ...] | None = None) -> list[str]:
    """The event topics a consumer role reads: all of them, or those of ``types``."""
    t = cfg.kafka.topics
    names = types if types is not None else tuple(set(store.latest) | set(cfg.events.types))
    return sorted({cfg.events.route(n, t.prefix, t.partitions).topic for n in names}
                  | ({t.prefix + GENERIC} if types is None else set()))
