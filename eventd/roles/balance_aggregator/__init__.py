"""The balance aggregator role: exact campaign and account balances in MariaDB, and budget stops.

Reads only the topics of ``balance_aggregator.event_types``, sums each window's money per
campaign, campaign-day and account, and applies the window to MariaDB in one transaction that
also moves the stored Kafka offsets (see ``apply.py`` and docs/roles/balance-aggregator.md).

Modules: ``events`` (message → charge), ``dedup`` (recent event ids), ``window`` (sums),
``ledger`` (money statements), ``budget`` (stops), ``outbox`` (control events and dead letters
decided in a transaction), ``store`` (connection, errors, offsets), ``apply`` (the transaction),
``sink`` (the consumer-loop glue), ``schema`` (names, SQL files, setup checks).
"""

from __future__ import annotations

import logging

from eventd.config import Config
from eventd.errors import CannotStart
from eventd.kafka.consumer import new_consumer
from eventd.kafka.consumer_loop import ConsumerLoop, LoopSettings
from eventd.kafka.deadletter import DeadLetter, InvalidLimit
from eventd.kafka.producer import Producer
from eventd.kafka.topics import event_topics
from eventd.roles.balance_aggregator.apply import Topics, WindowApplier
from eventd.roles.balance_aggregator.budget import Budgets
from eventd.roles.balance_aggregator.events import ChargeReader, DayOf
from eventd.roles.balance_aggregator.ledger import TEMP_TABLES, Ledger
from eventd.roles.balance_aggregator.outbox import Outbox, OutboxSweeper
from eventd.roles.balance_aggregator.schema import (SchemaMismatch, Sql, create_statements, existing_tables,
                                                     missing_columns, quote)
from eventd.roles.balance_aggregator.sink import BalanceSink
from eventd.roles.balance_aggregator.store import Database, connect, connect_or_explain
from eventd.roles.base import RoleContext

log = logging.getLogger(__name__)
ROLE = "balance-aggregator"


def main(ctx: RoleContext) -> None:
    """Run until ``ctx.stop``; then the pending window is applied, the outbox flushed, and we return."""
    cfg, bc = ctx.config, ctx.config.balance_aggregator
    sql = Sql(bc.tables)
    check_database(cfg)
    producer = Producer(cfg.kafka, f"balances-{ctx.slot}")
    outbox = Outbox(sql, producer, ROLE, bc.control_resend_after)
    sweeper = OutboxSweeper(outbox, bc.mariadb, connect)
    topics = event_topics(cfg, ctx.schemas, bc.event_types)
    log.info("reading %s (event types %s) as group %s", ", ".join(topics), ", ".join(bc.event_types), bc.group_id)
    consumer = new_consumer(cfg.kafka, f"balances-{ctx.slot}", bc.group_id)
    loop = ConsumerLoop(LoopSettings(ROLE, topics, bc.window_max_events, bc.window), consumer,
                        _sink(ctx, sql, outbox, sweeper), DeadLetter(producer, cfg.kafka.topics.dead_letter, ROLE),
                        InvalidLimit(bc.dead_letter))
    sweeper.start()
    try:
        loop.run(ctx.stop)
    finally:
        _close(producer, sweeper)


def _sink(ctx: RoleContext, sql: Sql, outbox: Outbox, sweeper: OutboxSweeper) -> BalanceSink:
    bc = ctx.config.balance_aggregator
    applier = build_applier(ctx.config, sql, outbox)
    return BalanceSink(applier.db, applier, ChargeReader(ctx.schemas, applier.day_of), outbox, bc.dedup_window,
                       ROLE, ctx.stop, healthy=sweeper)


def build_applier(cfg: Config, sql: Sql, outbox: Outbox) -> WindowApplier:
    """The window transaction on its own connection (also for ``eventd replay --to balances``)."""
    bc = cfg.balance_aggregator
    return WindowApplier(Database(bc.mariadb, sql, TEMP_TABLES), Ledger(sql, bc.unknown_campaign == "create"),
                         Budgets(sql), outbox, DayOf(bc.day_boundary),
                         Topics(cfg.kafka.topics.control, cfg.kafka.topics.dead_letter), ROLE, cfg.node.host)


def _close(producer: Producer, sweeper: OutboxSweeper) -> None:
    """Wait for Kafka's acknowledgements, then let the sweeper delete the acknowledged outbox rows."""
    try:
        producer.flush(30)
    except Exception as exc:  # unacknowledged rows stay in the outbox and are sent again later
        log.warning("outbox messages not acknowledged at shutdown (sent again later): %s", exc)
    sweeper.stop.set()
    sweeper.join(30)
    producer.close()


def check_database(cfg: Config) -> None:
    """At start: the account can log in and every table and column eventd uses exists; else CannotStart."""
    bc = cfg.balance_aggregator
    conn = connect_or_explain(bc.mariadb, bc.mariadb.database, autocommit=True)
    try:
        with conn.cursor() as cur:
            missing = missing_columns(cur, bc.mariadb.database, bc.tables)
    finally:
        conn.close()
    if missing:
        raise CannotStart(f"MariaDB database {bc.mariadb.database} lacks {', '.join(missing)}: run `eventd setup` "
                          f"or fix balance_aggregator.tables")


def setup(cfg: Config) -> list[str]:
    """Create the database and the missing tables from conf/mariadb/*.sql; one line per change.
    Existing tables are never altered: one that lacks a column eventd needs is an error."""
    bc = cfg.balance_aggregator
    database = bc.mariadb.database
    statements = create_statements(cfg)
    conn = connect_or_explain(bc.mariadb, None, autocommit=True)
    changes = []
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM information_schema.schemata WHERE schema_name = %s", (database,))
            if not cur.fetchall():
                cur.execute(f"CREATE DATABASE IF NOT EXISTS {quote(database)} CHARACTER SET utf8mb4")
                changes.append(f"mariadb: created database {database}")
            cur.execute(f"USE {quote(database)}")
            existing = existing_tables(cur, database)
            for key, statement in statements.items():
                table = getattr(bc.tables, key).table
                if table.lower() not in existing:
                    cur.execute(statement)
                    changes.append(f"mariadb: created table {database}.{table}")
            missing = missing_columns(cur, database, bc.tables)
    finally:
        conn.close()
    if missing:
        raise SchemaMismatch(f"MariaDB database {database} lacks {', '.join(missing)} (existing tables are not "
                             f"altered: add the columns or map them in balance_aggregator.tables)")
    return changes
