"""One destination's ``events_input`` table over the native protocol (clickhouse-driver):
connect, check that the tables the loader relies on are there, insert columnar blocks, and
sort ClickHouse's failures into "retry" and "stop".

The loader inserts into ``events_input`` (engine Null); its two materialized views write
every block into ``events`` and ``stats_hourly`` (see ``conf/clickhouse/`` and the docs for
why). If a view were missing, an INSERT would succeed and store nothing, so the views are
checked on every new connection before anything is inserted.
"""

from __future__ import annotations

import logging
import struct
from contextlib import contextmanager
from typing import Any, Iterator

from clickhouse_driver import Client
from clickhouse_driver import errors as ch

from eventd.config.clickhouse import ClickHouseDestination
from eventd.kafka.consumer_loop import FatalSinkError, RetryableError

log = logging.getLogger(__name__)

INPUT_TABLE = "events_input"
TABLES = ("events", "stats_hourly", INPUT_TABLE, "events_mv", "stats_hourly_mv")
VIEWS = ("events_mv", "stats_hourly_mv")

# Server errors that are the table's (or the account's) fault: retrying cannot fix them.
_FATAL_NAMES = ("INCORRECT_NUMBER_OF_COLUMNS", "THERE_IS_NO_COLUMN", "NOT_FOUND_COLUMN_IN_BLOCK",
                "NO_SUCH_COLUMN_IN_TABLE", "ILLEGAL_TYPE_OF_ARGUMENT", "UNKNOWN_IDENTIFIER", "TYPE_MISMATCH",
                "UNKNOWN_TABLE", "CANNOT_CONVERT_TYPE", "UNKNOWN_DATABASE", "UNKNOWN_SETTING", "READONLY",
                "UNKNOWN_USER", "WRONG_PASSWORD", "REQUIRED_PASSWORD", "DATABASE_ACCESS_DENIED")
# 497 NOT_ENOUGH_PRIVILEGES and 516 AUTHENTICATION_FAILED: newer servers; the driver has no names for them.
FATAL_CODES = frozenset(getattr(ch.ErrorCodes, n) for n in _FATAL_NAMES) | {497, 516}
# Settings of newer servers, sent only where the server knows them (18.16 refuses unknown
# settings): no limit on months per INSERT (a replay spans many), and MV targets checking
# their own block hashes (the Null source already makes 18.16 do that).
OPTIONAL_SETTINGS = {"max_partitions_per_insert_block": 0, "deduplicate_blocks_in_dependent_materialized_views": 1}


def new_client(dest: ClickHouseDestination, host: tuple[str, int] | None = None) -> Client:
    """A client for ``host``, or for the destination's hosts (the first, then the others on failure)."""
    first, *others = [host] if host else list(dest.hosts)
    alt = ",".join(f"{h}:{p}" for h, p in others) or None
    return Client(first[0], first[1], database="system", user=dest.user, password=dest.password.value,
                  connect_timeout=dest.connect_timeout, send_receive_timeout=dest.send_receive_timeout,
                  sync_request_timeout=dest.connect_timeout, alt_hosts=alt, client_name="eventd",
                  settings={"insert_deduplicate": 1})


@contextmanager
def classified(what: str) -> Iterator[None]:
    """Turn whatever clickhouse-driver raises into RetryableError or FatalSinkError."""
    try:
        yield
    except ch.Error as exc:
        code = getattr(exc, "code", None)
        text = f"{what}: {_short(exc)}"
        if code in FATAL_CODES or isinstance(exc, ch.TypeMismatchError):
            raise FatalSinkError(text) from exc
        raise RetryableError(text) from exc
    except (OSError, EOFError) as exc:
        raise RetryableError(f"{what}: {type(exc).__name__}: {exc}") from exc
    except (TypeError, ValueError, OverflowError, struct.error) as exc:
        # The driver could not serialise a value into the column the table declares.
        raise FatalSinkError(f"{what}: a value does not fit the table's column type: {exc}") from exc


def _short(exc: BaseException) -> str:
    """The first line of a server exception (18.16 appends a stack trace)."""
    text = " ".join(str(exc).split("Stack trace:")[0].split())
    return text[:500]


class EventsTable:
    """Inserts rows into ``<database>.events_input``; reconnects and re-checks after any error."""

    def __init__(self, dest: ClickHouseDestination, columns: list[tuple[str, str]]) -> None:
        self.dest = dest
        self.columns = columns
        self._insert = (f"INSERT INTO {dest.database}.{INPUT_TABLE} ({', '.join(n for n, _ in self.columns)}) "
                        f"VALUES")
        self._client: Client | None = None
        self._settings: dict[str, Any] = {}

    def ready(self) -> None:
        """Connect and check the tables, once per connection."""
        if self._client is not None:
            return
        client = new_client(self.dest)
        with self._guard("connecting"):
            self._check(client)
            self._settings = self._known_settings(client)
        self._client = client
        info = client.connection.server_info
        log.info("destination %s: connected to ClickHouse %s at %s:%s, tables checked", self.dest.name,
                 ".".join(map(str, info.version_tuple())) if info else "?", client.connection.host,
                 client.connection.port)

    def insert(self, rows: list[tuple[Any, ...]]) -> None:
        """One INSERT of ``rows`` (one block, in this order). Durable when it returns."""
        self.ready()
        assert self._client is not None
        columns = [list(c) for c in zip(*rows)]
        with self._guard(f"inserting {len(rows)} rows into {self.dest.database}.{INPUT_TABLE}"):
            self._client.execute(self._insert, columns, columnar=True, settings=self._settings)

    def close(self) -> None:
        if self._client is not None:
            self._client.disconnect()
            self._client = None

    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        try:
            with classified(f"destination {self.dest.name}: {what}"):
                yield
        except RetryableError:
            self.close()       # a fresh connection, re-checked, for the retry
            raise

    def _check(self, client: Client) -> None:
        db = self.dest.database
        found = dict(client.execute("SELECT name, engine FROM system.tables WHERE database = %(db)s",
                                    {"db": db}))
        missing = [t for t in TABLES if t not in found]
        if missing:
            raise FatalSinkError(f"destination {self.dest.name}: {', '.join(missing)} missing in database {db} "
                                 f"(run `eventd setup`)")
        have = dict(client.execute("SELECT name, type FROM system.columns WHERE database = %(db)s AND "
                                   "table = %(t)s", {"db": db, "t": INPUT_TABLE}))
        wrong = [f"{name} {typ} (table: {have.get(name, 'missing')})" for name, typ in self.columns
                 if have.get(name) != typ]
        if wrong:
            raise FatalSinkError(f"destination {self.dest.name}: {db}.{INPUT_TABLE} does not match "
                                 f"clickhouse_loader.columns: {'; '.join(wrong)} (run `eventd setup`)")

    @staticmethod
    def _known_settings(client: Client) -> dict[str, Any]:
        names = {n for (n,) in client.execute("SELECT name FROM system.settings WHERE name IN %(n)s",
                                              {"n": tuple(OPTIONAL_SETTINGS)})}
        return {k: v for k, v in OPTIONAL_SETTINGS.items() if k in names}
