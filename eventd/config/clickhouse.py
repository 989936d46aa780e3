"""The ``clickhouse_loader:`` section: destinations (clusters), batching, the column mapping
(event field → column of the ``events`` table) and the ``stats_hourly`` dimensions and sums.

The mapping is data: a new event field or column is a config change plus ``eventd setup``
(which adds the column), never a code change. Envelope columns (id, type, time, …) and the
Kafka source position are fixed; see ``eventd/roles/clickhouse_loader/mapping.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from eventd.config.common import DeadLetterConfig, RoleCommon, resolve_path
from eventd.config.reader import Section
from eventd.config.secret import Secret, read_secret
from eventd.config.units import (boolean, choice, duration, host_port, integer, list_of, nonempty_string,
                                 string)

# Types a configured column may have. All of them exist on ClickHouse 18.16 and current releases.
INTEGER_TYPES = ("UInt8", "UInt16", "UInt32", "UInt64", "Int8", "Int16", "Int32", "Int64")
COLUMN_TYPES = INTEGER_TYPES + ("Float32", "Float64", "String")
# Names the loader itself uses (envelope, extras, Kafka source position, stats_hourly's own columns).
RESERVED_COLUMNS = frozenset({"id", "type", "time", "time_ms", "received_ms", "host", "input", "schema_version",
                              "extra_keys", "extra_values", "kafka_topic", "kafka_partition", "kafka_offset",
                              "hour", "events", "source_block"})
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
# An INSERT above ~1M rows (max_insert_block_size) is split by ClickHouse and is no longer atomic.
MAX_ROWS_LIMIT = 1_000_000


@dataclass(frozen=True)
class ColumnMapping:
    """One payload column of the ``events`` table, filled from event field ``field``.

    money: the value is integer micro-units. Schema money fields already are; a value found
    in the event's ``extra`` map (types without a schema) is decimal text in units, converted.
    """

    column: str
    field: str
    type: str
    money: bool


# The default mapping: the payload fields of the shipped schemas (conf/schemas).
DEFAULT_COLUMNS: tuple[ColumnMapping, ...] = tuple(
    ColumnMapping(col, field, typ, money) for col, field, typ, money in (
        ("campaign_id", "campaign_id", "UInt64", False), ("advertiser_id", "advertiser_id", "UInt64", False),
        ("publisher_id", "publisher_id", "UInt64", False), ("site_id", "site_id", "UInt64", False),
        ("zone_id", "zone_id", "UInt64", False), ("country", "country", "String", False),
        ("device", "device", "String", False), ("ip", "ip", "String", False),
        ("user_agent", "user_agent", "String", False), ("impression_id", "impression_id", "String", False),
        ("click_id", "click_id", "String", False), ("auction_id", "auction_id", "String", False),
        ("goal", "goal", "String", False), ("won", "won", "UInt8", False),
        ("cost_micros", "cost", "Int64", True), ("revenue_micros", "revenue", "Int64", True),
        ("bid_micros", "bid", "Int64", True), ("value_micros", "value", "Int64", True)))


@dataclass(frozen=True)
class StatsConfig:
    """``stats_hourly``: one row per hour × event type × ``dimensions``, counting events and
    summing ``sums`` (integer columns of ``events``, money in micro-units)."""

    dimensions: tuple[str, ...]
    sums: tuple[str, ...]


@dataclass(frozen=True)
class ClickHouseDestination:
    """One ClickHouse cluster (the replicas of one shard), loaded independently with its own
    consumer group."""

    name: str
    hosts: tuple[tuple[str, int], ...]
    database: str
    user: str
    password: Secret
    group_id: str
    connect_timeout: float
    send_receive_timeout: float
    zookeeper_path: str
    replica: str


@dataclass(frozen=True)
class ClickHouseLoaderConfig:
    role: RoleCommon
    destinations: tuple[ClickHouseDestination, ...]
    max_rows: int
    max_age: float
    duplicate_id_window: int
    replicated_deduplication_window: int
    ddl_dir: str
    columns: tuple[ColumnMapping, ...]
    order_by: tuple[str, ...]
    stats: StatsConfig
    dead_letter: DeadLetterConfig

    @classmethod
    def read(cls, s: Section) -> "ClickHouseLoaderConfig":
        role = RoleCommon.read(s)
        dests = tuple(_destination(d) for d in s.sections("destinations"))
        names = [d.name for d in dests]
        if len(set(names)) != len(names):
            raise s.error("destinations", f"destination names must be unique, got {names}")
        if role.enabled and not dests:
            raise s.error("destinations", "the loader is enabled but no destination is configured")
        columns = _columns(s)
        known = {c.column for c in columns} | {"type", "time", "host", "input", "id"}
        dl = s.section("dead_letter")
        cfg = cls(role=role, destinations=dests,
                  max_rows=s.get("max_rows", integer(1, MAX_ROWS_LIMIT), 100_000),
                  max_age=s.get("max_age", duration, "1s"),
                  duplicate_id_window=s.get("duplicate_id_window", integer(0, 10_000_000), 100_000),
                  replicated_deduplication_window=s.get("replicated_deduplication_window",
                                                        integer(100, 10_000_000), 10_000),
                  ddl_dir=resolve_path(s, s.get("ddl_dir", nonempty_string, "/etc/eventd/clickhouse")),
                  columns=columns,
                  order_by=_column_list(s, "order_by", known, ["campaign_id", "type", "time"]),
                  stats=_stats(s.section("stats"), columns),
                  dead_letter=DeadLetterConfig.read(dl))
        dl.finish()
        return cfg


def _identifier(value: object) -> str:
    name = nonempty_string(value)
    if not _IDENTIFIER.match(name):
        raise ValueError(f"{name!r} is not a column name (expected [a-z_][a-z0-9_]*, at most 64 characters)")
    return name


def _destination(s: Section) -> ClickHouseDestination:
    name = s.get("name", nonempty_string)
    d = ClickHouseDestination(name=name, hosts=s.get("hosts", list_of(host_port, 1), ["127.0.0.1:9000"]),
                              database=s.get("database", _identifier, "eventd"),
                              user=s.get("user", nonempty_string, "default"), password=read_secret(s),
                              group_id=s.get("group_id", nonempty_string, f"eventd-clickhouse-{name}"),
                              connect_timeout=s.get("connect_timeout", duration, "5s"),
                              send_receive_timeout=s.get("send_receive_timeout", duration, "60s"),
                              zookeeper_path=s.get("zookeeper_path", _zookeeper_path, "/clickhouse/tables/{shard}"),
                              replica=s.get("replica", nonempty_string, "{replica}"))
    s.get("comment", string, "")
    s.finish()
    return d


def _zookeeper_path(value: object) -> str:
    path = nonempty_string(value)
    if not path.startswith("/") or path.endswith("/") or "'" in path:
        raise ValueError(f"{path!r} is not a ZooKeeper path (expected /a/b, no trailing slash, no quotes)")
    return path


def _columns(s: Section) -> tuple[ColumnMapping, ...]:
    """``columns:`` replaces the default mapping when given."""
    if not s.has("columns"):
        s.sections("columns")  # mark the key as known
        return DEFAULT_COLUMNS
    out: list[ColumnMapping] = []
    for cs in s.sections("columns", min_items=1):
        column = cs.get("column", _identifier)
        if column in RESERVED_COLUMNS:
            raise cs.error("column", f"{column!r} is a column the loader fills itself (envelope, extras, "
                                     f"Kafka position or stats): choose another name")
        if column in {c.column for c in out}:
            raise cs.error("column", f"column {column!r} is mapped twice")
        typ = cs.get("type", choice(*COLUMN_TYPES))
        money = cs.get("money", boolean, False)
        if money and typ not in ("Int64", "UInt64"):
            raise cs.error("type", f"a money column holds integer micro-units: Int64 or UInt64, not {typ}")
        out.append(ColumnMapping(column, cs.get("field", nonempty_string, column), typ, money))
        cs.finish()
    return tuple(out)


def _column_list(s: Section, key: str, known: set[str], default: list[str]) -> tuple[str, ...]:
    names = s.get(key, list_of(_identifier, 1), default)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise s.error(key, f"{', '.join(unknown)}: not a column of the events table (expected one of: "
                           f"{', '.join(sorted(known))})")
    if len(set(names)) != len(names):
        raise s.error(key, f"a column is listed twice in {list(names)}")
    return names


def _stats(s: Section, columns: tuple[ColumnMapping, ...]) -> StatsConfig:
    mapped = {c.column for c in columns}
    integers = {c.column for c in columns if c.type in INTEGER_TYPES}
    dims = _column_list(s, "dimensions", mapped, ["campaign_id", "site_id", "zone_id", "country", "device"])
    default_sums = [c.column for c in columns if c.money]
    if not s.has("sums") and not default_sums:
        raise s.error("sums", "no money column to sum: list the columns to sum")
    sums = _column_list(s, "sums", integers, default_sums)
    both = set(dims) & set(sums)
    if both:
        raise s.error("sums", f"{', '.join(sorted(both))}: a column cannot be both a dimension and a sum")
    s.finish()
    return StatsConfig(dims, sums)
