"""``eventd setup`` for ClickHouse: render the DDL templates (``clickhouse_loader.ddl_dir``,
``conf/clickhouse/*.sql``) and create what is missing on every host of every destination.

Idempotent: a second run changes nothing and returns no line. Evolution:
- a column added to ``clickhouse_loader.columns`` is added to ``events`` (first) and then to
  ``events_input`` (``events_mv`` is ``SELECT *``, so it follows);
- a column whose type changed, or a change of ``stats``, is refused with an explanation: the
  sorting key of an existing table cannot change in place, data must be migrated by hand.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from string import Template

from clickhouse_driver import Client

from eventd.config import Config
from eventd.config.clickhouse import INTEGER_TYPES, ClickHouseDestination, ClickHouseLoaderConfig
from eventd.errors import EventdError
from eventd.kafka.consumer_loop import FatalSinkError, RetryableError
from eventd.roles.clickhouse_loader.mapping import RowMapper
from eventd.roles.clickhouse_loader.table import INPUT_TABLE, classified, new_client

log = logging.getLogger(__name__)
Column = tuple[str, str]   # name, ClickHouse type


class SetupError(EventdError):
    """A destination could not be set up; the message says which and why."""


@dataclass(frozen=True)
class Ddl:
    """One table or view: its CREATE statement and, for tables, the columns it must have."""

    name: str
    sql: str
    columns: tuple[Column, ...] = ()
    evolvable: bool = False     # missing columns may be added


def render(cfg: ClickHouseLoaderConfig, dest: ClickHouseDestination, mapper: RowMapper) -> list[Ddl]:
    """The destination's tables and views, in creation order (targets before their views)."""
    events_cols = tuple(mapper.column_types())
    stats_cols = _stats_columns(cfg, dict(events_cols))
    values = {
        "database": dest.database, "zookeeper_path": dest.zookeeper_path, "replica": dest.replica,
        "replicated_deduplication_window": str(cfg.replicated_deduplication_window),
        "columns": _definitions(events_cols), "order_by": ", ".join(cfg.order_by),
        "dimensions": ", ".join(cfg.stats.dimensions), "sums": ", ".join(cfg.stats.sums),
        "dimension_columns": _definitions(stats_cols[0]), "sum_columns": _definitions(stats_cols[1]),
        "sum_exprs": ", ".join(f"sum({s}) AS {s}" for s in cfg.stats.sums),
    }
    stats_all = (("hour", "DateTime('UTC')"), ("type", "String"), *stats_cols[0], ("events", "UInt64"),
                 *stats_cols[1], ("source_block", "String"))
    return [Ddl("events", _template(cfg.ddl_dir, "events", values), events_cols, evolvable=True),
            Ddl("stats_hourly", _template(cfg.ddl_dir, "stats_hourly", values), stats_all),
            Ddl(INPUT_TABLE, _template(cfg.ddl_dir, INPUT_TABLE, values), events_cols, evolvable=True),
            Ddl("events_mv", _template(cfg.ddl_dir, "events_mv", values)),
            Ddl("stats_hourly_mv", _template(cfg.ddl_dir, "stats_hourly_mv", values))]


def _stats_columns(cfg: ClickHouseLoaderConfig, types: dict[str, str]) -> tuple[tuple[Column, ...], tuple[Column, ...]]:
    """(dimension columns, sum columns): sums of integers are 64-bit, signed as their source."""
    dims = tuple((d, types[d]) for d in cfg.stats.dimensions)
    sums = tuple((s, "UInt64" if types[s].startswith("U") else "Int64") for s in cfg.stats.sums
                 if types[s] in INTEGER_TYPES)
    return dims, sums


def _definitions(columns: tuple[Column, ...]) -> str:
    return ",\n".join(f"    {name} {typ}" for name, typ in columns)


def _template(ddl_dir: str, name: str, values: dict[str, str]) -> str:
    path = os.path.join(ddl_dir, f"{name}.sql")
    try:
        with open(path, encoding="utf-8") as fh:
            text = fh.read()
    except OSError as exc:
        raise SetupError(f"cannot read the DDL template {path}: {exc.strerror} (clickhouse_loader.ddl_dir)") from None
    try:
        return Template(text).substitute(values)
    except (KeyError, ValueError) as exc:
        raise SetupError(f"{path}: unknown or malformed placeholder {exc} (known: "
                         f"{', '.join('$' + k for k in sorted(values))})") from None


def setup(cfg: Config, mapper: RowMapper) -> list[str]:
    """Create what is missing on every host of every destination; one line per change.

    A destination that fails does not stop the others; the failures are raised together at
    the end (after the changes made were logged).
    """
    lc = cfg.clickhouse_loader
    changes: list[str] = []
    failures: list[str] = []
    for dest in lc.destinations:
        ddls = render(lc, dest, mapper)
        for host in dest.hosts:
            where = f"destination {dest.name} ({host[0]}:{host[1]})"
            try:
                for change in _setup_host(new_client(dest, host), dest.database, ddls):
                    log.info("%s: %s", where, change)
                    changes.append(f"{where}: {change}")
            except (SetupError, RetryableError, FatalSinkError) as exc:
                failures.append(f"{where}: {exc}")
    if failures:
        raise SetupError("; ".join(failures))
    return changes


def _setup_host(client: Client, database: str, ddls: list[Ddl]) -> list[str]:
    try:
        with classified("setup"):
            changes = _create_database(client, database)
            for ddl in ddls:
                changes += _ensure(client, database, ddl)
            return changes
    finally:
        client.disconnect()


def _create_database(client: Client, database: str) -> list[str]:
    if client.execute("SELECT name FROM system.databases WHERE name = %(db)s", {"db": database}):
        return []
    client.execute(f"CREATE DATABASE IF NOT EXISTS {database}")
    return [f"created database {database}"]


def _ensure(client: Client, database: str, ddl: Ddl) -> list[str]:
    exists = client.execute("SELECT name FROM system.tables WHERE database = %(db)s AND name = %(t)s",
                            {"db": database, "t": ddl.name})
    if not exists:
        client.execute(ddl.sql)
        return [f"created {'view' if not ddl.columns else 'table'} {database}.{ddl.name}"]
    if not ddl.columns:
        return []
    have = dict(client.execute("SELECT name, type FROM system.columns WHERE database = %(db)s AND "
                               "table = %(t)s", {"db": database, "t": ddl.name}))
    wrong = [f"{name} is {have[name]}, the config says {typ}" for name, typ in ddl.columns
             if name in have and have[name] != typ]
    missing = [c for c in ddl.columns if c[0] not in have]
    unexpected = [] if ddl.evolvable else sorted(set(have) - {name for name, _ in ddl.columns})
    if wrong or unexpected or (missing and not ddl.evolvable):
        what = "; ".join(wrong + [f"{c[0]} {c[1]} is missing" for c in missing] +
                         [f"{name} is not in the configuration" for name in unexpected])
        raise SetupError(f"{database}.{ddl.name} does not match the configuration: {what}. An existing "
                         f"column's type or the statistics' key cannot change in place: migrate the table by "
                         f"hand (create the new one, INSERT SELECT, rename), then run setup again")
    changes = []
    for name, typ in missing:
        client.execute(f"ALTER TABLE {database}.{ddl.name} ADD COLUMN {name} {typ}")
        changes.append(f"added column {name} {typ} to {database}.{ddl.name}")
    return changes
