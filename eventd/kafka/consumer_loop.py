"""The consumer loop every consumer role runs: poll → transform → batch → write → commit.

A role supplies a :class:`Sink`; the loop owns the Kafka consumer and guarantees:

- offsets are committed only after ``Sink.write`` returned (the sink has the data);
- a batch is flushed when it has ``max_items`` items or is ``max_age`` old — the age is
  checked on every poll, so a quiet stream still flushes its tail;
- a message the sink cannot transform goes to the dead-letter topic (acknowledged before
  any commit past it) and the stream goes on, until the invalid share passes its limit;
- ``Sink.write`` raising :class:`RetryableError` is retried with backoff while the
  consumer stays in its group (partitions paused, ``poll`` still called); :class:`FatalSinkError`
  stops the role and nothing is committed past the failed batch;
- on a rebalance the uncommitted parts of revoked partitions are dropped: the sinks are
  idempotent, so the partition's next owner redoes them from the committed position;
- on start and on every assignment the sink chooses each partition's start (:class:`Start`):
  its own stored offset, a forced first-batch boundary, and a warm-up read of recent
  messages (to rebuild a dedup window) without writing them;
- a sink that stages data and makes it durable later (HDFS files) returns from ``write`` the
  offsets durable so far instead of None, and may define ``tick`` (:class:`StagingSink`): the
  loop calls it on every iteration and once more when stopping, and commits what it returns.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from eventd.errors import DecodeError, EventdError, InvalidEvent
from eventd.kafka.batch import Batch, Message
from eventd.kafka.consumer import Consumer
from eventd.kafka.deadletter import DeadLetter, InvalidLimit
from eventd.kafka.types import CommitFailedError, KafkaError, OffsetAndMetadata, TopicPartition
from eventd.metrics import BATCH_ROWS, EVENTS_IN, FLUSH_SECONDS, LAG, SINK_ERRORS

log = logging.getLogger(__name__)
T = TypeVar("T")
Committed = dict[TopicPartition, OffsetAndMetadata | None]


class RetryableError(EventdError):
    """The sink is unavailable for now (down, timed out); the same batch will be retried."""


class FatalSinkError(EventdError):
    """The sink refuses the data for a reason retrying cannot fix (missing column, wrong type)."""


@dataclass(frozen=True)
class Start:
    """Where a newly assigned partition starts.

    offset:  the first offset to process; None = Kafka's committed offset (or the earliest).
    cut_at:  the first batch of this partition must end exactly at this offset (recovering a
             batch whose boundaries were recorded before a crash, so the retry is identical).
    warm:    read up to this many messages before ``offset`` into ``Sink.warm`` first.
    """

    offset: int | None = None
    cut_at: int | None = None
    warm: int = 0


class Sink(Protocol[T]):
    """What a consumer role plugs into the loop."""

    def start(self, partitions: list[TopicPartition], committed: Committed) -> dict[TopicPartition, Start]:
        """Called on every assignment, before any message of these partitions is read."""

    def warm(self, msg: Message) -> None:
        """A message before the start offset, read only to rebuild in-memory state."""

    def transform(self, msg: Message) -> T | None:
        """The item to write for ``msg``; None to skip it. Raises DecodeError/InvalidEvent to
        dead-letter it. Must be deterministic: a replayed batch must give the same items."""

    def write(self, batch: Batch[T], loop: "ConsumerLoop[T]") -> dict[TopicPartition, int] | None:
        """Make the batch durable in the sink. Returns only when it is; raises RetryableError
        or FatalSinkError otherwise. ``loop.commit`` is available for two-phase recording.
        Returns None (the loop commits the batch's end) or, for a sink that only stages data,
        the next offsets durable so far, which the loop commits instead (possibly none)."""

    def close(self) -> None:
        """Release connections."""


class StagingSink(Sink[T], Protocol[T]):
    """A sink whose ``write`` may only stage data, made durable later in ``tick``."""

    def tick(self, loop: "ConsumerLoop[T]", deadline: float | None) -> dict[TopicPartition, int] | None:
        """Called on every loop iteration (``deadline`` None) and once after the final flush when
        stopping (``deadline``: monotonic time by which to be done). Returns the next offsets that
        became durable (the loop commits them), or None. Keep each call short while ``deadline``
        is None: the loop polls Kafka between ticks."""


@dataclass(frozen=True)
class LoopSettings:
    role: str
    topics: list[str]
    max_items: int
    max_age: float
    poll_timeout: float = 0.2
    drain_timeout: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 15.0
    lag_interval: float = 10.0


class ConsumerLoop(Generic[T]):
    """Runs one sink over one consumer until ``stop`` is set. Not thread-safe: one thread."""

    def __init__(self, settings: LoopSettings, consumer: Consumer, sink: Sink[T],
                 dead_letter: DeadLetter, invalid: InvalidLimit) -> None:
        self.s, self.consumer, self.sink = settings, consumer, sink
        self.dead_letter, self.invalid = dead_letter, invalid
        self.batch: Batch[T] = Batch()
        self._warm_until: dict[TopicPartition, int] = {}
        self._cut_at: dict[TopicPartition, int] = {}
        self._last_lag = 0.0
        self._stop = threading.Event()
        self._held: Batch[T] = Batch()
        self._owned: set[TopicPartition] = set()       # started and not revoked: their messages are ours
        self._revocations: dict[TopicPartition, int] = {}   # per partition: revoked or restarted how often

    # -- main loop ---------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set, then flush what is pending and close the consumer."""
        self._stop = stop
        self._subscribe()
        try:
            while not stop.is_set():
                self._poll_once()
                if self.batch and self.batch.age() >= self.s.max_age:
                    self.flush()
                self._tick(None)
                self._report_lag()
            deadline = time.monotonic() + self.s.drain_timeout
            if not self.flush(deadline):
                log.warning("stopped with an unwritten batch: it is redone from the committed offsets")
            else:
                self._tick(deadline)
        finally:
            self.sink.close()
            self.consumer.close()    # leaving the group revokes: on_revoked only forgets state

    def _subscribe(self) -> None:
        self.consumer.subscribe(self.s.topics, self.on_assigned, self.on_revoked)
        missing = set(self.s.topics) - set(self.consumer.topics())
        if missing:
            log.warning("topics not found (run `eventd setup`): %s; read once they exist", ", ".join(sorted(missing)))

    def _poll_once(self) -> None:
        timeout = self.s.poll_timeout if not self.batch else max(0.0, min(self.s.poll_timeout,
                                                                           self.s.max_age - self.batch.age()))
        records = self.consumer.poll(timeout)
        revocations = self._revocations
        seen = {tp: revocations.get(tp, 0) for tp in records}
        for tp, msgs in records.items():
            # A flush may poll (retrying in the group) and so rebalance, or the sink may restart a
            # partition. The rest of its messages in hand then belongs to the partition's new
            # owner, or is read again from its new start (where the consumer now stands); kept,
            # it would form a batch with wrong boundaries (found by the fault suite: a SIGSTOPped
            # loader wrote such a batch twice).
            if tp not in self._owned or revocations.get(tp, 0) != seen[tp]:
                continue
            EVENTS_IN.labels(self.s.role, tp.topic).inc(len(msgs))
            i = 0
            while i < len(msgs) and revocations.get(tp, 0) == seen[tp]:
                if tp in self._cut_at or msgs[i].offset < self._warm_until.get(tp, -1):
                    self._handle(tp, msgs[i])      # one by one: a recorded boundary or warm-up reads
                    i += 1
                else:
                    # Up to the batch's size limit at once: the limit is reached, if at all, by
                    # the run's last message, so the batch ends where one by one it would have.
                    n = max(1, self.s.max_items - self.batch.items)
                    self._add_run(tp, msgs[i:i + n])
                    i += n
                    if self.batch.items >= self.s.max_items:
                        self.flush()

    def _handle(self, tp: TopicPartition, msg: Message) -> None:
        if msg.offset < self._warm_until.get(tp, -1):
            self.sink.warm(msg)
            return
        self.batch.add(tp, msg.offset, self._transform(msg))
        cut = self._cut_at.get(tp)
        if cut is not None and msg.offset >= cut:
            del self._cut_at[tp]     # the recorded batch is complete again: write it now
            self.flush()
        elif self.batch.items >= self.s.max_items:
            self.flush()

    def _add_run(self, tp: TopicPartition, msgs: list[Message]) -> None:
        """Transform consecutive messages of ``tp`` into the batch: ``_transform`` for each,
        without a call per message to the loop's own bookkeeping (the hot path of every
        consumer role)."""
        transform, items, valid = self.sink.transform, [], 0
        for msg in msgs:
            try:
                item = transform(msg)
            except (DecodeError, InvalidEvent) as exc:
                self.invalid.valid(valid)
                valid = 0
                self._dead_letter(msg, exc)
                continue
            valid += 1
            if item is not None:
                items.append(item)
        self.invalid.valid(valid)
        self.batch.extend(tp, msgs[0].offset, msgs[-1].offset, items, len(msgs))

    def _transform(self, msg: Message) -> T | None:
        try:
            item = self.sink.transform(msg)
        except (DecodeError, InvalidEvent) as exc:
            self._dead_letter(msg, exc)
            return None
        self.invalid.valid()
        return item

    def _dead_letter(self, msg: Message, exc: DecodeError | InvalidEvent) -> None:
        self.dead_letter.send(msg.value, f"{type(exc).__name__}: {exc}", msg.topic, msg.partition, msg.offset, msg.key)
        self.invalid.invalid()

    # -- writing and committing --------------------------------------------------------
    def flush(self, deadline: float | None = None) -> bool:
        """Write the pending batch and commit; True when done (or nothing was pending).

        Partitions still short of a recorded batch boundary (``Start.cut_at``) are held back.
        Retries a RetryableError until it succeeds or, once the role is stopping, until
        ``deadline`` (default: ``drain_timeout`` from now); then gives up with False and
        commits nothing — the batch is redone from the committed offsets.
        """
        self.batch, self._held = self.batch.split(list(self._cut_at))
        try:
            return self._write_and_commit(deadline or time.monotonic() + self.s.drain_timeout)
        finally:
            self.batch, self._held = self._held, Batch()

    def _write_and_commit(self, deadline: float) -> bool:
        if not self.batch:
            return True
        self.dead_letter.flush()
        started, backoff = time.monotonic(), self.s.backoff_initial
        durable: dict[TopicPartition, int] | None = None
        while self.batch:
            try:
                durable = self.sink.write(self.batch, self)
                break
            except RetryableError as exc:
                SINK_ERRORS.labels(self.s.role, type(self.sink).__name__).inc()
                log.warning("sink unavailable, retrying in %.1fs: %s", backoff, exc)
                if self._stop.is_set() and time.monotonic() >= deadline:
                    return False
                self._wait_in_group(backoff)
                backoff = min(backoff * 2, self.s.backoff_max)
        if self.batch:
            FLUSH_SECONDS.labels(self.s.role).observe(time.monotonic() - started)
            BATCH_ROWS.labels(self.s.role).observe(self.batch.items)
            self._commit_offsets(self.batch.next_offsets() if durable is None else durable)
        return True

    def _tick(self, deadline: float | None) -> None:
        """Let a :class:`StagingSink` make staged data durable; commit what it reports."""
        tick = getattr(self.sink, "tick", None)
        if tick is not None:
            self._commit_offsets(tick(self, deadline) or {})

    def _commit_offsets(self, next_offsets: dict[TopicPartition, int]) -> None:
        if not next_offsets:
            return
        try:
            self.commit({tp: OffsetAndMetadata(off, "", -1) for tp, off in next_offsets.items()})
        except CommitFailedError as exc:
            # We were rebalanced away; the new owner redoes the batch and the sink deduplicates.
            log.warning("commit refused after a rebalance; the partitions' new owner redoes them: %s", exc)
        except KafkaError as exc:
            if not exc.retriable:
                raise
            # Kafka unreachable. Commits are cumulative: the next batch's commit covers this one;
            # if the role stops first, its successor redoes the batch and the sink deduplicates.
            log.warning("commit not done, Kafka unavailable (%s: %s); the next commit covers it",
                        type(exc).__name__, exc)

    def commit(self, offsets: dict[TopicPartition, OffsetAndMetadata]) -> None:
        """Commit to Kafka synchronously (sinks use it to record a batch before writing it)."""
        self.consumer.commit(offsets)

    def _wait_in_group(self, seconds: float) -> None:
        """Sleep ``seconds`` while still calling poll(), so the group does not evict us."""
        self.consumer.pause_all()
        try:
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                stray = self.consumer.poll(min(0.5, end - time.monotonic()))
                for tp, msgs in stray.items():   # paused partitions return nothing; if one did, read it later
                    self.consumer.seek(tp, msgs[0].offset)
        finally:
            self.consumer.resume_all()

    # -- assignment (called inside ``consumer.poll``, on the loop's thread) ---------------
    def on_revoked(self, revoked: list[TopicPartition]) -> None:
        for tp in revoked:
            self._revocations[tp] = self._revocations.get(tp, 0) + 1
        self._owned.difference_update(revoked)
        self.batch.drop(list(revoked))
        self._held.drop(list(revoked))
        for tp in revoked:
            self._warm_until.pop(tp, None)
            self._cut_at.pop(tp, None)

    def on_assigned(self, assigned: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Ask the sink where the new partitions start; the consumer is assigned at the returned
        offsets (warm-up reads included), so nothing of them is read before."""
        if not assigned:
            return {}
        committed = self.consumer.committed(assigned)
        starts = self.sink.start(list(assigned), committed)
        offsets = {tp: self._position(tp, starts.get(tp, Start()), committed.get(tp)) for tp in assigned}
        self._owned.update(assigned)
        return offsets

    def restart(self, tps: list[TopicPartition]) -> None:
        """Forget everything read of ``tps`` and start them again as on a new assignment
        (a sink that found its stored offsets moved by another instance)."""
        self.on_revoked(tps)
        for tp, offset in self.on_assigned(tps).items():
            self.consumer.seek(tp, offset)

    def _position(self, tp: TopicPartition, start: Start, committed: OffsetAndMetadata | None) -> int:
        """The offset to read ``tp`` from (before ``start.offset`` by the warm-up)."""
        offset = start.offset if start.offset is not None else (committed.offset if committed else None)
        if offset is None:
            marks = self.consumer.watermarks(tp)
            offset = marks[0] if marks else 0
        if start.cut_at is not None:
            self._cut_at[tp] = start.cut_at
        if start.warm:
            self._warm_until[tp] = offset
        log.info("partition %s/%d starts at %d%s", tp.topic, tp.partition, offset,
                 f" (first batch ends at {start.cut_at})" if start.cut_at is not None else "")
        return max(0, offset - start.warm)

    def _report_lag(self) -> None:
        if time.monotonic() - self._last_lag < self.s.lag_interval:
            return
        self._last_lag = time.monotonic()
        try:
            positions = self.consumer.positions(self.consumer.assignment())
            for tp, position in positions.items():
                marks = self.consumer.watermarks(tp, cached=True)
                if marks is not None:
                    LAG.labels(self.s.role, tp.topic, tp.partition).set(marks[1] - position)
        except KafkaError:
            pass
