"""The ``balance_aggregator:`` section: MariaDB, the window, which events carry money, the
dedup window, and the names of the tables and columns (so eventd can point at an existing
admin database)."""

from __future__ import annotations

import re
import zoneinfo
from dataclasses import dataclass
from typing import Any

from eventd.config.common import DeadLetterConfig, RoleCommon, resolve_path
from eventd.config.reader import Section
from eventd.config.secret import Secret, read_secret
from eventd.config.units import choice, duration, host_port, integer, list_of, nonempty_string, string

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")


def identifier(value: Any) -> str:
    """A MariaDB table or column name eventd will back-quote: letters, digits, underscore."""
    if not isinstance(value, str) or not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a table or column name (expected [A-Za-z_][A-Za-z0-9_]{{0,63}})")
    return value


def time_zone(value: Any) -> str:
    """An IANA time zone name (``UTC``, ``Europe/Berlin``)."""
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a time zone name")
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"{value!r} is not a known time zone (expected an IANA name such as UTC or "
                         f"Europe/Berlin)") from None
    return value


@dataclass(frozen=True)
class MariaDBConfig:
    host: str
    port: int
    database: str
    user: str
    password: Secret
    connect_timeout: float
    query_timeout: float
    lock_wait_timeout: int
    sql_dir: str        # "" = the ``mariadb`` directory next to ``events.schema_dir``

    @classmethod
    def read(cls, s: Section) -> "MariaDBConfig":
        host, port = s.get("address", host_port, "127.0.0.1:3306")
        sql_dir = s.get("sql_dir", string, "")
        cfg = cls(host=host, port=port, database=s.get("database", identifier, "eventd"),
                  user=s.get("user", nonempty_string, "eventd"), password=read_secret(s, default="eventd"),
                  connect_timeout=s.get("connect_timeout", duration, "5s"),
                  query_timeout=s.get("query_timeout", duration, "60s"),
                  lock_wait_timeout=s.get("lock_wait_timeout", integer(1, 3600), 20),
                  sql_dir=resolve_path(s, sql_dir) if sql_dir else "")
        s.finish()
        return cfg


@dataclass(frozen=True)
class TableNames:
    """One table's name and its columns (logical name → actual column name)."""

    table: str
    columns: dict[str, str]

    def __getattr__(self, name: str) -> str:
        """``names.spent`` → the configured column name of logical column ``spent``."""
        columns: dict[str, str] = self.__dict__.get("columns", {})
        if name not in columns:
            raise AttributeError(name)
        return columns[name]


# Logical columns of each table and their default names. The campaigns, per-day spend and
# accounts tables may be an existing admin database's; eventd's own tables are only renamed.
TABLES: dict[str, tuple[str, dict[str, str]]] = {
    "campaigns": ("campaigns", {
        "id": "id", "advertiser": "advertiser_id", "total_budget": "total_budget",
        "daily_budget": "daily_budget", "spent": "spent", "overspend": "overspend", "status": "status",
        "status_reason": "status_reason", "status_changed": "status_changed_at"}),
    "campaign_days": ("campaign_daily_spend", {"campaign": "campaign_id", "day": "day", "spent": "spent"}),
    "accounts": ("accounts", {"id": "id", "balance": "balance"}),
    "offsets": ("eventd_balance_offsets", {}),
    "outbox": ("eventd_balance_outbox", {}),
}


def _table_names(s: Section, key: str) -> TableNames:
    default_table, columns = TABLES[key]
    sub = s.section(key)
    names = TableNames(sub.get("table", identifier, default_table),
                       {logical: sub.get(logical, identifier, default) for logical, default in columns.items()})
    sub.finish()
    return names


@dataclass(frozen=True)
class Tables:
    campaigns: TableNames
    campaign_days: TableNames
    accounts: TableNames
    offsets: TableNames
    outbox: TableNames
    status_active: str
    status_stopped: str

    @classmethod
    def read(cls, s: Section) -> "Tables":
        cfg = cls(**{key: _table_names(s, key) for key in TABLES},
                  status_active=s.get("status_active", nonempty_string, "active"),
                  status_stopped=s.get("status_stopped", nonempty_string, "stopped"))
        s.finish()
        if cfg.status_active == cfg.status_stopped:
            raise s.error("status_stopped", "must differ from status_active")
        return cfg


@dataclass(frozen=True)
class BalanceAggregatorConfig:
    role: RoleCommon
    mariadb: MariaDBConfig
    tables: Tables
    group_id: str
    event_types: tuple[str, ...]
    window: float
    window_max_events: int
    dedup_window: int
    day_boundary: str
    unknown_campaign: str
    control_resend_after: float
    dead_letter: DeadLetterConfig

    @classmethod
    def read(cls, s: Section) -> "BalanceAggregatorConfig":
        dl = s.section("dead_letter")
        cfg = cls(role=RoleCommon.read(s), mariadb=MariaDBConfig.read(s.section("mariadb")),
                  tables=Tables.read(s.section("tables")),
                  group_id=s.get("group_id", nonempty_string, "eventd-balances"),
                  event_types=s.get("event_types", list_of(nonempty_string, 1),
                                    ["impression", "click", "conversion"]),
                  window=s.get("window", duration, "1s"),
                  window_max_events=s.get("window_max_events", integer(1, 10_000_000), 200_000),
                  dedup_window=s.get("dedup_window", integer(0, 100_000_000), 100_000),
                  day_boundary=s.get("day_boundary", time_zone, "UTC"),
                  unknown_campaign=s.get("unknown_campaign", choice("dead_letter", "create"), "dead_letter"),
                  control_resend_after=s.get("control_resend_after", duration, "10s"),
                  dead_letter=DeadLetterConfig.read(dl))
        dl.finish()
        if cfg.window <= 0:
            raise s.error("window", "must be longer than 0")
        return cfg
