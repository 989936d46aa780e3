"""The sender: reads the queue in seq order and produces each record to Kafka; the queue's
acknowledged position advances only past records Kafka has acknowledged.

Contract:
- Runs in its own thread; never blocks the inputs. Kafka down means the queue grows on disk.
- Memory: at most ``max_in_flight_events`` records and ``max_in_flight_bytes`` are sent but not
  yet acknowledged; the rest waits in the queue files.
- A send that fails (Kafka down longer than the producer's delivery timeout, a fatal producer
  state) is retried: once nothing is in flight any more the reader is rewound to the lowest
  unacknowledged seq and every record not yet acknowledged is sent again, in queue order.
- No connection at start (Kafka down) is retried with backoff; the inputs run regardless.
- A producer that stops answering — sends in flight, and neither an acknowledgement nor an
  error for ``STALL_AFTER`` seconds, longer than its own delivery timeout — is wedged (the
  Kafka client eventd used before, kafka-python, could stay so after a broker restart; librdkafka
  expires every message by its delivery timeout, so this is a guard that should never fire). It
  is abandoned, a new one is started, and everything not acknowledged is sent again; answers
  arriving late from the abandoned producer are ignored.
- :meth:`Sender.stop` keeps sending the backlog for up to ``drain_timeout``, then closes the
  producer; what is left stays in the queue for the next start.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections import deque
from typing import Callable, Protocol

from eventd.kafka.clients import DELIVERY_TIMEOUT
from eventd.roles.collector import stats
from eventd.roles.collector.acks import AckTracker
from eventd.kafka.partitions import Partitions
from eventd.roles.collector.queue import DurableQueue
from eventd.roles.collector.reader import QueueReader
from eventd.roles.collector.records import Record

log = logging.getLogger(__name__)

READ_BATCH = 2000
BACKOFF_START, BACKOFF_MAX = 0.5, 10.0
STATS_INTERVAL = 1.0
RECONNECT_AFTER = 3
POLL_INTERVAL = 0.005       # seconds between looks at a queue the sender has caught up with
STALL_AFTER = DELIVERY_TIMEOUT + 30.0


class ProducerLike(Protocol):
    """What the sender needs of :class:`eventd.kafka.producer.Producer` (a fake in unit tests)."""

    def send(self, topic: str, value: bytes, key: bytes | None = None, headers: None = None,
             on_done: Callable[[Exception | None], None] | None = None, partition: int | None = None) -> object: ...

    def partitions_for(self, topic: str) -> set[int] | None: ...

    def close(self, timeout: float = 10.0) -> None: ...


class Sender:
    """Drives Kafka sends from one :class:`DurableQueue`."""

    def __init__(self, queue: DurableQueue, connect: Callable[[], ProducerLike], max_in_flight_events: int,
                 max_in_flight_bytes: int, name: str = "sender", until_empty: bool = False) -> None:
        self.queue, self._connect = queue, connect
        self._max_events, self._max_bytes = max_in_flight_events, max_in_flight_bytes
        self._until_empty = until_empty        # a queue adopted from a retired slot: stop when drained
        # (producer generation, seq, size, error) from Kafka's thread
        self._acks: deque[tuple[int, int, int, Exception | None]] = deque()
        self._generation = 0                   # of the current producer; answers of older ones are stale
        self._last_answer = time.monotonic()   # when Kafka last answered a send (or the first was sent)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._deadline = float("inf")
        self.tracker = AckTracker(queue.acked_seq)
        self._in_flight = 0
        self._in_flight_bytes = 0
        self._failed = False
        self._reconnect = False
        self._send_errors = 0                  # send() calls that raised, in a row
        self._pending: list[Record] = []       # read, not yet sent (a cap was reached)
        self._settle_lock = threading.Lock()
        self._producer: ProducerLike | None = None
        self._partitions: Partitions | None = None
        self.connected = False
        self.done = threading.Event()          # set when the thread has finished
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    # ------------------------------------------------------------------ control

    def start(self) -> None:
        self._thread.start()

    def stop(self, drain_timeout: float) -> bool:
        """Stop after the backlog is sent and acknowledged, or after ``drain_timeout``; persists the
        acknowledged position. Returns whether the queue was fully acknowledged."""
        self._deadline = time.monotonic() + drain_timeout
        self._stop.set()
        self._wake.set()
        self._thread.join(drain_timeout + 5.0)
        if self._thread.is_alive():   # stuck in a blocking Kafka call: settle what arrived
            log.warning("%s: Kafka did not answer within the drain timeout; unsent events stay in the queue",
                        self._thread.name)
            self._settle_acks()
            self.queue.acknowledge(self.tracker.watermark, force=True)
        return self.tracker.watermark >= self.queue.next_seq

    @property
    def unacked(self) -> int:
        return self.queue.next_seq - self.tracker.watermark

    # ------------------------------------------------------------------ the thread

    def _run(self) -> None:
        reader = QueueReader(self.queue, self.tracker.watermark)
        try:
            if self._open_producer():
                self._loop(reader)
                self._drain(reader)
        except Exception:
            log.exception("%s failed; unsent events stay in the queue", self._thread.name)
        finally:
            reader.close()
            self._settle_acks()
            self.queue.acknowledge(self.tracker.watermark, force=True)
            self._close_producer()
            self.done.set()

    def _open_producer(self) -> bool:
        """Connect, retrying with backoff; after stop, only until the drain deadline."""
        backoff = BACKOFF_START
        while True:
            try:
                producer = self._connect()
            except Exception as exc:
                log.warning("Kafka not reachable (%s: %s); %d events wait in the queue; retrying in %.0fs",
                            type(exc).__name__, exc, self.unacked, backoff)
                stats.KAFKA_ERRORS.inc()
                wait = min(backoff, self._deadline - time.monotonic())
                if wait <= 0:
                    return False
                if self._stop.is_set():
                    time.sleep(wait)
                else:
                    self._stop.wait(wait)
                backoff = min(backoff * 2, BACKOFF_MAX)
                continue
            self._producer, self.connected = producer, True
            self._partitions = Partitions(producer.partitions_for)
            log.info("%s: connected to Kafka; %d events to send", self._thread.name, self.unacked)
            return True

    def _loop(self, reader: QueueReader) -> None:
        next_stats = 0.0
        while not self._stop.is_set():
            self._settle_acks()
            if reader.lost:
                self._settle_lost(reader)
            self.queue.acknowledge(self.tracker.watermark)
            now = time.monotonic()
            if now >= next_stats:
                self._publish_stats()
                next_stats = now + STATS_INTERVAL
            if self._stalled(now):
                self._abandon_producer()
            if self._failed:
                self._recover(reader)
                continue
            if self._until_empty and self.tracker.watermark >= self.queue.next_seq:
                return
            if self._in_flight >= self._max_events or self._in_flight_bytes >= self._max_bytes:
                self._wait_for_acks(0.05)
                continue
            records = self._pending or reader.read(min(READ_BATCH, self._max_events - self._in_flight))
            if not records:
                # Caught up: look again shortly. Polling, not a wake-up per append, keeps the input
                # loop free of thread hand-offs, and a trickle of events is sent as one batch
                # (Kafka batches for `linger` anyway).
                self._stop.wait(POLL_INTERVAL)
                continue
            self._send_all(records)

    def _send_all(self, records: list[Record]) -> None:
        """Send in order until a cap is reached or a send fails; the rest is kept in ``_pending``."""
        producer, partitions, tracker = self._producer, self._partitions, self.tracker
        assert producer is not None and partitions is not None
        on_done, max_events, max_bytes = self._on_done, self._max_events, self._max_bytes
        for i, r in enumerate(records):
            if tracker.settled(r.seq):      # acknowledged before a rewind
                continue
            size = len(r.value) + len(r.key)
            if self._in_flight and (self._in_flight >= max_events or self._in_flight_bytes + size > max_bytes):
                self._pending = records[i:]
                return
            if not self._in_flight:
                self._last_answer = time.monotonic()     # the stall clock starts with the first send
            try:
                producer.send(r.topic, r.value, r.key, on_done=functools.partial(on_done, self._generation, r.seq,
                                                                                   size),
                              partition=partitions.partition(r.topic, r.key))
            except Exception as exc:
                self._pending = records[i:]
                self._send_failed(exc, r.topic)
                return
            self._in_flight += 1
            self._in_flight_bytes += size
        self._pending = []
        self._send_errors = 0

    def _on_done(self, generation: int, seq: int, size: int, error: Exception | None) -> None:
        """Called on the producer's poll thread: hand over, nothing more (deque.append is atomic)."""
        self._acks.append((generation, seq, size, error))
        if error is not None or len(self._acks) >= 1000:
            self._wake.set()

    def _settle_acks(self) -> None:
        with self._settle_lock:
            self._settle_acks_locked()

    def _settle_acks_locked(self) -> None:
        acks, tracker = self._acks, self.tracker
        sent = failed = 0
        while acks:
            generation, seq, size, error = acks.popleft()
            if generation != self._generation:
                continue         # an abandoned producer's: its sends were counted off and are resent
            self._last_answer = time.monotonic()
            self._in_flight -= 1
            self._in_flight_bytes -= size
            if error is None:
                tracker.settle(seq)
                sent += 1
            else:
                failed += 1
                if not self._failed:
                    log.warning("Kafka did not take event seq %d (%s: %s); resending everything not "
                                "acknowledged once the in-flight sends are done", seq, type(error).__name__, error)
                self._failed = True
        if sent:
            stats.SENT.inc(sent)
        if failed:
            stats.KAFKA_ERRORS.inc(failed)

    def _settle_lost(self, reader: QueueReader) -> None:
        for start, end in reader.lost:
            self.tracker.settle_range(start, end)
        reader.lost.clear()

    def _send_failed(self, exc: Exception, topic: str) -> None:
        self._send_errors += 1
        log.warning("cannot send to Kafka topic %s (%s: %s; if the topic does not exist, `eventd setup` creates "
                    "it); %d events wait in the queue", topic, type(exc).__name__, exc, self.unacked)
        stats.KAFKA_ERRORS.inc()
        if self._send_errors >= RECONNECT_AFTER:
            # The producer may be in a state it does not leave (fatal idempotence error): start a new one.
            self._failed = self._reconnect = True
        self._stop.wait(min(BACKOFF_START * 2 ** self._send_errors, BACKOFF_MAX))

    def _recover(self, reader: QueueReader) -> None:
        """After failed sends: wait until nothing is in flight, then rewind to the first unacknowledged."""
        if self._in_flight > 0:
            self._wait_for_acks(0.1)
            return
        self._failed = False
        if self._reconnect:
            self._reconnect, self._send_errors = False, 0
            self._close_producer()
            if not self._open_producer():
                return
        log.info("resending from event seq %d (%d events not acknowledged)", self.tracker.watermark, self.unacked)
        self._pending = []
        reader.seek(self.tracker.watermark)
        self._stop.wait(BACKOFF_START)

    def _stalled(self, now: float) -> bool:
        return self._in_flight > 0 and now - self._last_answer > STALL_AFTER

    def _abandon_producer(self) -> None:
        """Give up on a wedged producer: its sends count as failed, a new producer resends them.
        Closing it must not hang the sender (its I/O thread may be the wedged part): no wait."""
        log.warning("%s: Kafka has not answered %d sends for %.0fs (more than the delivery timeout): "
                    "starting a new producer and resending from event seq %d", self._thread.name, self._in_flight,
                    STALL_AFTER, self.tracker.watermark)
        stats.KAFKA_ERRORS.inc()
        with self._settle_lock:
            self._generation += 1
            self._in_flight = self._in_flight_bytes = 0
        producer, self._producer, self.connected = self._producer, None, False
        if producer is not None:
            threading.Thread(target=producer.close, kwargs={"timeout": 0}, daemon=True,
                             name="abandoned-producer").start()
        self._failed = self._reconnect = True

    def _wait_for_acks(self, timeout: float) -> None:
        self._wake.wait(timeout)
        self._wake.clear()

    def _drain(self, reader: QueueReader) -> None:
        """After stop: keep sending the backlog until all is acknowledged or the deadline passes."""
        while time.monotonic() < self._deadline and self._producer is not None:
            self._settle_acks()
            if reader.lost:
                self._settle_lost(reader)
            if self.tracker.watermark >= self.queue.next_seq:
                return
            if self._failed:
                self._recover(reader)
                continue
            records = [] if self._in_flight >= self._max_events else (self._pending or reader.read(READ_BATCH))
            if records:
                self._send_all(records)
            else:
                self._wait_for_acks(0.05)

    def _close_producer(self) -> None:
        if self._producer is None:
            return
        timeout = max(0.0, min(5.0, self._deadline - time.monotonic())) if self._stop.is_set() else 5.0
        try:
            self._producer.close(timeout=timeout)
        except Exception as exc:
            log.warning("closing the Kafka producer: %s", exc)
        self._settle_acks()
        self._producer, self.connected = None, False

    def _publish_stats(self) -> None:
        stats.QUEUE_BYTES.set(self.queue.size_bytes)
        stats.UNACKED.set(self.unacked)
