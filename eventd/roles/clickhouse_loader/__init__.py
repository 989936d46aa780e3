"""The ClickHouse loader role: the event topics → every configured ClickHouse cluster
(``events`` and ``stats_hourly``), exactly once. See docs/roles/clickhouse-loader.md.

- ``mapping.py``     event record → row (envelope, configured columns, extras, Kafka position)
- ``dedup.py``       the per-partition window of recent event ids (collector resends)
- ``sink.py``        the consumer-loop Sink: boundaries recorded in Kafka, then one INSERT per partition
- ``table.py``       the native-protocol connection, table checks, error classes
- ``schema.py``      ``eventd setup``: DDL templates (conf/clickhouse) rendered and applied
- ``destination.py`` one thread, consumer group and loop per cluster
"""

from __future__ import annotations

import logging
import threading

from eventd.config import Config
from eventd.errors import CannotStart, EventdError, ServiceUnavailable
from eventd.event.codec import Decoder
from eventd.kafka.consumer_loop import FatalSinkError
from eventd.kafka.deadletter import TooManyInvalid
from eventd.kafka.producer import Producer
from eventd.kafka.topics import event_topics
from eventd.roles.base import RoleContext, is_outage
from eventd.roles.clickhouse_loader import schema
from eventd.roles.clickhouse_loader.destination import ROLE, DestinationThread
from eventd.roles.clickhouse_loader.mapping import RowMapper

log = logging.getLogger(__name__)


def main(ctx: RoleContext) -> None:
    """Load every destination in its own thread until ``ctx.stop``; a destination that fails
    stops them all (each flushes and commits what it wrote) and the error is raised here."""
    cfg = ctx.config
    lc = cfg.clickhouse_loader
    # clickhouse-driver logs every failed connection attempt with a traceback at WARNING; the
    # loop's "sink unavailable, retrying" line already says what failed.
    logging.getLogger("clickhouse_driver").setLevel(logging.ERROR)
    mapper = RowMapper.build(lc.columns, ctx.schemas, cfg.events)
    topics = event_topics(cfg, ctx.schemas)
    producer = Producer(cfg.kafka, f"{ROLE}-{ctx.slot}")
    threads = [DestinationThread(cfg, dest, topics, Decoder(ctx.schemas), mapper, producer, ctx.slot, ctx.stop)
               for dest in lc.destinations]
    try:
        for t in threads:
            t.start()
        _supervise(threads, ctx.stop)
    finally:
        ctx.stop.set()
        for t in threads:
            t.join()
        producer.close()
    _raise_first_error(threads)


def _supervise(threads: list[DestinationThread], stop: threading.Event) -> None:
    """Wait for the stop signal or for any destination thread to end (which is a failure)."""
    while not stop.wait(0.5):
        ended = [t for t in threads if not t.is_alive()]
        if ended:
            log.error("destination %s ended; stopping every destination", ended[0].dest.name)
            return


def _raise_first_error(threads: list[DestinationThread]) -> None:
    for t in threads:
        exc = t.error
        if isinstance(exc, (FatalSinkError, TooManyInvalid)):
            # Restarting cannot help (the table or the input must be fixed): exit code 3.
            raise CannotStart(f"destination {t.dest.name}: {exc}") from exc
        if exc is not None and is_outage(exc):
            # Still an outage (a consumer stuck on a vanished coordinator, Kafka unreachable): the
            # role exits to be restarted, logged as such, without a traceback.
            raise ServiceUnavailable(f"destination {t.dest.name}: {type(exc).__name__}: {exc}") from exc
        if exc is not None:
            raise EventdError(f"destination {t.dest.name} failed: {type(exc).__name__}: {exc}") from exc


def setup(cfg: Config) -> list[str]:
    """``eventd setup``: the database, tables and views on every host of every destination."""
    from eventd.event.schemas import SchemaStore
    mapper = RowMapper.build(cfg.clickhouse_loader.columns, SchemaStore.load(cfg.events.schema_dir), cfg.events)
    return schema.setup(cfg, mapper)
