"""One destination (ClickHouse cluster) = one consumer group, one consumer loop, one thread.

Destinations share nothing but the process, the decoder, the row mapper and the dead-letter
producer: a cluster that is down keeps its own loop retrying (in its group, its partitions
paused) while the others go on loading.
"""

from __future__ import annotations

import logging
import threading

from eventd.config import Config
from eventd.config.clickhouse import ClickHouseDestination
from eventd.event.codec import Decoder
from eventd.kafka.consumer import new_consumer
from eventd.kafka.consumer_loop import ConsumerLoop, LoopSettings
from eventd.kafka.deadletter import DeadLetter, InvalidLimit
from eventd.kafka.producer import Producer
from eventd.roles.clickhouse_loader.mapping import RowMapper
from eventd.roles.clickhouse_loader.sink import ClickHouseSink
from eventd.roles.clickhouse_loader.table import EventsTable

log = logging.getLogger(__name__)
ROLE = "clickhouse-loader"
# Well inside the daemon's default stop_timeout (30s): a destination that is down when the
# role stops gives up its unwritten batch after this long (it is redone on the next start).
DRAIN_TIMEOUT = 10.0

class DestinationThread(threading.Thread):
    """Runs one destination's consumer loop until ``stop`` is set; keeps the error it died of."""

    def __init__(self, config: Config, dest: ClickHouseDestination, topics: list[str], decoder: Decoder,
                 mapper: RowMapper, producer: Producer, slot: int, stop: threading.Event) -> None:
        super().__init__(name=f"destination-{dest.name}", daemon=True)
        self.config, self.dest, self.topics = config, dest, topics
        self.decoder, self.mapper, self.producer = decoder, mapper, producer
        self.slot, self.stop = slot, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._loop().run(self.stop)
        except BaseException as exc:  # noqa: BLE001 - handed to the supervising main thread
            self.error = exc
            log.error("destination %s stopped: %s: %s", self.dest.name, type(exc).__name__, exc)
        else:
            log.info("destination %s stopped", self.dest.name)

    def _loop(self) -> ConsumerLoop:  # type: ignore[type-arg]
        lc = self.config.clickhouse_loader
        role = f"{ROLE}/{self.dest.name}"    # metrics and dead letters say which destination
        sink = ClickHouseSink(self.dest.name, role, self.decoder, self.mapper,
                              EventsTable(self.dest, self.mapper.column_types()), lc.duplicate_id_window)
        consumer = new_consumer(self.config.kafka, f"clickhouse-{self.dest.name}-{self.slot}", self.dest.group_id)
        settings = LoopSettings(role=role, topics=self.topics, max_items=lc.max_rows, max_age=lc.max_age,
                                drain_timeout=DRAIN_TIMEOUT)
        dead_letter = DeadLetter(self.producer, self.config.kafka.topics.dead_letter, role)
        log.info("destination %s: group %s, %d topics, database %s on %s", self.dest.name, self.dest.group_id,
                 len(self.topics), self.dest.database, ", ".join(f"{h}:{p}" for h, p in self.dest.hosts))
        return ConsumerLoop(settings, consumer, sink, dead_letter, InvalidLimit(lc.dead_letter))  # type: ignore[arg-type]
