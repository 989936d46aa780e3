"""The outbox: Kafka messages decided inside a balance transaction, written in it, sent after it.

A ``campaign_stopped`` control event (or the dead letter of an event for an unknown
campaign) must be published if and only if its transaction committed. So the message is a
row of the outbox table, inserted in the window's transaction; after COMMIT it is sent, and
once Kafka acknowledged it the row is deleted. A crash anywhere in between leaves the row;
:class:`OutboxSweeper` sends rows older than ``control_resend_after`` again — the same bytes,
the same event id, so a consumer that already saw it recognises the repeat.
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

import pymysql

from eventd.config.balances import MariaDBConfig
from eventd.kafka.producer import Producer
from eventd.metrics import OUTBOX_PENDING
from eventd.roles.balance_aggregator.schema import Sql

log = logging.getLogger(__name__)

INSERT = ("INSERT INTO {outbox} (event_id, topic, msg_key, value, headers, created_at) "
          "VALUES (%s, %s, %s, %s, %s, %s)")
OLD = ("SELECT event_id, topic, msg_key, value, headers FROM {outbox} "
       "WHERE created_at < UTC_TIMESTAMP(6) - INTERVAL %s MICROSECOND ORDER BY created_at LIMIT 1000")
DELETE = "DELETE FROM {outbox} WHERE event_id IN ({ids})"


@dataclass(frozen=True)
class OutboxRow:
    event_id: str
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, str], ...]


class Outbox:
    """Thread-safe: the consumer thread inserts and publishes, the producer's thread reports
    acknowledgements, the sweeper thread deletes and resends."""

    def __init__(self, sql: Sql, producer: Producer, role: str, resend_after: float) -> None:
        self.sql, self.producer, self.role = sql, producer, role
        self.resend_after = resend_after
        self._insert, self._old = sql(INSERT), sql(OLD)
        self._lock = threading.Lock()
        self._in_flight: set[str] = set()
        self._acked: set[str] = set()

    def insert(self, cur: Any, rows: list[OutboxRow], now: datetime) -> None:
        """Record ``rows`` in the caller's transaction."""
        if rows:
            cur.executemany(self._insert, [(r.event_id, r.topic, r.key, r.value, json.dumps(dict(r.headers)), now)
                                           for r in rows])

    def publish(self, rows: list[OutboxRow]) -> None:
        """Send ``rows`` (already committed) without waiting; rows in flight are not sent twice."""
        for row in rows:
            with self._lock:
                if row.event_id in self._in_flight or row.event_id in self._acked:
                    continue
                self._in_flight.add(row.event_id)
            headers = [(k, v.encode()) for k, v in row.headers]
            self.producer.send(row.topic, row.value, key=row.key, headers=headers,
                               on_done=partial(self._done, row.event_id))
        self._gauge()

    def _done(self, event_id: str, error: Exception | None) -> None:
        with self._lock:
            self._in_flight.discard(event_id)
            if error is None:
                self._acked.add(event_id)
        if error is not None:
            log.warning("outbox message %s not acknowledged by Kafka (sent again later): %s", event_id, error)

    def sweep(self, conn: pymysql.Connection, resend: bool = True) -> None:
        """Delete acknowledged rows; send again the rows nobody acknowledged in time."""
        with self._lock:
            acked = sorted(self._acked)
        with conn.cursor() as cur:
            if acked:
                cur.execute(DELETE.format(outbox=self.sql("{outbox}"), ids=", ".join(["%s"] * len(acked))), acked)
                conn.commit()
                with self._lock:
                    self._acked.difference_update(acked)
            if not resend:
                return
            cur.execute(self._old, (int(self.resend_after * 1_000_000),))
            old = [OutboxRow(e, t, k, v, tuple(json.loads(h).items())) for e, t, k, v, h in cur.fetchall()]
            conn.commit()
        if old:
            log.info("sending %d outbox message(s) again (no acknowledgement within %.0fs)", len(old),
                     self.resend_after)
            self.publish(old)
        self._gauge()

    def _gauge(self) -> None:
        with self._lock:
            OUTBOX_PENDING.labels(self.role).set(len(self._in_flight) + len(self._acked))


class OutboxSweeper(threading.Thread):
    """Every ``interval`` seconds: :meth:`Outbox.sweep` on its own connection. Errors are logged
    and retried on the next tick; the thread ends only when ``stop`` is set."""

    def __init__(self, outbox: Outbox, cfg: MariaDBConfig, connect: Any, interval: float = 1.0) -> None:
        super().__init__(name="outbox-sweeper", daemon=True)
        self.outbox, self.cfg, self.connect, self.interval = outbox, cfg, connect, interval
        self.stop = threading.Event()
        self._conn: pymysql.Connection | None = None
        self._failing = False

    def run(self) -> None:
        while True:
            self._tick(resend=True)
            if self.stop.wait(self.interval):
                break
        self._tick(resend=False)     # at shutdown: delete what Kafka acknowledged meanwhile
        self._close()

    def _tick(self, resend: bool) -> None:
        try:
            if self._conn is None or not self._conn.open:
                self._conn = self.connect(self.cfg, self.cfg.database, autocommit=False)
            self.outbox.sweep(self._conn, resend)
            if self._failing:
                log.info("outbox sweeper works again")
            self._failing = False
        except Exception as exc:  # any failure: next tick tries again on a new connection
            if not self._failing:
                log.warning("outbox sweeper: %s: %s (retrying every %.0fs)", type(exc).__name__, exc, self.interval)
            self._failing = True
            self._close()

    def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # a dead connection may fail to close; it is gone either way
                pass
