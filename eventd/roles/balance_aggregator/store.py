"""The MariaDB connection: opening it, classifying its errors, and eventd's offsets table.

Errors are classified by MariaDB error number, because PyMySQL's classes do not follow the
distinction we need (an unknown column is an ``OperationalError`` like a lost connection):

- lost connection, server gone or shutting down, deadlock, lock wait timeout
  → :class:`RetryableError`: the transaction is rolled back (by the server when the
  connection died) and the window is retried identically on a fresh connection;
- access denied, unknown database → :class:`CannotStart` at start-up (``FatalSinkError`` later);
- anything else (missing table or column, out-of-range money) → :class:`FatalSinkError`.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from typing import Any, Iterator

import pymysql

from eventd.config.balances import MariaDBConfig
from eventd.errors import CannotStart
from eventd.kafka.consumer_loop import FatalSinkError, RetryableError
from eventd.kafka.types import TopicPartition
from eventd.roles.balance_aggregator.schema import Sql

log = logging.getLogger(__name__)

# Client errors (2xxx) and server errors that mean "the connection or the transaction is gone,
# try again": gone away, lost, can't connect, server shutdown, killed, deadlock, lock wait timeout,
# too many connections, network read/write errors, "record has changed" (snapshot isolation).
RETRYABLE = frozenset({0, 1020, 1040, 1053, 1152, 1158, 1159, 1160, 1161, 1180, 1205, 1213, 1927, 2002, 2003,
                       2006, 2013, 2014, 2055, 4031})
# The account cannot log in or cannot see the database: no retry can fix the configuration.
ACCESS = frozenset({1044, 1045, 1049, 1142, 1698})
# Strict mode on every table (also the MEMORY temp tables): money out of range is an error,
# never a silently clamped value.
SQL_MODE = "STRICT_ALL_TABLES,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"


def errno(exc: BaseException) -> int:
    args = getattr(exc, "args", ())
    return args[0] if args and isinstance(args[0], int) else 0


def classify(exc: Exception, what: str) -> Exception:
    """The sink error for a PyMySQL error raised while doing ``what``."""
    code = errno(exc)
    if isinstance(exc, (pymysql.err.InterfaceError, OSError)) or code in RETRYABLE:
        return RetryableError(f"MariaDB unavailable while {what}: {exc}")
    return FatalSinkError(f"MariaDB refused {what}: {exc}")


def connect(cfg: MariaDBConfig, database: str | None = None, autocommit: bool = False) -> pymysql.Connection:
    """A connection with strict SQL mode, READ COMMITTED (fewer gap locks between aggregators in
    several data centres) and a bounded lock wait; raises PyMySQL errors unchanged."""
    init = (f"SET SESSION sql_mode = '{SQL_MODE}', SESSION tx_isolation = 'READ-COMMITTED', "
            f"SESSION innodb_lock_wait_timeout = {cfg.lock_wait_timeout}")
    return pymysql.connect(host=cfg.host, port=cfg.port, user=cfg.user, password=cfg.password.value,
                           database=database, autocommit=autocommit, charset="utf8mb4",
                           connect_timeout=max(1, int(cfg.connect_timeout)),
                           read_timeout=cfg.query_timeout, write_timeout=cfg.query_timeout, init_command=init)


def connect_or_explain(cfg: MariaDBConfig, database: str | None, autocommit: bool = False) -> pymysql.Connection:
    """:func:`connect`, with wrong credentials or an unknown database as :class:`CannotStart`."""
    try:
        return connect(cfg, database, autocommit)
    except pymysql.MySQLError as exc:
        if errno(exc) in ACCESS:
            raise CannotStart(f"MariaDB {cfg.host}:{cfg.port} refused user {cfg.user!r} on database "
                              f"{database!r}: {exc.args[-1]} (check balance_aggregator.mariadb)") from None
        raise


@dataclass(frozen=True)
class Progress:
    """One partition's part of a window: apply it if the stored offset is still ``expected``,
    and store ``next`` with it."""

    tp: TopicPartition
    expected: int
    next: int


class Database:
    """The role's one connection (used by the consumer thread only). Reconnects lazily after a
    retryable error; the temporary tables of a window live on the connection."""

    def __init__(self, cfg: MariaDBConfig, sql: Sql, temp_tables: tuple[str, ...] = ()) -> None:
        self.cfg, self.sql, self.temp_tables = cfg, sql, temp_tables
        self.writer = f"{socket.gethostname()}:{os.getpid()}"
        self._conn: pymysql.Connection | None = None

    def cursor(self) -> Any:
        """A cursor on the open connection, connecting first if needed."""
        if self._conn is None or not self._conn.open:
            self._conn = connect(self.cfg, self.cfg.database)
            with self._conn.cursor() as cur:
                for statement in self.temp_tables:
                    cur.execute(statement)
        return self._conn.cursor()

    def commit(self) -> None:
        assert self._conn is not None
        self._conn.commit()

    def rollback(self) -> None:
        """Roll back, or drop a connection that cannot (the server rolls back a dead session)."""
        if self._conn is None:
            return
        try:
            self._conn.rollback()
        except pymysql.MySQLError:
            self.close()

    def fail(self, exc: Exception, what: str) -> Exception:
        """Roll back after ``exc``; a retryable error also drops the connection (it may be half dead)."""
        error = classify(exc, what)
        self.rollback()
        if isinstance(error, RetryableError):
            self.close()
        return error

    def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except Exception:  # closing a dead socket may raise anything; it is gone either way
                pass

    # -- offsets -----------------------------------------------------------------------
    def stored_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The stored next offset of each partition; a partition never seen gets a row at 0 (its
        log's beginning). Its own short transaction."""
        cur = self.cursor()
        cur.executemany(self.sql("INSERT INTO {offsets} (topic, part, next_offset, updated_at, updated_by) "
                                 "VALUES (%s, %s, 0, UTC_TIMESTAMP(6), %s) "
                                 "ON DUPLICATE KEY UPDATE next_offset = next_offset"),
                        [(tp.topic, tp.partition, self.writer) for tp in tps])
        stored = self._select_offsets(cur, tps, lock=False)
        self.commit()
        return stored

    def lock_offsets(self, cur: Any, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        """The stored offsets, row-locked until the transaction ends (no other aggregator can move
        them meanwhile)."""
        return self._select_offsets(cur, tps, lock=True)

    def _select_offsets(self, cur: Any, tps: list[TopicPartition], lock: bool) -> dict[TopicPartition, int]:
        found: dict[TopicPartition, int] = {}
        for chunk in _chunks(sorted(tps), 500):
            rows = ", ".join(["(%s, %s)"] * len(chunk))
            cur.execute(self.sql("SELECT topic, part, next_offset FROM {offsets} WHERE (topic, part) IN (" + rows + ")"
                                 + (" FOR UPDATE" if lock else "")),
                        [v for tp in chunk for v in (tp.topic, tp.partition)])
            found.update({TopicPartition(t, p): n for t, p, n in cur.fetchall()})
        return found

    def advance(self, cur: Any, progress: list[Progress]) -> None:
        """Move each partition's offset from ``expected`` to ``next``: one guarded statement.
        Fewer rows changed than partitions means another writer moved one: raises so the caller
        rolls the whole window back."""
        if not progress:
            return
        cases = " ".join(["WHEN topic = %s AND part = %s THEN %s"] * len(progress))
        guards = ", ".join(["(%s, %s, %s)"] * len(progress))
        args: list[Any] = [v for p in progress for v in (p.tp.topic, p.tp.partition, p.next)]
        args.append(self.writer)
        args += [v for p in progress for v in (p.tp.topic, p.tp.partition, p.expected)]
        changed = cur.execute(self.sql("UPDATE {offsets} SET next_offset = CASE " + cases + " END, "
                                       "updated_at = UTC_TIMESTAMP(6), updated_by = %s "
                                       "WHERE (topic, part, next_offset) IN (" + guards + ")"), args)
        if changed != len(progress):
            raise OffsetsMoved(f"{len(progress) - changed} of {len(progress)} partitions' stored offsets moved "
                               f"under this transaction")


class OffsetsMoved(RetryableError):
    """A guarded offset update changed fewer rows than expected: another aggregator wrote."""


def _chunks(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
