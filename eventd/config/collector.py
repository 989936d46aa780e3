"""The ``collector:`` section: inputs, the durable local queue, and limits (docs/roles/collector.md)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from eventd.config.common import RoleCommon, resolve_path
from eventd.config.reader import Section
from eventd.config.units import (boolean, choice, duration, file_mode, host_port, integer, list_of,
                                 nonempty_string, size)

# Longest path a unix socket address may hold (sun_path is 108 bytes with the trailing NUL).
_MAX_SOCKET_PATH = 107


@dataclass(frozen=True)
class SocketInput:
    """A network (``host``/``port``) or unix (``path``) input."""

    enabled: bool
    host: str = ""
    port: int = 0
    path: str = ""
    mode: int = 0o660


@dataclass(frozen=True)
class TailInput:
    """Files followed like ``tail -F``; their read positions survive restarts in ``positions``."""

    enabled: bool
    paths: tuple[str, ...]
    poll_interval: float
    start_at: str          # "beginning" | "end": where a file seen for the first time at the first start is read from
    positions: str         # JSON file of read positions


@dataclass(frozen=True)
class QueueConfig:
    """The append-only, checksummed local log every accepted event is written to first.

    Each collector process (slot) has its own sub-directory ``<dir>/slot-<N>``."""

    dir: str
    segment_size: int
    max_size: int
    fsync: str            # "always" | "interval" | "never"
    fsync_interval: float

    def slot_dir(self, slot: int) -> str:
        return os.path.join(self.dir, f"slot-{slot}")


@dataclass(frozen=True)
class CollectorConfig:
    role: RoleCommon
    http: SocketInput
    tcp: SocketInput
    unix: SocketInput
    udp: SocketInput
    unix_datagram: SocketInput
    tail: TailInput
    queue: QueueConfig
    max_body_size: int
    max_connections: int
    idle_timeout: float
    max_errors_reported: int
    max_in_flight_events: int   # sent to Kafka but not yet acknowledged, per process (bounds memory)
    drain_timeout: float        # on stop: time given to Kafka to take the queue's backlog

    @classmethod
    def read(cls, s: Section, state_dir: str) -> "CollectorConfig":
        cfg = cls(role=RoleCommon.read(s),
                  http=_net(s.section("http"), True, "127.0.0.1:8787"),
                  tcp=_net(s.section("tcp"), False, "127.0.0.1:8788"),
                  unix=_unix(s.section("unix"), True, "/run/eventd/collector.sock"),
                  udp=_net(s.section("udp"), False, "127.0.0.1:8788"),
                  unix_datagram=_unix(s.section("unix_datagram"), False, "/run/eventd/collector.dgram"),
                  tail=_tail(s.section("tail"), state_dir),
                  queue=_queue(s.section("queue"), state_dir),
                  max_body_size=s.get("max_body_size", size, "16MiB"),
                  max_connections=s.get("max_connections", integer(1, 1_000_000), 1024),
                  idle_timeout=s.get("idle_timeout", duration, "30s"),
                  max_errors_reported=s.get("max_errors_reported", integer(0, 100_000), 100),
                  max_in_flight_events=s.get("max_in_flight_events", integer(1, 10_000_000), 50_000),
                  drain_timeout=s.get("drain_timeout", duration, "10s"))
        if cfg.max_body_size < 1:
            raise s.error("max_body_size", "must be at least 1 byte")
        if cfg.max_body_size > cfg.queue.max_size // 2:
            raise s.error("max_body_size", "must be at most half of queue.max_size (a body is appended whole)")
        return cfg


def _net(s: Section, enabled: bool, listen: str) -> SocketInput:
    on = s.get("enabled", boolean, enabled)
    host, port = s.get("listen", host_port, listen)
    s.finish()
    return SocketInput(on, host=host, port=port)


def _unix(s: Section, enabled: bool, path: str) -> SocketInput:
    cfg = SocketInput(s.get("enabled", boolean, enabled), path=resolve_path(s, s.get("path", nonempty_string, path)),
                      mode=s.get("mode", file_mode, "0660"))
    if len(cfg.path.encode()) > _MAX_SOCKET_PATH:
        raise s.error("path", f"a unix socket path may have at most {_MAX_SOCKET_PATH} bytes")
    s.finish()
    return cfg


def _tail(s: Section, state_dir: str) -> TailInput:
    cfg = TailInput(s.get("enabled", boolean, False), s.get("paths", list_of(nonempty_string), []),
                    s.get("poll_interval", duration, "1s"), s.get("start_at", choice("beginning", "end"), "beginning"),
                    resolve_path(s, s.get("positions", nonempty_string, f"{state_dir}/collector/tail-positions.json")))
    if cfg.enabled and not cfg.paths:
        raise s.error("paths", "tail is enabled but no paths are given (expected a list of file globs)")
    if cfg.poll_interval <= 0:
        raise s.error("poll_interval", "must be more than 0")
    s.finish()
    return cfg


def _queue(s: Section, state_dir: str) -> QueueConfig:
    cfg = QueueConfig(dir=resolve_path(s, s.get("dir", nonempty_string, f"{state_dir}/collector/queue")),
                      segment_size=s.get("segment_size", size, "64MiB"),
                      max_size=s.get("max_size", size, "10GiB"),
                      fsync=s.get("fsync", choice("always", "interval", "never"), "interval"),
                      fsync_interval=s.get("fsync_interval", duration, "100ms"))
    if cfg.segment_size < 4096:
        raise s.error("segment_size", "must be at least 4KiB")
    if cfg.max_size < 2 * cfg.segment_size:
        raise s.error("max_size", "must be at least twice segment_size")
    if cfg.fsync == "interval" and cfg.fsync_interval <= 0:
        raise s.error("fsync_interval", "must be more than 0")
    s.finish()
    return cfg
