"""One window, one transaction: check the offsets, apply the money, stop campaigns, record the
outbox, move the offsets, commit.

The transaction begins by row-locking the stored offsets of the window's partitions, and
classifies each partition's part of the window:

- stored == the offset this instance started from (or last wrote): apply it;
- stored == the part's end: a previous attempt of this very window committed (the
  connection died during COMMIT) — nothing to apply, the window is done;
- anything else: another aggregator applied the partition meanwhile (this instance is
  stale): nothing is applied, the whole transaction is rolled back, and the partition
  is reported lost.

The offsets are then moved by one guarded UPDATE (``WHERE next_offset = expected``), in the
same transaction as the money, so a window is applied exactly once whoever crashes when.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import pymysql

from eventd.kafka.types import TopicPartition
from eventd.roles.balance_aggregator.budget import Budgets, Stop
from eventd.roles.balance_aggregator.events import Charge, DayOf
from eventd.failpoints import failpoint
from eventd.roles.balance_aggregator.ledger import Ledger, LedgerResult
from eventd.roles.balance_aggregator.outbox import Outbox, OutboxRow
from eventd.roles.balance_aggregator.store import Database, OffsetsMoved, Progress

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Part:
    """One partition's share of a window: its offsets and its charges (duplicates removed)."""

    progress: Progress
    charges: list[Charge]


@dataclass
class Outcome:
    applied: list[Progress] = field(default_factory=list)
    done: list[Progress] = field(default_factory=list)           # already applied by an earlier attempt
    lost: list[tuple[Progress, int | None]] = field(default_factory=list)   # with the offset found stored
    rows: list[OutboxRow] = field(default_factory=list)           # committed, to publish
    stops: list[Stop] = field(default_factory=list)
    ledger: LedgerResult | None = None


@dataclass(frozen=True)
class Topics:
    control: str
    dead_letter: str


class WindowApplier:
    """Applies windows through ``db`` (the consumer thread's connection)."""

    def __init__(self, db: Database, ledger: Ledger, budgets: Budgets, outbox: Outbox, day_of: DayOf,
                 topics: Topics, role: str, host: str) -> None:
        self.db, self.ledger, self.budgets, self.outbox = db, ledger, budgets, outbox
        self.day_of, self.topics, self.role, self.host = day_of, topics, role, host
        # Outbox rows of an attempt whose COMMIT raised: committed or not, we find out next time.
        self._uncertain: list[OutboxRow] = []

    def apply(self, parts: list[Part]) -> Outcome:
        """Apply ``parts`` in one transaction; raises RetryableError/FatalSinkError (rolled back)."""
        try:
            return self._apply(parts)
        except pymysql.MySQLError as exc:
            raise self.db.fail(exc, "applying a balance window") from None
        except OffsetsMoved:
            self.db.rollback()
            raise

    def _apply(self, parts: list[Part]) -> Outcome:
        failpoint("balance_aggregator.window_begin")
        cur = self.db.cursor()
        stored = self.db.lock_offsets(cur, [p.progress.tp for p in parts])
        outcome, todo = self._classify(parts, stored)
        if outcome.lost or not todo:
            outcome.rows = self._settle_uncertain(cur) if outcome.done else []
            self.db.rollback()
            return outcome
        failpoint("balance_aggregator.window_locked")
        outcome.ledger = self.ledger.apply(cur, [c for p in todo for c in p.charges])
        now = datetime.now(timezone.utc).replace(tzinfo=None)
        if outcome.ledger.window.spend:
            outcome.stops = self.budgets.stop_reached(cur, self.day_of.today(), now)
        rows = [s.control_event(self.topics.control, self.host) for s in outcome.stops]
        rows += [self._dead_letter(c, reason) for c, reason in outcome.ledger.rejected]
        self.outbox.insert(cur, rows, now)
        failpoint("balance_aggregator.window_applied")
        self.db.advance(cur, [p.progress for p in todo])
        failpoint("balance_aggregator.before_commit")
        self._uncertain = rows
        self.db.commit()
        self._uncertain = []
        failpoint("balance_aggregator.after_commit")
        outcome.rows = rows
        return outcome

    @staticmethod
    def _classify(parts: list[Part], stored: dict[TopicPartition, int]) -> tuple[Outcome, list[Part]]:
        outcome, todo = Outcome(), []
        for part in parts:
            p, found = part.progress, stored.get(part.progress.tp)
            if found == p.expected:
                todo.append(part)
                outcome.applied.append(p)
            elif found == p.next:
                outcome.done.append(p)
            else:
                outcome.lost.append((p, found))
        return outcome, todo

    def _settle_uncertain(self, cur: Any) -> list[OutboxRow]:
        """The rows of the attempt whose COMMIT failed that are in the outbox: it did commit."""
        rows, self._uncertain = self._uncertain, []
        if not rows:
            return []
        ids = [r.event_id for r in rows]
        marks = ", ".join(["%s"] * len(ids))
        cur.execute(self.db.sql("SELECT event_id FROM {outbox} WHERE event_id IN (" + marks + ")"), ids)
        present = {row[0] for row in cur.fetchall()}
        return [r for r in rows if r.event_id in present]

    def _dead_letter(self, c: Charge, reason: str) -> OutboxRow:
        """The dead letter of a charge refused inside the transaction (unknown campaign or account).
        Its id derives from the source position, so a retried window writes the same row."""
        source = f"{c.topic}/{c.partition}/{c.offset}"
        event_id = "dl-" + hashlib.sha1(source.encode()).hexdigest()
        log.warning("dead letter %s: %s", source, reason)
        return OutboxRow(event_id, self.topics.dead_letter, c.key, c.value,
                         (("eventd.reason", f"InvalidEvent: {reason}"), ("eventd.role", self.role),
                          ("eventd.source", source)))
