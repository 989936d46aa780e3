"""The ``balance_aggregator:`` section: MariaDB, the window, which events carry money."""

from __future__ import annotations

from dataclasses import dataclass

from eventd.config.common import DeadLetterConfig, RoleCommon
from eventd.config.reader import Section
from eventd.config.secret import Secret, read_secret
from eventd.config.units import choice, duration, host_port, integer, list_of, nonempty_string


@dataclass(frozen=True)
class MariaDBConfig:
    host: str
    port: int
    database: str
    user: str
    password: Secret
    connect_timeout: float

    @classmethod
    def read(cls, s: Section) -> "MariaDBConfig":
        host, port = s.get("address", host_port, "127.0.0.1:3306")
        cfg = cls(host=host, port=port, database=s.get("database", nonempty_string, "eventd"),
                  user=s.get("user", nonempty_string, "eventd"), password=read_secret(s),
                  connect_timeout=s.get("connect_timeout", duration, "5s"))
        s.finish()
        return cfg


@dataclass(frozen=True)
class BalanceAggregatorConfig:
    role: RoleCommon
    mariadb: MariaDBConfig
    group_id: str
    event_types: tuple[str, ...]
    window: float
    dedup_window: int
    day_boundary: str
    unknown_campaign: str
    dead_letter: DeadLetterConfig

    @classmethod
    def read(cls, s: Section) -> "BalanceAggregatorConfig":
        dl = s.section("dead_letter")
        cfg = cls(role=RoleCommon.read(s), mariadb=MariaDBConfig.read(s.section("mariadb")),
                  group_id=s.get("group_id", nonempty_string, "eventd-balances"),
                  event_types=s.get("event_types", list_of(nonempty_string, 1),
                                    ["impression", "click", "conversion"]),
                  window=s.get("window", duration, "1s"),
                  dedup_window=s.get("dedup_window", integer(0, 100_000_000), 1_000_000),
                  day_boundary=s.get("day_boundary", nonempty_string, "UTC"),
                  unknown_campaign=s.get("unknown_campaign", choice("dead_letter", "create"), "dead_letter"),
                  dead_letter=DeadLetterConfig.read(dl))
        dl.finish()
        return cfg
