"""Helpers for the balance aggregator's integration tests (no tests here): a world of campaigns
and accounts in a per-test MariaDB database, events produced to the test's Kafka topics exactly
as the collector produces them, and the exact totals they must add up to."""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from eventd.event.codec import encode
from eventd.event.schemas import SchemaStore
from harness import KAFKA, REPO, SCHEMAS, RoleProcess, TestEnv, mariadb, sql, wait_for

ROLE = "balance-aggregator"
STORE = SchemaStore.load(str(SCHEMAS))
MONEY_TYPES = ("impression", "click", "conversion")


def micros(value: Decimal | None) -> int | None:
    return None if value is None else int(value.scaleb(6))


db_connect = mariadb


def balance_settings(env: TestEnv, **overrides: Any) -> dict[str, Any]:
    """The harness settings with only the balance aggregator enabled (``eventd setup`` then
    touches Kafka and MariaDB only) and ``overrides`` merged into its section."""
    s = env.settings()
    for other in ("collector", "clickhouse_loader", "hdfs_uploader"):
        s[other]["enabled"] = False
    s["balance_aggregator"].update(overrides)
    return s


def run_setup(env: TestEnv, config: Path) -> str:
    r = subprocess.run([sys.executable, "-m", "eventd", "setup", "-c", str(config)], cwd=REPO,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, f"eventd setup failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout


@dataclass
class Campaign:
    id: int
    advertiser: int
    total_budget: int | None = None      # micro-units
    daily_budget: int | None = None


@dataclass
class Totals:
    """What the produced events must add up to, in micro-units."""

    spent: dict[int, int] = field(default_factory=dict)
    day: dict[tuple[int, str], int] = field(default_factory=dict)
    balance: dict[int, int] = field(default_factory=dict)
    events: int = 0

    def add(self, campaign: Campaign | None, publisher: int | None, cost: int, revenue: int, day: str) -> None:
        self.events += 1
        if cost and campaign is not None:
            self.spent[campaign.id] = self.spent.get(campaign.id, 0) + cost
            self.day[(campaign.id, day)] = self.day.get((campaign.id, day), 0) + cost
            self.balance[campaign.advertiser] = self.balance.get(campaign.advertiser, 0) - cost
        if revenue and publisher is not None:
            self.balance[publisher] = self.balance.get(publisher, 0) + revenue


class World:
    """One test's balances world: config, database, topics, producer and expected totals."""

    def __init__(self, env: TestEnv, seed: int = 1, **overrides: Any) -> None:
        self.env, self.rng = env, random.Random(seed)
        self.settings = balance_settings(env, **overrides)
        self.config = env.write_config(self.settings)
        self.setup_output = run_setup(env, self.config)
        self.db = env.db
        self.totals = Totals()
        self.produced: list[tuple[str, bytes, bytes]] = []     # (topic, key, value) of every message sent
        self._producer = KafkaProducer(bootstrap_servers=KAFKA, acks="all", enable_idempotence=True, linger_ms=5)

    # -- database ----------------------------------------------------------------------
    def sql(self, statement: str, args: Any = None) -> list[tuple[Any, ...]]:
        return sql(self.db, statement, args)

    def add_campaigns(self, campaigns: list[Campaign], publishers: list[int]) -> None:
        conn = db_connect(self.db)
        try:
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO campaigns (id, advertiser_id, total_budget, daily_budget) "
                                "VALUES (%s, %s, %s * 0.000001, %s * 0.000001)",
                                [(c.id, c.advertiser, c.total_budget, c.daily_budget) for c in campaigns])
                accounts = sorted({c.advertiser for c in campaigns} | set(publishers))
                cur.executemany("INSERT INTO accounts (id) VALUES (%s)", [(a,) for a in accounts])
        finally:
            conn.close()

    # -- events ------------------------------------------------------------------------
    def event(self, etype: str, campaign: Campaign | None, publisher: int | None, cost: int, revenue: int,
              ms: int | None = None, event_id: str | None = None, count: bool = True) -> tuple[str, bytes, bytes]:
        """Encode and send one event as the collector would (key = campaign_id, as configured)."""
        ms = ms or int(time.time() * 1000)
        record = {"id": event_id or uuid.uuid4().hex, "type": etype, "time": ms, "received": ms, "host": "testhost",
                  "input": "test", "schema_version": 1, "campaign_id": campaign.id if campaign else None,
                  "advertiser_id": campaign.advertiser if campaign else None, "publisher_id": publisher,
                  "cost": cost, "revenue": revenue, "extra": {}}
        key = str(record["campaign_id"] if campaign else record["id"]).encode()
        msg = (self.env.topic(etype), key, encode(STORE.writer(etype), record))
        self._producer.send(msg[0], key=msg[1], value=msg[2])
        self.produced.append(msg)
        if count:
            day = time.strftime("%Y-%m-%d", time.gmtime(ms // 1000))
            self.totals.add(campaign, publisher, cost, revenue, day)
        return msg

    def random_events(self, n: int, campaigns: list[Campaign], publishers: list[int]) -> None:
        for _ in range(n):
            cost = self.rng.choice((0, 1, 7, 999_999, 1_000_000, self.rng.randrange(1, 5_000_000)))
            revenue = self.rng.choice((0, 1, self.rng.randrange(1, 3_000_000)))
            self.event(self.rng.choice(MONEY_TYPES), self.rng.choice(campaigns), self.rng.choice(publishers),
                       cost, revenue)

    def stream(self, campaigns: list[Campaign], publishers: list[int], per_tick: int = 10,
               tick: float = 0.1) -> "Stream":
        """Produce random events in a background thread until the returned stream is stopped."""
        return Stream(self, campaigns, publishers, per_tick, tick)

    def resend(self, messages: list[tuple[str, bytes, bytes]]) -> None:
        """A collector resend: the same bytes (same event ids) produced again."""
        for topic, key, value in messages:
            self._producer.send(topic, key=key, value=value)
            self.produced.append((topic, key, value))
        self.flush()

    def flush(self) -> None:
        self._producer.flush(30)

    # -- progress and results ----------------------------------------------------------
    def end_offsets(self, types: tuple[str, ...] = MONEY_TYPES) -> dict[tuple[str, int], int]:
        consumer = KafkaConsumer(bootstrap_servers=KAFKA)
        try:
            tps = [TopicPartition(self.env.topic(t), p) for t in types for p in range(3)]
            return {(tp.topic, tp.partition): off for tp, off in consumer.end_offsets(tps).items()}
        finally:
            consumer.close()

    def stored_offsets(self) -> dict[tuple[str, int], int]:
        return {(t, p): n for t, p, n in self.sql("SELECT topic, part, next_offset FROM eventd_balance_offsets")}

    def wait_applied(self, timeout: float = 120, proc: RoleProcess | None = None) -> None:
        """Until MariaDB's stored offsets reach the end of every money topic partition."""
        self.flush()
        end = {k: v for k, v in self.end_offsets().items() if v > 0}

        def behind() -> dict[tuple[str, int], tuple[int, int]]:
            if proc is not None:
                assert proc.alive(), f"aggregator exited {proc.proc.returncode}:\n{proc.log()[-4000:]}"
            stored = self.stored_offsets()
            return {k: (stored.get(k, -1), v) for k, v in end.items() if stored.get(k, -1) < v}
        try:
            wait_for(lambda: not behind(), timeout, "the aggregator to apply every produced message")
        except AssertionError as exc:
            tail = proc.log()[-3000:] if proc is not None else ""
            raise AssertionError(f"{exc}; behind (stored, end): {behind()}\n{tail}") from None

    def applied(self) -> int:
        return sum(self.stored_offsets().values())

    def spent(self) -> dict[int, int]:
        return {c: micros(s) for c, s in self.sql("SELECT id, spent FROM campaigns WHERE spent <> 0")}

    def day_spend(self) -> dict[tuple[int, str], int]:
        return {(c, d.isoformat()): micros(s) for c, d, s in
                self.sql("SELECT campaign_id, day, spent FROM campaign_daily_spend WHERE spent <> 0")}

    def balances(self) -> dict[int, int]:
        return {a: micros(b) for a, b in self.sql("SELECT id, balance FROM accounts WHERE balance <> 0")}

    def assert_exact(self) -> None:
        t = self.totals
        assert self.spent() == {k: v for k, v in t.spent.items() if v}
        assert self.day_spend() == {k: v for k, v in t.day.items() if v}
        assert self.balances() == {k: v for k, v in t.balance.items() if v}

    def start(self, name: str = "aggregator", extra_env: dict[str, str] | None = None,
              config: Path | None = None) -> RoleProcess:
        import os
        saved = dict(os.environ)
        os.environ.update(extra_env or {})
        try:
            return RoleProcess(self.env, ["role", ROLE], config or self.config, name)
        finally:
            os.environ.clear()
            os.environ.update(saved)

    def close(self) -> None:
        self._producer.close(10)
        conn = db_connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{self.db}`")
        finally:
            conn.close()


class Stream:
    """Random events produced in a background thread, ``per_tick`` every ``tick`` seconds."""

    def __init__(self, world: World, campaigns: list[Campaign], publishers: list[int], per_tick: int,
                 tick: float) -> None:
        import threading
        self.world, self.campaigns, self.publishers = world, campaigns, publishers
        self.per_tick, self.tick = per_tick, tick
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.tick):
            self.world.random_events(self.per_tick, self.campaigns, self.publishers)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        self.world.flush()


def process_state(proc: RoleProcess) -> str:
    """The kernel's one-letter state of the process (R, S, T = stopped, Z …)."""
    with open(f"/proc/{proc.proc.pid}/stat") as fh:
        return fh.read().rsplit(")", 1)[1].split()[0]


def control_events(env: TestEnv, expected: int, timeout: float = 30) -> list[dict[str, Any]]:
    from harness import consume_all
    return [json.loads(r.value) for r in consume_all([f"{env.prefix}_control"], expected, timeout)]


def dead_letters(env: TestEnv, expected: int, timeout: float = 30) -> list[Any]:
    from harness import consume_all
    return consume_all([f"{env.prefix}_deadletter"], expected, timeout)
