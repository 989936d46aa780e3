"""The monitor as a consumer-loop sink: decode and project each message, feed the windows on
``write``, judge steps on every ``tick``.

Offsets: ``write`` only counts events in memory, so the loop commits right after it. The
committed offsets are not where the monitor resumes — its windows are in memory, so on start it
re-reads each partition from the data time :meth:`Monitor.history_start` (via
``offsets_for_times``); they only show the monitor's lag in Kafka's tools. A partition assigned
again to this same process (a rebalance) resumes where this process left it, so nothing is counted
twice. Alerts are at-least-once: see state.py.

The monitor does not dead-letter undecodable messages: every other consumer role reads the same
topics and already does; a second copy would double the dead-letter topic. It counts them
(``eventd_events_rejected_total{role="monitor"}``) and logs one line per minute.
"""

from __future__ import annotations

import logging
import time

from eventd.errors import DecodeError
from eventd.event.codec import Decoder
from eventd.kafka.batch import Batch, Message
from eventd.kafka.consumer_loop import Committed, ConsumerLoop, Start
from eventd.kafka.positions import Positions, caught_up
from eventd.kafka.types import TopicPartition
from eventd.metrics import REJECTED
from eventd.roles.monitor.engine import Monitor
from eventd.roles.monitor.observation import Observation, Projector

log = logging.getLogger(__name__)
# (partitions, data time ms) -> the first offset at or after that time, per partition
CLOSE_TIMEOUT = 5.0


class MonitorSink:
    def __init__(self, monitor: Monitor, decoder: Decoder, projector: Projector, positions: Positions) -> None:
        self.monitor, self.decoder, self.projector, self.positions = monitor, decoder, projector, positions
        self._next: dict[TopicPartition, int] = {}     # per partition: where this process's counting goes on
        self._last_warning = 0.0
        self._closed = False

    def start(self, partitions: list[TopicPartition], committed: Committed) -> dict[TopicPartition, Start]:
        self.monitor.assigned(partitions)
        starts = {tp: Start(offset=self._next[tp]) for tp in partitions if tp in self._next}
        new = [tp for tp in partitions if tp not in self._next]
        if new:
            since = self.monitor.history_start()
            for tp, offset in self.positions(new, since).items():
                starts[tp] = Start(offset=offset)
                self._next[tp] = offset
            self.monitor.reading_from(since)
        return starts

    def warm(self, msg: Message) -> None:
        """Never asked for: every start is an exact offset."""

    def transform(self, msg: Message) -> Observation | None:
        try:
            _, record = self.decoder.decode(msg.value)
        except DecodeError as exc:
            REJECTED.labels("monitor", "DecodeError").inc()
            if time.monotonic() - self._last_warning >= 60:
                self._last_warning = time.monotonic()
                log.warning("not counted (undecodable) %s/%d/%d: %s", msg.topic, msg.partition, msg.offset, exc)
            return None
        return self.projector.project(record)

    def write(self, batch: Batch[Observation], loop: ConsumerLoop[Observation]) -> None:
        for tp, part in batch:
            for obs in part.items:
                self.monitor.observe(tp, obs)
            self._next[tp] = part.last + 1
        return None

    def tick(self, loop: ConsumerLoop[Observation], deadline: float | None) -> None:
        # A partition whose messages were read but wait in the loop's batch is not caught up for the
        # windows: right after a restart that batch can hold the whole re-read history.
        self.monitor.tick(caught_up(loop.consumer) - set(loop.batch.parts))
        if deadline is not None:
            self._close(max(0.1, deadline - time.monotonic()))
        return None

    def close(self) -> None:
        self._close(CLOSE_TIMEOUT)

    def _close(self, timeout: float) -> None:
        if not self._closed:
            self._closed = True
            self.monitor.close(timeout)
