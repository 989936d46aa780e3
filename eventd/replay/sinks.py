"""Destinations of a replay, one adapter per ``--to`` target, behind one small contract.

The pipeline calls :meth:`Target.add` for each valid event, :meth:`Target.mark` at each
checkpoint (every event added before it is covered), and records in the ledger exactly the
checkpoints :meth:`Target.completed` / :meth:`Target.finish` return: those whose events the
destination has durably taken. An adapter raises :class:`ReplayFailed` when the destination
fails; the checkpoints not yet returned are then simply not recorded, and a re-run resumes
from the last recorded one.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from typing import Protocol

from eventd.config import Config
from eventd.errors import EventdError
from eventd.event.codec import encode
from eventd.event.envelope import Event
from eventd.event.schemas import SchemaStore
from eventd.replay.ledger import Checkpoint


class ReplayFailed(EventdError):
    """The destination failed; what was acknowledged before is recorded, the rest is not."""


class Target(Protocol):
    name: str
    key: str | None       # names the destination in the ledger; None: keep no resume points
    duplicates: int       # events the destination itself found it already had

    def add(self, event: Event) -> None: ...
    def mark(self, checkpoint: Checkpoint) -> None: ...
    def completed(self) -> list[Checkpoint]: ...
    def finish(self) -> list[Checkpoint]: ...
    def close(self) -> None: ...


def destination_key(name: str, *identity: object) -> str:
    """``name-<hash>``: a ledger directory per distinct destination (servers, database, prefix…)."""
    digest = hashlib.blake2b(json.dumps(identity, sort_keys=True, default=str).encode(), digest_size=6)
    return f"{name}-{digest.hexdigest()}"


class DryRunTarget:
    """``--dry-run``: encodes each event (so encoding problems show) and keeps nothing."""

    name, key, duplicates = "dry-run", None, 0

    def add(self, event: Event) -> None:
        encode(event.schema, event.record)

    def mark(self, checkpoint: Checkpoint) -> None:
        pass

    def completed(self) -> list[Checkpoint]:
        return []

    def finish(self) -> list[Checkpoint]:
        return []

    def close(self) -> None:
        pass


class _Batch:
    """The events sent between two marks; complete when Kafka has answered for each."""

    __slots__ = ("sent", "answered", "checkpoint")

    def __init__(self) -> None:
        self.sent = self.answered = 0
        self.checkpoint: Checkpoint | None = None


class KafkaTarget:
    """``--to kafka``: each event as the collector sends it (same codec, topic, key, producer).

    Sends are pipelined: a checkpoint completes when every event before it is acknowledged
    (acks=all), so the ledger never claims more than Kafka holds.
    """

    name, duplicates = "kafka", 0

    def __init__(self, cfg: Config, producer: "ProducerLike") -> None:
        k = cfg.kafka
        routes = sorted((t.name, t.topic) for t in cfg.events.types.values())
        self.key = destination_key("kafka", sorted(k.bootstrap_servers), k.topics.prefix, routes)
        self._producer = producer
        self._lock = threading.Lock()
        self._batches: deque[_Batch] = deque()
        self._current = _Batch()
        self._error: Exception | None = None

    def add(self, event: Event) -> None:
        if self._error is not None:
            self._raise()
        batch = self._current
        batch.sent += 1
        try:
            self._producer.send(event.topic, encode(event.schema, event.record), event.key,
                                on_done=lambda err: self._answered(batch, err))
        except Exception as exc:  # kafka-python raises its own types synchronously (metadata timeout …)
            raise ReplayFailed(f"kafka: cannot send to {event.topic}: {type(exc).__name__}: {exc}") from None

    def _answered(self, batch: _Batch, err: Exception | None) -> None:
        """On the producer's sender thread."""
        with self._lock:
            batch.answered += 1
            if err is not None and self._error is None:
                self._error = err

    def mark(self, checkpoint: Checkpoint) -> None:
        self._current.checkpoint = checkpoint
        self._batches.append(self._current)
        self._current = _Batch()

    def completed(self) -> list[Checkpoint]:
        if self._error is not None:
            self._raise()
        done = []
        with self._lock:
            while self._batches and self._batches[0].answered == self._batches[0].sent:
                done.append(self._batches.popleft().checkpoint)
        return [c for c in done if c is not None]

    def finish(self) -> list[Checkpoint]:
        try:
            self._producer.flush()
        except Exception as exc:
            raise ReplayFailed(f"kafka: flush failed: {type(exc).__name__}: {exc}") from None
        return self.completed()

    def _raise(self) -> None:
        raise ReplayFailed(f"kafka: a send failed: {type(self._error).__name__}: {self._error}")

    def close(self) -> None:
        self._producer.close()


class ProducerLike(Protocol):
    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: object = None,
             on_done: object = None) -> object: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float = 10.0) -> None: ...


def missing_topics(cfg: Config, store: SchemaStore) -> list[str]:
    """Event topics the replay may write that do not exist (``eventd setup`` creates them)."""
    from eventd.kafka.clients import new_admin
    from eventd.kafka.topics import needed_topics
    admin = new_admin(cfg.kafka)
    try:
        existing = set(admin.list_topics())
    finally:
        admin.close()
    special = {cfg.kafka.topics.dead_letter, cfg.kafka.topics.control}
    return sorted(t for t in needed_topics(cfg, store) if t not in existing and t not in special)


def open_target(to: str, cfg: Config, store: SchemaStore, dry_run: bool) -> Target:
    """The adapter for ``--to``; checks the destination is usable before any line is read."""
    if dry_run:
        return DryRunTarget()
    if to == "kafka":
        missing = missing_topics(cfg, store)
        if missing:
            raise ReplayFailed(f"kafka: topics missing: {', '.join(missing)} (create them with `eventd setup`)")
        from eventd.kafka.producer import Producer
        return KafkaTarget(cfg, Producer(cfg.kafka, "replay"))
    raise ReplayFailed(f"--to {to} is not available yet")
