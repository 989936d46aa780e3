"""Destinations of a replay, one adapter per ``--to`` target, behind one small contract.

The pipeline calls :meth:`Target.begin` at each input, :meth:`Target.add` for each valid event
(with its Avro single-object encoding — the bytes the collector would have sent — and its
line number), :meth:`Target.warm` for events an earlier run already delivered, and
:meth:`Target.mark` at each checkpoint (every event added before it is covered). The target
calls ``on_durable`` with the checkpoints whose events the destination has durably taken, in
any thread, and only those are appended to the ledger. A destination failure raises
:class:`ReplayFailed` (from ``add``, ``mark``, ``check`` or ``finish``); checkpoints not yet
reported are then not recorded, and a re-run resumes from the last recorded one.

Two kinds: *streaming* (Kafka: events go out as they come, a checkpoint completes when every
event before it is acknowledged) and *block* targets (the sinks of the consumer roles, fed
one block per checkpoint; see :mod:`eventd.replay.direct`).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import deque
from typing import Callable, Protocol

from eventd.config import Config
from eventd.errors import EventdError
from eventd.event.envelope import Event
from eventd.event.schemas import SchemaStore
from eventd.replay.ledger import Checkpoint
from eventd.kafka.partitions import Partitions

OnDurable = Callable[[list[Checkpoint]], None]


class ReplayFailed(EventdError):
    """The destination failed; what was acknowledged before is recorded, the rest is not."""


class Target(Protocol):
    on_durable: OnDurable   # set by the pipeline

    @property
    def name(self) -> str: ...
    @property
    def key(self) -> str | None:
        """Names the destination in the ledger; None: keep no resume points."""
    @property
    def already(self) -> int:
        """Events the destination itself found it already had."""
    @property
    def streaming(self) -> bool:
        """Events go out as they come (a stop may mark mid-block)."""
    @property
    def block_lines(self) -> int:
        """A checkpoint every this many lines …"""
    @property
    def block_bytes(self) -> int:
        """… or this many input bytes."""

    def begin(self, stream: str) -> None: ...
    def add(self, event: Event, value: bytes, line: int) -> None: ...
    def warm(self, event: Event, value: bytes, line: int) -> None: ...
    def mark(self, checkpoint: Checkpoint) -> None: ...
    def check(self) -> None: ...
    def finish(self) -> None: ...
    def close(self) -> None: ...


def destination_key(name: str, *identity: object) -> str:
    """``name-<hash>``: a ledger directory per distinct destination (servers, database, prefix…)."""
    digest = hashlib.blake2b(json.dumps(identity, sort_keys=True, default=str).encode(), digest_size=6)
    return f"{name}-{digest.hexdigest()}"


def _ignore(checkpoints: list[Checkpoint]) -> None:
    pass


class DryRunTarget:
    """``--dry-run``: keeps nothing (events were validated and encoded by the pipeline)."""

    name, key, already, streaming = "dry-run", None, 0, True
    block_lines, block_bytes = 1 << 62, 1 << 62
    on_durable: OnDurable = _ignore

    def begin(self, stream: str) -> None:
        pass

    def add(self, event: Event, value: bytes, line: int) -> None:
        pass

    def warm(self, event: Event, value: bytes, line: int) -> None:
        pass

    def mark(self, checkpoint: Checkpoint) -> None:
        pass

    def check(self) -> None:
        pass

    def finish(self) -> None:
        pass

    def close(self) -> None:
        pass


class _Batch:
    """The events sent between two marks; complete when Kafka has acknowledged each."""

    __slots__ = ("sent", "answered", "failed", "checkpoint")

    def __init__(self) -> None:
        self.sent = self.answered = 0
        self.failed = False
        self.checkpoint: Checkpoint | None = None

    @property
    def complete(self) -> bool:
        return self.checkpoint is not None and self.answered == self.sent and not self.failed


class ProducerLike(Protocol):
    def send(self, topic: str, value: bytes, key: bytes | None = None, *,
             on_done: Callable[[Exception | None], None] | None = None, partition: int | None = None) -> object: ...
    def partitions_for(self, topic: str) -> set[int] | None: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float = 10.0) -> None: ...


class KafkaTarget:
    """``--to kafka``: each event as the collector sends it (same codec, topic, key, producer).

    Sends are pipelined, in bursts: events are held until ``burst`` of them are, or until the
    next checkpoint (``mark``) or ``finish``, then sent together — one send per parsed line cost
    more CPU per line (measured in docs/performance.md). A checkpoint is reported from the
    producer's thread the moment every event before it is acknowledged (acks=all), so after a
    kill -9 little is sent twice; held events are never covered by a reported checkpoint.
    The partition is chosen as the collector chooses it (its cached default-partitioner), so a
    replayed event lands where the same event from the collector would.
    """

    name, already, streaming = "kafka", 0, True
    block_lines, block_bytes = 500, 1 << 20
    burst = 250

    def __init__(self, cfg: Config, producer: ProducerLike) -> None:
        k = cfg.kafka
        routes = sorted((t.name, t.topic) for t in cfg.events.types.values())
        self.key = destination_key("kafka", sorted(k.bootstrap_servers), k.topics.prefix, routes)
        self.on_durable: OnDurable = _ignore
        self._producer = producer
        self._partitions = Partitions(producer.partitions_for)
        self._lock = threading.Lock()
        self._batches: deque[_Batch] = deque()
        self._current = _Batch()
        self._error: Exception | None = None
        self._held: list[tuple[str, bytes | None, bytes]] = []    # (topic, key, value), not sent yet

    def begin(self, stream: str) -> None:
        pass

    def add(self, event: Event, value: bytes, line: int) -> None:
        self.check()
        self._held.append((event.topic, event.key, value))
        if len(self._held) >= self.burst:
            self._send_held()

    def _send_held(self) -> None:
        held, self._held = self._held, []
        batch, producer, partition = self._current, self._producer, self._partitions.partition

        def answered(err: Exception | None) -> None:
            self._answered(batch, err)
        for topic, key, value in held:
            batch.sent += 1
            try:
                producer.send(topic, value, key, on_done=answered, partition=partition(topic, key))
            except Exception as exc:  # the topic is unknown, the message too big, no metadata in time …
                batch.failed = True
                raise ReplayFailed(f"kafka: cannot send to {topic}: {type(exc).__name__}: {exc}") from None

    def warm(self, event: Event, value: bytes, line: int) -> None:
        pass

    def _answered(self, batch: _Batch, err: Exception | None) -> None:
        """On the producer's sender thread."""
        with self._lock:
            batch.answered += 1
            if err is not None:
                batch.failed = True
                self._error = self._error or err
            self._report()

    def mark(self, checkpoint: Checkpoint) -> None:
        self._send_held()
        with self._lock:
            self._current.checkpoint = checkpoint
            self._batches.append(self._current)
            self._current = _Batch()
            self._report()
        self.check()

    def _report(self) -> None:
        """Under the lock: hand on the checkpoints whose events, and all before, are acknowledged."""
        done = []
        while self._batches and self._batches[0].complete:
            done.append(self._batches.popleft().checkpoint)
        if done:
            self.on_durable(done)   # type: ignore[arg-type]

    def check(self) -> None:
        if self._error is not None:
            raise ReplayFailed(f"kafka: a send failed: {type(self._error).__name__}: {self._error}")

    def finish(self) -> None:
        self._send_held()
        try:
            self._producer.flush()
        except Exception as exc:
            raise ReplayFailed(f"kafka: flush failed: {type(exc).__name__}: {exc}") from None
        self.check()

    def close(self) -> None:
        self._producer.close()


def missing_topics(cfg: Config, store: SchemaStore) -> list[str]:
    """Event topics the replay may write that do not exist (``eventd setup`` creates them)."""
    from eventd.kafka.topics import existing_topics, needed_topics
    existing = existing_topics(cfg.kafka)
    special = {cfg.kafka.topics.dead_letter, cfg.kafka.topics.control}
    return sorted(t for t in needed_topics(cfg, store) if t not in existing and t not in special)


def open_target(to: str, cfg: Config, store: SchemaStore, dry_run: bool, stop: threading.Event) -> Target:
    """The adapter for ``--to``; checks the destination is usable before any line is read."""
    if dry_run:
        return DryRunTarget()
    if to == "kafka":
        missing = missing_topics(cfg, store)
        if missing:
            raise ReplayFailed(f"kafka: topics missing: {', '.join(missing)} (create them with `eventd setup`)")
        from eventd.kafka.producer import Producer
        return KafkaTarget(cfg, Producer(cfg.kafka, "replay"))
    from eventd.replay import direct
    return direct.open_direct(to, cfg, store, stop)
