"""The uploader's sink in the shared consumer loop (a :class:`StagingSink`).

- ``transform``: message → :class:`Record` (records.py), or DecodeError → dead letter; None for
  a collector's resend (an id seen in the ``duplicate_id_window`` messages before it in its
  partition, eventd/event/dedup.py). The window is rebuilt on assignment (``Start.warm``), so
  a flush regenerated after a crash skips the same resends and keeps the same records.
- ``write``: stages a batch into each partition's open flush (local container files) and
  returns at once; it commits nothing itself — only placed flushes are committed.
- ``tick`` (every loop iteration): seals flushes by size and age, places sealed flushes in
  HDFS oldest first (recovery.py's two-phase record, publish.py's temp-and-rename) and returns
  the offsets that became durable, which the loop commits.
- Staging full (``staging_max_size``): ``write`` seals and uploads first; if HDFS does not
  take files it raises RetryableError, and the loop keeps the batch and pauses the partitions
  while staying in the group — backpressure, nothing dropped.
- HDFS failures back off (``retry_backoff`` doubling up to ``retry_backoff_max``); a refusal
  no retry can fix (permission, invalid path) stops the role with FatalSinkError.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import time
from typing import Callable, Iterator

from eventd.config.hdfs import HdfsUploaderConfig
from eventd.errors import DecodeError, EventdError
from eventd.event.codec import envelope_id
from eventd.event.dedup import RecentIds
from eventd.kafka.batch import Batch, Message
from eventd.kafka.consumer_loop import Committed, ConsumerLoop, FatalSinkError, RetryableError, Start
from eventd.kafka.types import CommitFailedError, KafkaError, TopicPartition
from eventd.metrics import DUPLICATES, EVENTS_OUT, HDFS_BACKPRESSURE, HDFS_BYTES, HDFS_FAILURES, HDFS_FILES
from eventd.roles.hdfs_uploader import recovery
from eventd.roles.hdfs_uploader.partition import PartitionState
from eventd.roles.hdfs_uploader.publish import Publisher
from eventd.roles.hdfs_uploader.records import Record, RecordReader
from eventd.roles.hdfs_uploader.staging import Flush, Staging
from eventd.roles.hdfs_uploader.webhdfs import HdfsRefused, HdfsUnavailable

log = logging.getLogger(__name__)
Loop = ConsumerLoop[Record]
# Longest a tick or write spends placing files before the loop polls Kafka again.
UPLOAD_BUDGET = 20.0


class StagingError(EventdError):
    """The local staging directory failed (disk full, I/O error): the role exits and is
    restarted; staging is rebuilt from Kafka."""


@contextlib.contextmanager
def _staging_io(root: str) -> Iterator[None]:
    try:
        yield
    except OSError as exc:
        raise StagingError(f"staging {root}: {exc}") from None


class HdfsSink:
    """Stages records per partition and flush, places sealed flushes, reports durable offsets."""

    def __init__(self, cfg: HdfsUploaderConfig, reader: RecordReader, staging: Staging, publisher: Publisher,
                 role: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg, self.reader, self.staging, self.publisher = cfg, reader, staging, publisher
        self.role, self.clock = role, clock
        self.parts: dict[TopicPartition, PartitionState] = {}
        self._recent: dict[TopicPartition, RecentIds] = {}
        self._durable: dict[TopicPartition, int] = {}
        self._backoff = cfg.retry_backoff
        self._retry_at = 0.0
        self._full = False
        self._pool = concurrent.futures.ThreadPoolExecutor(cfg.upload_parallelism, thread_name_prefix="hdfs-put")

    # -- Sink protocol -----------------------------------------------------------------------
    def start(self, partitions: list[TopicPartition], committed: Committed) -> dict[TopicPartition, Start]:
        """Reset each assigned partition to its committed position and recorded flush."""
        starts = {}
        for tp in partitions:
            self._forget(tp)
            where = recovery.resume(committed.get(tp))
            self.parts[tp] = PartitionState(tp, where.offset, where.flush_end)
            self._recent[tp] = RecentIds(self.cfg.duplicate_id_window)
            if where.flush_end is not None:
                log.info("%s/%d: flush %d..%d was being placed: regenerating it, skipping files in place",
                         tp.topic, tp.partition, where.offset, where.flush_end)
            starts[tp] = Start(offset=where.offset, warm=self.cfg.duplicate_id_window)
        return starts

    def warm(self, msg: Message) -> None:
        """A message before the start offset: only its id, into the duplicate window."""
        try:
            self._window(msg).seen(msg.offset, envelope_id(msg.value))
        except DecodeError:      # as in transform: an unreadable id is not remembered
            pass

    def transform(self, msg: Message) -> Record | None:
        """The record of ``msg``; None for a resend already archived. Raises DecodeError."""
        if self._window(msg).seen(msg.offset, envelope_id(msg.value)):
            DUPLICATES.labels(self.role).inc()
            return None
        return self.reader.read(msg)

    def _window(self, msg: Message) -> RecentIds:
        """The id window of ``msg``'s partition. A plain (topic, partition) tuple finds it
        (TopicPartition is a tuple too): no TopicPartition is built per message."""
        window = self._recent.get((msg.topic, msg.partition))  # type: ignore[call-overload]
        if window is None:       # start() always runs first; this only guards against a surprise
            window = self._recent[msg.tp] = RecentIds(self.cfg.duplicate_id_window)
        return window

    def write(self, batch: Batch[Record], loop: Loop) -> dict[TopicPartition, int]:
        """Stage ``batch``; raises RetryableError (nothing staged) while staging is full."""
        self._forget_revoked(loop)
        if self.staging.bytes >= self.cfg.staging_max_size:
            self._relieve(loop)
        self._set_full(False)
        for tp, part in batch:
            state = self.parts.get(tp)
            if state is None:
                continue    # revoked meanwhile: its new owner reads it again
            with _staging_io(self.staging.root):
                try:
                    state.add(part, self.staging)
                except ValueError as exc:   # two schema families for one file: a routing error
                    raise FatalSinkError(f"{tp.topic}/{tp.partition}: {exc}") from None
                state.roll(self.staging, self.clock(), self.cfg.roll_size, self.cfg.roll_age)
        return self._take_durable(loop)

    def tick(self, loop: Loop, deadline: float | None) -> dict[TopicPartition, int]:
        """Seal by age, place what is sealed; when stopping, everything until ``deadline``."""
        self._forget_revoked(loop)
        with _staging_io(self.staging.root):
            if deadline is None:
                self._roll_all(force=False)
                self._upload(loop, UPLOAD_BUDGET)
            else:
                self._drain(loop, deadline)
        return self._take_durable(loop)

    def close(self) -> None:
        """Drop what is staged: it was never committed and is read again from Kafka."""
        self._pool.shutdown(wait=True)
        for tp in list(self.parts):
            self._forget(tp)

    # -- placing flushes ---------------------------------------------------------------------
    def _upload(self, loop: Loop, budget: float, below: int | None = None) -> None:
        """Place sealed flushes, oldest first, for up to ``budget`` seconds (or until staging is
        under ``below`` bytes): in rounds of up to ``upload_parallelism`` partitions at once,
        each partition's flushes in order. A failure starts a backoff during which nothing is
        tried."""
        if self.clock() < self._retry_at:
            return
        end = self.clock() + budget
        while self.clock() < end and (below is None or self.staging.bytes >= below):
            heads = self._record(loop, self._heads())
            if not heads:
                return
            errors = [e for e in self._pool.map(self._place, heads) if e is not None]
            finished = [f for f in heads if all(s.placed for s in f.files.values())]
            for flush in finished:
                self._finish(flush)
            refused = [e for e in errors if isinstance(e, HdfsRefused)]
            if refused:
                HDFS_FAILURES.labels(self.role, "refused").inc()
                raise FatalSinkError(f"HDFS refused: {refused[0]}") from None
            if errors:
                self._failed(errors[0])
                return
            self._backoff = self.cfg.retry_backoff
            if not finished:
                return      # cannot happen; never spin

    def _heads(self) -> list[Flush]:
        """The oldest sealed flush of each partition, oldest first, one round's worth."""
        heads = sorted((s.sealed[0] for s in self.parts.values() if s.sealed), key=lambda f: f.sealed_at or 0)
        return heads[:self.cfg.upload_parallelism]

    def _record(self, loop: Loop, heads: list[Flush]) -> list[Flush]:
        """Record in Kafka each flush about to be placed (recovery.py, phase 1), in one commit.
        Returns the flushes still ours; none if the group took our partitions."""
        todo = {f.tp: f for f in heads if f.files and self.parts[f.tp].recorded_end != f.last}
        if todo:
            try:
                loop.commit({tp: recovery.record(f.first, f.last) for tp, f in todo.items()})   # type: ignore[arg-type]
            except CommitFailedError:
                log.warning("partitions were reassigned; leaving their flushes to the new owners")
                for tp in todo:
                    self._forget(tp)
                return [f for f in heads if f.tp in self.parts]
            except KafkaError as exc:
                self._failed(exc)
                return []
            for tp, f in todo.items():
                self.parts[tp].recorded_end = f.last
        return heads

    def _place(self, flush: Flush) -> Exception | None:
        """Phase 2, in a worker thread: clean the partition's temporary files once, then place
        the flush's files. Returns the error instead of raising it."""
        state = self.parts.get(flush.tp)
        if state is None or not flush.files:
            return None
        try:
            if not state.tmp_cleaned:
                self.publisher.clean_tmp(flush.tp)
                state.tmp_cleaned = True
            placed = self.publisher.place(flush)
        except (HdfsUnavailable, HdfsRefused) as exc:
            return exc
        HDFS_FILES.labels(self.role).inc(placed.files)
        HDFS_BYTES.labels(self.role).inc(placed.bytes)
        EVENTS_OUT.labels(self.role, "hdfs").inc(placed.records)
        return None

    def _finish(self, flush: Flush) -> None:
        """Phase 3 follows when the loop commits ``last + 1`` from :meth:`_take_durable`."""
        assert flush.last is not None
        state = self.parts[flush.tp]
        log.debug("%s/%d: flush %d..%d placed (%d files, %d records)", flush.tp.topic, flush.tp.partition,
                  flush.first, flush.last, len(flush.files), flush.records)
        state.sealed.popleft()
        state.recorded_end = None
        self.staging.discard(flush)
        self._durable[flush.tp] = flush.last + 1

    def _failed(self, exc: Exception) -> None:
        kind = "kafka" if isinstance(exc, KafkaError) else "hdfs"
        HDFS_FAILURES.labels(self.role, kind).inc()
        log.warning("cannot place files in HDFS, retrying in %.1fs: %s", self._backoff, exc)
        self._retry_at = self.clock() + self._backoff
        self._backoff = min(self._backoff * 2, self.cfg.retry_backoff_max)

    def _relieve(self, loop: Loop) -> None:
        """Staging is full: seal everything and place files until it is not; raise RetryableError
        (backpressure) if HDFS does not take them."""
        with _staging_io(self.staging.root):
            self._roll_all(force=True)
        self._upload(loop, UPLOAD_BUDGET, below=self.cfg.staging_max_size)
        waiting = any(state.sealed for state in self.parts.values())
        if self.staging.bytes >= self.cfg.staging_max_size and waiting:
            self._set_full(True)
            raise RetryableError(f"staging full ({self.staging.bytes} of {self.cfg.staging_max_size} bytes)")

    def _set_full(self, full: bool) -> None:
        """Log and export the transitions into and out of backpressure."""
        if full == self._full:
            return
        self._full = full
        HDFS_BACKPRESSURE.labels(self.role).set(int(full))
        if full:
            log.warning("staging full (%d of %d bytes): consumption paused until HDFS takes files",
                        self.staging.bytes, self.cfg.staging_max_size)
        else:
            log.info("staging below its limit again (%d bytes): consumption resumed", self.staging.bytes)

    def _drain(self, loop: Loop, deadline: float) -> None:
        """Stopping: seal and place everything, retrying until ``deadline``."""
        self._roll_all(force=True)
        with self.publisher.client.deadline(deadline):
            while any(s.sealed for s in self.parts.values()) and self.clock() < deadline:
                self._retry_at = 0.0
                self._upload(loop, deadline - self.clock())
                if any(s.sealed for s in self.parts.values()):
                    time.sleep(max(0.0, min(self._backoff, deadline - self.clock())))
        left = sum(len(s.sealed) for s in self.parts.values())
        if left:
            log.warning("stopping with %d flushes not in HDFS: they are read again from Kafka next time", left)

    # -- partition bookkeeping ---------------------------------------------------------------
    def _roll_all(self, force: bool) -> None:
        now = self.clock()
        for state in self.parts.values():
            state.roll(self.staging, now, self.cfg.roll_size, self.cfg.roll_age, force=force)

    def _take_durable(self, loop: Loop) -> dict[TopicPartition, int]:
        """Offsets for the loop to commit (phase 3). A partition whose next flush is already
        recorded is left out: the record committed that same offset, and a plain commit now
        would erase the record of a flush that may be partly in HDFS."""
        durable, self._durable = self._durable, {}
        return {tp: off for tp, off in durable.items()
                if tp in self.parts and self.parts[tp].recorded_end is None}

    def _forget_revoked(self, loop: Loop) -> None:
        assigned = loop.consumer.assignment()
        for tp in [tp for tp in self.parts if tp not in assigned]:
            self._forget(tp)

    def _forget(self, tp: TopicPartition) -> None:
        state = self.parts.pop(tp, None)
        if state is not None:
            state.discard(self.staging)
        self._durable.pop(tp, None)
        self._recent.pop(tp, None)
