"""Sections every role shares: the node, logging, metrics, Kafka, and the event catalogue."""

from __future__ import annotations

import os
import re
import socket
from dataclasses import dataclass, field

from eventd.config.reader import Section
from eventd.config.units import (boolean, choice, duration, host_port, integer, list_of, nonempty_string,
                                 ratio, size, string)

LOG_LEVELS = ("debug", "info", "warning", "error")
TYPE_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def resolve_path(section: Section, value: str) -> str:
    """Relative paths in the config are relative to the config file's directory."""
    return value if os.path.isabs(value) else os.path.normpath(os.path.join(section.base_dir, value))


@dataclass(frozen=True)
class NodeConfig:
    """This host's identity and where eventd keeps its state."""

    host: str
    state_dir: str
    log_level: str

    @classmethod
    def read(cls, s: Section) -> "NodeConfig":
        return cls(host=s.get("host", string, "") or socket.gethostname(),
                   state_dir=resolve_path(s, s.get("state_dir", nonempty_string, "/var/lib/eventd")),
                   log_level=s.get("log_level", choice(*LOG_LEVELS), "info"))


@dataclass(frozen=True)
class MetricsConfig:
    """Prometheus endpoint: each role process listens on ``listen`` port + its slot number."""

    enabled: bool
    host: str
    base_port: int

    @classmethod
    def read(cls, s: Section) -> "MetricsConfig":
        host, port = s.get("listen", host_port, "127.0.0.1:9400")
        return cls(enabled=s.get("enabled", boolean, True), host=host, base_port=port)


@dataclass(frozen=True)
class ProducerConfig:
    compression: str
    linger: float
    batch_size: int
    max_request_size: int
    max_in_flight_bytes: int

    @classmethod
    def read(cls, s: Section) -> "ProducerConfig":
        return cls(compression=s.get("compression", choice("none", "gzip", "snappy", "lz4", "zstd"), "lz4"),
                   linger=s.get("linger", duration, "20ms"),
                   batch_size=s.get("batch_size", size, "1MiB"),
                   max_request_size=s.get("max_request_size", size, "8MiB"),
                   max_in_flight_bytes=s.get("max_in_flight_bytes", size, "64MiB"))


@dataclass(frozen=True)
class ConsumerConfig:
    session_timeout: float
    heartbeat_interval: float
    max_poll_interval: float
    max_poll_records: int
    fetch_max_bytes: int

    @classmethod
    def read(cls, s: Section) -> "ConsumerConfig":
        cfg = cls(session_timeout=s.get("session_timeout", duration, "10s"),
                  heartbeat_interval=s.get("heartbeat_interval", duration, "3s"),
                  max_poll_interval=s.get("max_poll_interval", duration, "5m"),
                  max_poll_records=s.get("max_poll_records", integer(1, 1_000_000), 10_000),
                  fetch_max_bytes=s.get("fetch_max_bytes", size, "50MiB"))
        if cfg.heartbeat_interval >= cfg.session_timeout:
            raise s.error("heartbeat_interval", "must be shorter than session_timeout")
        return cfg


@dataclass(frozen=True)
class TopicsConfig:
    prefix: str
    partitions: int
    replication_factor: int
    dead_letter: str
    control: str

    @classmethod
    def read(cls, s: Section) -> "TopicsConfig":
        return cls(prefix=s.get("prefix", string, "events."),
                   partitions=s.get("partitions", integer(1, 10_000), 6),
                   replication_factor=s.get("replication_factor", integer(1, 32), 1),
                   dead_letter=s.get("dead_letter", nonempty_string, "eventd.deadletter"),
                   control=s.get("control", nonempty_string, "eventd.control"))


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: tuple[str, ...]
    client_id: str
    request_timeout: float
    topics: TopicsConfig
    producer: ProducerConfig
    consumer: ConsumerConfig

    @classmethod
    def read(cls, s: Section) -> "KafkaConfig":
        servers = s.get("bootstrap_servers", list_of(host_port, 1), ["127.0.0.1:9092"])
        return cls(bootstrap_servers=tuple(f"{h}:{p}" for h, p in servers),
                   client_id=s.get("client_id", nonempty_string, "eventd"),
                   request_timeout=s.get("request_timeout", duration, "30s"),
                   topics=_finished(TopicsConfig.read, s.section("topics")),
                   producer=_finished(ProducerConfig.read, s.section("producer")),
                   consumer=_finished(ConsumerConfig.read, s.section("consumer")))


@dataclass(frozen=True)
class EventType:
    """Routing of one event type: its topic, partitions and the payload field used as message key."""

    name: str
    topic: str
    key: str
    partitions: int


@dataclass(frozen=True)
class EventsConfig:
    schema_dir: str
    max_line_size: int
    unknown_types: str
    money_fields: tuple[str, ...]
    default_key: str
    types: dict[str, EventType] = field(default_factory=dict)

    def route(self, event_type: str, prefix: str, partitions: int) -> EventType:
        """The routing of ``event_type``; a type not listed gets ``prefix + type`` and the default key."""
        known = self.types.get(event_type)
        return known or EventType(event_type, prefix + event_type, self.default_key, partitions)

    @classmethod
    def read(cls, s: Section, topics: TopicsConfig) -> "EventsConfig":
        default_key = s.get("default_key", nonempty_string, "id")
        types = {}
        for name, ts in s.mapping("types").items():
            if not TYPE_NAME.match(name):
                raise ts.error("", f"event type {name!r} must match [a-z][a-z0-9_]{{0,63}}")
            types[name] = EventType(name, ts.get("topic", nonempty_string, topics.prefix + name),
                                    ts.get("key", nonempty_string, default_key),
                                    ts.get("partitions", integer(1, 10_000), topics.partitions))
            ts.finish()
        return cls(schema_dir=resolve_path(s, s.get("schema_dir", nonempty_string, "/etc/eventd/schemas")),
                   max_line_size=s.get("max_line_size", size, "1MiB"),
                   unknown_types=s.get("unknown_types", choice("accept", "reject"), "accept"),
                   money_fields=s.get("money_fields", list_of(nonempty_string), ["cost", "revenue", "bid"]),
                   default_key=default_key, types=types)


@dataclass(frozen=True)
class DeadLetterConfig:
    """Limits that stop a consumer role when "everything is invalid" means a bug, not bad input."""

    max_invalid_ratio: float
    window: int

    @classmethod
    def read(cls, s: Section) -> "DeadLetterConfig":
        return cls(max_invalid_ratio=s.get("max_invalid_ratio", ratio, 0.5),
                   window=s.get("window", integer(1, 10_000_000), 10_000))


@dataclass(frozen=True)
class RoleCommon:
    """Keys every role section has."""

    enabled: bool
    processes: int
    log_level: str | None

    @classmethod
    def read(cls, s: Section, enabled: bool = True) -> "RoleCommon":
        return cls(enabled=s.get("enabled", boolean, enabled),
                   processes=s.get("processes", integer(1, 64), 1),
                   log_level=s.get("log_level", choice(*LOG_LEVELS), None))


def _finished(read, section: Section):  # type: ignore[no-untyped-def]
    value = read(section)
    section.finish()
    return value
