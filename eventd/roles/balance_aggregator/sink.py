"""The balance aggregator's :class:`~eventd.kafka.consumer_loop.Sink`: the glue between the
shared consumer loop (which batches one window of messages) and MariaDB.

- ``start``: each assigned partition starts at the offset stored in MariaDB — Kafka's own
  committed offset is informative only — after re-reading the ``dedup_window`` messages
  before it to rebuild the dedup window (unless this process already holds it).
- ``transform``: message → :class:`Charge` (bad events are dead-lettered by the loop).
- ``write``: drops duplicates, applies the window in one transaction (see ``apply.py``),
  then records the window's ids and publishes the committed outbox messages.
"""

from __future__ import annotations

import logging
import threading
import time

import pymysql

from eventd.errors import DecodeError, InvalidEvent
from eventd.kafka.batch import Batch, Message, PartitionBatch
from eventd.kafka.consumer_loop import Committed, ConsumerLoop, FatalSinkError, RetryableError, Start
from eventd.kafka.types import TopicPartition
from eventd.metrics import BALANCE_WINDOWS, CAMPAIGNS_STOPPED, DUPLICATES, EVENTS_OUT, MONEY_APPLIED, REJECTED
from eventd.roles.balance_aggregator.apply import Outcome, Part, WindowApplier
from eventd.roles.balance_aggregator.dedup import RecentIds
from eventd.roles.balance_aggregator.events import Charge, ChargeReader
from eventd.roles.balance_aggregator.outbox import Outbox
from eventd.roles.balance_aggregator.store import Database, Progress

log = logging.getLogger(__name__)


class BalanceSink:
    """Runs on the consumer thread only."""

    def __init__(self, db: Database, applier: WindowApplier, reader: ChargeReader, outbox: Outbox,
                 dedup_window: int, role: str, stop: threading.Event, start_timeout: float = 60.0,
                 healthy: "threading.Thread | None" = None) -> None:
        self.db, self.applier, self.reader, self.outbox = db, applier, reader, outbox
        self.dedup_window, self.role, self.stop = dedup_window, role, stop
        self.start_timeout, self.healthy = start_timeout, healthy
        self._ids: dict[TopicPartition, RecentIds] = {}
        self._expected: dict[TopicPartition, int] = {}
        self._pruned = time.monotonic()

    # -- assignment ------------------------------------------------------------------
    def start(self, partitions: list[TopicPartition], committed: Committed) -> dict[TopicPartition, Start]:
        stored = self._stored_offsets(partitions)
        starts = {tp: self._start(tp, stored[tp], committed.get(tp)) for tp in partitions}
        warm = {tp: s.warm for tp, s in starts.items() if s.warm}
        if warm:
            log.info("rebuilding the dedup window of %d partition(s): re-reading %d messages before their stored "
                     "offsets", len(warm), sum(warm.values()))
        return starts

    def _start(self, tp: TopicPartition, offset: int, committed: object) -> Start:
        self._expected[tp] = offset
        ids = self._ids.get(tp)
        warm = 0
        if ids is None or ids.next != offset:   # ours only if it ends exactly where we start
            self._ids[tp] = RecentIds(self.dedup_window, max(0, offset - self.dedup_window))
            warm = min(self.dedup_window, offset)
        kafka = getattr(committed, "offset", None)
        if kafka is not None and kafka != offset:   # informative only: MariaDB's offset is the truth
            log.info("%s/%d: Kafka's committed offset %d differs from the stored offset %d; using the stored one",
                     tp.topic, tp.partition, kafka, offset)
        return Start(offset=offset, warm=warm)

    def _stored_offsets(self, partitions: list[TopicPartition]) -> dict[TopicPartition, int]:
        """Retries while MariaDB is unavailable, up to ``start_timeout``; then raises (the role
        restarts, it never starts a partition anywhere but at its stored offset)."""
        deadline, backoff = time.monotonic() + self.start_timeout, 0.5
        while True:
            try:
                return self.db.stored_offsets(partitions)
            except pymysql.MySQLError as exc:
                error = self.db.fail(exc, "reading the stored offsets")
                if not isinstance(error, RetryableError) or time.monotonic() + backoff > deadline or self.stop.is_set():
                    raise error from None
                log.warning("%s; retrying in %.1fs", error, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    def warm(self, msg: Message) -> None:
        ids = self._ids.get(msg.tp)
        if ids is None or msg.offset < ids.next:
            return
        try:
            charge = self.reader.read(msg)
        except (DecodeError, InvalidEvent):
            return                   # never an item in the main path either: not in the window
        ids.add(msg.offset, charge.event_id)

    # -- consuming -------------------------------------------------------------------
    def transform(self, msg: Message) -> Charge:
        return self.reader.read(msg)

    def write(self, batch: Batch[Charge], loop: ConsumerLoop[Charge]) -> None:
        if self.healthy is not None and not self.healthy.is_alive():
            raise FatalSinkError("the outbox sweeper thread died; control events would not be resent")
        while batch:
            parts = {tp: self._part(tp, pb) for tp, pb in batch}
            outcome = self.applier.apply(list(parts.values()))
            if outcome.lost:
                self._restart(outcome, batch, loop)
                continue             # the other partitions' parts are still ours: apply them
            for progress in outcome.applied + outcome.done:
                part = batch.parts[progress.tp]
                self._ids[progress.tp].extend(part.items, part.last + 1)
                self._expected[progress.tp] = progress.next
            self.outbox.publish(outcome.rows)
            self._count(batch, parts, outcome)
            break
        self._prune(loop)

    def _part(self, tp: TopicPartition, pb: PartitionBatch[Charge]) -> Part:
        expected, ids = self._expected.get(tp), self._ids.get(tp)
        if expected is None or ids is None:
            raise FatalSinkError(f"{tp.topic}/{tp.partition}: no stored offset was read for this partition")
        if pb.first < expected:
            raise FatalSinkError(f"{tp.topic}/{tp.partition}: batch starts at {pb.first}, before the stored "
                                 f"offset {expected}")
        return Part(Progress(tp, expected, pb.last + 1), ids.fresh(pb.items))

    def _restart(self, outcome: Outcome, batch: Batch[Charge], loop: ConsumerLoop[Charge]) -> None:
        """Another aggregator applied these partitions since this one read its stored offsets: a
        stale instance (paused past its session timeout) or the partition's new owner racing a
        stale one. Nothing of the window was applied (rolled back). Their parts are dropped and
        the partitions restarted from the stored offsets, as on a new assignment; the rebalance
        takes them away if they are no longer ours."""
        tps = [progress.tp for progress, _ in outcome.lost]
        log.warning("another aggregator applied %d partition(s) since this one read their offsets (stored, "
                    "expected: %s): window rolled back, nothing applied; restarting them from the stored offsets",
                    len(tps), ", ".join(f"{p.tp.topic}/{p.tp.partition} {found}, {p.expected}"
                                        for p, found in outcome.lost))
        for tp in tps:
            self._ids.pop(tp, None)
            self._expected.pop(tp, None)
        BALANCE_WINDOWS.labels(self.role, "lost").inc()
        batch.drop(tps)
        loop.restart(tps)        # the loop forgets what it read of them and asks start() for their stored offsets

    def _prune(self, loop: ConsumerLoop[Charge]) -> None:
        """Free the dedup windows of partitions no longer assigned (once a minute)."""
        if time.monotonic() - self._pruned < 60:
            return
        self._pruned = time.monotonic()
        assigned = set(loop.consumer.assignment())
        for tp in [tp for tp in self._ids if tp not in assigned]:
            del self._ids[tp]
            self._expected.pop(tp, None)

    def _count(self, batch: Batch[Charge], parts: dict[TopicPartition, Part], outcome: Outcome) -> None:
        if outcome.done:
            BALANCE_WINDOWS.labels(self.role, "already_applied").inc()
            log.info("window already applied by an earlier attempt whose commit outcome was unknown; skipped")
        if not outcome.applied or outcome.ledger is None:
            return
        BALANCE_WINDOWS.labels(self.role, "applied").inc()
        dups = sum(len(batch.parts[p.tp].items) - len(parts[p.tp].charges) for p in outcome.applied)
        if dups:
            DUPLICATES.labels(self.role).inc(dups)
            log.info("skipped %d duplicate event(s) (same event id within the dedup window)", dups)
        w = outcome.ledger.window
        EVENTS_OUT.labels(self.role, "mariadb").inc(w.events)
        MONEY_APPLIED.labels(self.role, "cost").inc(w.cost_total)
        MONEY_APPLIED.labels(self.role, "revenue").inc(w.revenue_total)
        for _, reason in outcome.ledger.rejected:
            label = "unknown campaign" if reason.startswith("unknown campaign") else "unknown account"
            REJECTED.labels(self.role, label).inc()
        for stop in outcome.stops:
            CAMPAIGNS_STOPPED.labels(self.role, stop.reason).inc()
            log.info("campaign %d stopped: %s reached (spent %d, day %s spent %d, overspend %d micro-units)",
                     stop.campaign, stop.reason, stop.spent, stop.day, stop.day_spent, stop.overspend)
        if outcome.ledger.created_campaigns:
            log.info("created campaigns %s (unknown_campaign: create)", outcome.ledger.created_campaigns)

    def close(self) -> None:
        self.db.close()
