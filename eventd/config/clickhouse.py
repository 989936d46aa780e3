"""The ``clickhouse_loader:`` section: destinations (clusters), batching, column mapping."""

from __future__ import annotations

from dataclasses import dataclass

from eventd.config.common import DeadLetterConfig, RoleCommon
from eventd.config.reader import Section
from eventd.config.secret import Secret, read_secret
from eventd.config.units import duration, host_port, integer, list_of, nonempty_string, string


@dataclass(frozen=True)
class ClickHouseDestination:
    """One ClickHouse cluster, loaded independently with its own consumer group."""

    name: str
    hosts: tuple[tuple[str, int], ...]
    database: str
    user: str
    password: Secret
    group_id: str
    connect_timeout: float
    send_receive_timeout: float


@dataclass(frozen=True)
class ClickHouseLoaderConfig:
    role: RoleCommon
    destinations: tuple[ClickHouseDestination, ...]
    max_rows: int
    max_age: float
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
        dl = s.section("dead_letter")
        cfg = cls(role=role, destinations=dests,
                  max_rows=s.get("max_rows", integer(1, 10_000_000), 100_000),
                  max_age=s.get("max_age", duration, "1s"),
                  dead_letter=DeadLetterConfig.read(dl))
        dl.finish()
        return cfg


def _destination(s: Section) -> ClickHouseDestination:
    name = s.get("name", nonempty_string)
    d = ClickHouseDestination(name=name, hosts=s.get("hosts", list_of(host_port, 1), ["127.0.0.1:9000"]),
                              database=s.get("database", nonempty_string, "eventd"),
                              user=s.get("user", nonempty_string, "default"), password=read_secret(s),
                              group_id=s.get("group_id", nonempty_string, f"eventd-clickhouse-{name}"),
                              connect_timeout=s.get("connect_timeout", duration, "5s"),
                              send_receive_timeout=s.get("send_receive_timeout", duration, "60s"))
    s.get("comment", string, "")
    s.finish()
    return d
