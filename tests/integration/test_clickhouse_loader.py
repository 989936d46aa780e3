"""The ClickHouse loader as a real process against the real Kafka, ClickHouse 18.16 and
ZooKeeper: counts and money sums in stats_hourly equal what was produced, exactly, through
kill -9 at exact lines and at random, ClickHouse and ZooKeeper going down, a rebalance
between two loaders, a destination that cannot be reached, and bad messages."""

from __future__ import annotations

import json
import random
import threading
import time
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import pytest
from clickhouse_driver import Client
from kafka import KafkaConsumer, TopicPartition  # kafka-python: an independent client checks Kafka

from eventd.config import Config, load_config
from eventd.event.codec import encode
from eventd.event.envelope import EventParser
from eventd.event.money import to_micros
from eventd.event.schemas import SchemaStore
from eventd.kafka.producer import Producer
from eventd.kafka.topics import ensure_topics, event_topics
from eventd.roles import clickhouse_loader
from harness import KAFKA, RoleProcess, ServiceFault, TestEnv, consume_all, devstack, free_port, wait_for

HOUR0 = 1_710_064_800_000            # 2024-03-10T10:00:00Z, ms
TYPES = ("impression", "click", "conversion", "bid")
Key = tuple[int, str, int, int, int, str, str]     # hour (s), type, campaign, site, zone, country, device
SUMS = ("events", "cost_micros", "revenue_micros", "bid_micros", "value_micros")


# -- the world of one test -------------------------------------------------------------------
def loader_config(env: TestEnv, name: str = "eventd.yaml", **loader: Any) -> Path:
    s = env.settings()
    for role in ("collector", "balance_aggregator", "hdfs_uploader"):
        s[role]["enabled"] = False
    s["clickhouse_loader"].update(loader)
    return env.write_config(s, name)


def provision(path: Path) -> Config:
    """What `eventd setup` does for this role: the topics, then the ClickHouse tables."""
    cfg = load_config(str(path))
    ensure_topics(cfg, SchemaStore.load(cfg.events.schema_dir))
    clickhouse_loader.setup(cfg)
    return cfg


@pytest.fixture
def clickhouse() -> Iterator[Client]:
    client = Client("127.0.0.1", 9000, connect_timeout=5, send_receive_timeout=60)
    yield client
    client.disconnect()


@pytest.fixture
def databases(clickhouse: Client) -> Iterator[list[str]]:
    """Databases a test creates; dropped at the end (which also removes their ZooKeeper nodes)."""
    names: list[str] = []
    yield names
    for db in names:
        wait_for(lambda db=db: _drop(clickhouse, db), 120, f"dropping {db}", interval=2)


def _drop(client: Client, db: str) -> bool:
    try:
        client.execute(f"DROP DATABASE IF EXISTS {db}")
        return True
    except Exception:   # noqa: BLE001 - ClickHouse may still be coming back after a fault test
        return False


class Feed:
    """Produces events through the shared parser, codec and Producer, and keeps the totals
    stats_hourly must end up with (per hour × type × campaign × site × zone × country × device)."""

    def __init__(self, cfg: Config, seed: int) -> None:
        self.store = SchemaStore.load(cfg.events.schema_dir)
        self.parser = EventParser(self.store, cfg.events, cfg.kafka.topics.prefix, cfg.kafka.topics.partitions,
                                  "testhost")
        self.producer = Producer(cfg.kafka, "test-feed")
        self.rng = random.Random(seed)
        self.expected: dict[Key, list[int]] = defaultdict(lambda: [0] * len(SUMS))
        self.ids: set[str] = set()
        self.sent: list[tuple[str, bytes, bytes]] = []      # (topic, key, value) of every good event
        self.seq = 0

    def line(self) -> dict[str, Any]:
        r, self.seq = self.rng, self.seq + 1
        kind = r.choice(TYPES)
        ev: dict[str, Any] = {"type": kind, "id": f"{kind[:3]}-{self.seq}-{r.randrange(10**9)}",
                              "time": HOUR0 + r.randrange(3 * 3600 * 1000), "campaign_id": r.randint(1, 4),
                              "site_id": r.randint(10, 12), "zone_id": r.randint(100, 102),
                              "country": r.choice(["US", "DE", "FR"]), "device": r.choice(["desktop", "mobile"])}
        for field in {"impression": ("cost", "revenue"), "click": ("cost", "revenue"),
                      "conversion": ("cost", "revenue", "value"), "bid": ("bid",)}[kind]:
            ev[field] = str(Decimal(r.randrange(10**7)) / 10**6)   # up to 9.999999, exact in micros
        return ev

    def produce(self, n: int, resend_every: int = 0) -> None:
        """``n`` new events; with ``resend_every``, every Nth is sent a second time (a collector resend)."""
        for i in range(n):
            ev = self.line()
            self._send(ev, expect=True)
            if resend_every and i % resend_every == 0:
                self._send(ev, expect=False)
        self.producer.flush(30)

    def _send(self, ev: dict[str, Any], expect: bool) -> None:
        event = self.parser.parse(json.dumps(ev).encode(), "test", 1_700_000_000_000, lambda: "unused")
        value = encode(event.schema, event.record)
        self.producer.send(event.topic, value, key=event.key)
        if expect:
            self.sent.append((event.topic, event.key, value))
            self.ids.add(ev["id"])
            sums = self.expected[(ev["time"] // 3_600_000 * 3600, ev["type"], ev["campaign_id"], ev["site_id"],
                                  ev["zone_id"], ev["country"], ev["device"])]
            sums[0] += 1
            for i, field in enumerate(("cost", "revenue", "bid", "value"), 1):
                sums[i] += to_micros(ev[field], field) if field in ev else 0

    def send_raw(self, topic: str, value: bytes, key: bytes = b"1") -> None:
        self.producer.send(topic, value, key=key)
        self.producer.flush(30)

    def total(self) -> int:
        return sum(v[0] for v in self.expected.values())


def stats(client: Client, db: str) -> dict[Key, list[int]]:
    rows = client.execute(f"""
        SELECT toUInt32(hour), type, campaign_id, site_id, zone_id, country, device,
               sum(events), sum(cost_micros), sum(revenue_micros), sum(bid_micros), sum(value_micros)
        FROM {db}.stats_hourly GROUP BY hour, type, campaign_id, site_id, zone_id, country, device""")
    return {tuple(r[:7]): list(r[7:]) for r in rows}  # type: ignore[misc]


def loaded(client: Client, db: str) -> int:
    try:
        return client.execute(f"SELECT sum(events) FROM {db}.stats_hourly")[0][0] or 0
    except Exception:  # noqa: BLE001 - ClickHouse restarting in a fault test
        client.disconnect()
        return -1


def assert_exact(client: Client, db: str, feed: Feed, timeout: float = 90) -> None:
    """Wait until stats_hourly has every event, give duplicates time to show, then compare all sums."""
    wait_for(lambda: loaded(client, db) >= feed.total(), timeout,
             f"{feed.total()} events in {db}.stats_hourly", interval=0.5)
    time.sleep(2)
    assert stats(client, db) == dict(feed.expected)
    count, unique = client.execute(f"SELECT count(), uniqExact(id) FROM {db}.events")[0]
    assert (count, unique) == (feed.total(), len(feed.ids))
    assert feed.total() == len(feed.ids)


def start_loader(env: TestEnv, path: Path, processes: list[RoleProcess], log: str = "loader") -> RoleProcess:
    proc = RoleProcess(env, ["role", "clickhouse-loader"], path, log)
    processes.append(proc)
    return proc


def stream(feed: Feed, batches: int, size: int, pause: float) -> threading.Thread:
    """Produce ``batches`` × ``size`` events in the background, ``pause`` s apart."""
    def run() -> None:
        for _ in range(batches):
            feed.produce(size, resend_every=17)
            time.sleep(pause)
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


# -- tests -----------------------------------------------------------------------------------
def test_exact_counts_and_sums_resends_skipped_bad_messages_dead_lettered(
        env: TestEnv, processes: list[RoleProcess], clickhouse: Client, databases: list[str]) -> None:
    path = loader_config(env)
    cfg = provision(path)
    databases.append(env.db)
    feed = Feed(cfg, seed=1)
    feed.produce(800, resend_every=10)          # 80 collector resends: same id, same partition
    imp = env.topic("impression")
    feed.send_raw(imp, b"not avro at all")
    feed.send_raw(imp, b"\xc3\x01" + b"\x00" * 8 + b"\x02x")          # unknown schema fingerprint
    bad_site = feed.line() | {"type": "impression", "site_id": -5}   # valid Avro long, not a UInt64
    far = feed.line() | {"type": "click", "time": 5_000_000_000_000}  # year 2128: past DateTime
    for ev in (bad_site, far):
        event = feed.parser.parse(json.dumps(ev).encode(), "test", 0, lambda: "x")
        feed.send_raw(event.topic, encode(event.schema, event.record), event.key)
    feed.produce(200)

    loader = start_loader(env, path, processes)
    assert_exact(clickhouse, env.db, feed)
    extras = clickhouse.execute(f"SELECT count() FROM {env.db}.events WHERE has(extra_keys, 'value') "
                                f"OR has(extra_keys, 'cost')")[0][0]
    assert extras == 0            # mapped fields are columns, not extras

    letters = consume_all([cfg.kafka.topics.dead_letter], 4, timeout=30)
    reasons = sorted(dict(m.headers)["eventd.reason"].decode() for m in letters)
    assert len(letters) == 4, reasons
    assert any("missing C3 01 header" in r for r in reasons)
    assert any("unknown writer schema fingerprint" in r for r in reasons)
    assert any("site_id: -5 is out of range of column site_id UInt64" in r for r in reasons)
    assert any("time:" in r and "DateTime range" in r for r in reasons)
    for m in letters:
        topic, partition, offset = dict(m.headers)["eventd.source"].decode().rsplit("/", 2)
        assert topic.startswith(env.prefix) and int(partition) >= 0 and int(offset) >= 0
    assert loader.terminate() == 0
    assert "Traceback" not in loader.log()


def test_kill9_after_recording_and_mid_insert_then_at_random_is_exact(
        env: TestEnv, processes: list[RoleProcess], clickhouse: Client, databases: list[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    path = loader_config(env, max_rows=150, max_age="300ms")
    cfg = provision(path)
    databases.append(env.db)
    feed = Feed(cfg, seed=2)
    feed.produce(1200, resend_every=13)

    # Exact lines: boundaries recorded but nothing inserted; then some partitions' blocks
    # inserted and the rest not, nothing committed.
    runs = []
    for point in ("clickhouse_loader.after_record=2", "clickhouse_loader.after_insert=4"):
        monkeypatch.setenv("EVENTD_FAILPOINTS", point)
        crashed = start_loader(env, path, processes, log=point.split(".")[1].split("=")[0])
        crashed.proc.wait(90)
        assert crashed.proc.returncode == -9, crashed.log()
        assert f"failpoint {point.split('=')[0]} reached" in crashed.log()
        runs.append(crashed.log())
    monkeypatch.delenv("EVENTD_FAILPOINTS")
    assert "redoing the batch recorded before a crash" in runs[1]    # the recorded, uninserted batch

    # At random moments after the loader started inserting.
    rng = random.Random(7)
    for i in range(2):
        feed.produce(400, resend_every=11)
        loader = start_loader(env, path, processes, log=f"random-{i}")
        wait_for(lambda p=loader: "tables checked" in p.log(), 60, "the loader inserting")
        time.sleep(rng.uniform(0.2, 1.5))
        loader.kill9()
    final = start_loader(env, path, processes, log="final")
    assert_exact(clickhouse, env.db, feed)
    assert final.terminate() == 0


def test_clickhouse_killed_while_loading_catches_up_exactly(
        env: TestEnv, processes: list[RoleProcess], clickhouse: Client, databases: list[str]) -> None:
    path = loader_config(env, max_rows=200, max_age="200ms")
    cfg = provision(path)
    databases.append(env.db)
    feed = Feed(cfg, seed=3)
    feed.produce(300)
    loader = start_loader(env, path, processes)
    assert_exact(clickhouse, env.db, feed)
    with ServiceFault("clickhouse"):
        producing = stream(feed, batches=8, size=100, pause=0.3)
        time.sleep(1.0)                     # inserts under way when the server dies
        devstack("kill", "clickhouse")
        producing.join()
        time.sleep(3)                       # the loader retries in its group meanwhile
        assert loader.alive(), loader.log()
        devstack("up", "clickhouse")
    clickhouse.disconnect()
    assert_exact(clickhouse, env.db, feed, timeout=120)
    assert "sink unavailable, retrying" in loader.log()
    assert loader.terminate() == 0


def test_zookeeper_killed_while_loading_catches_up_exactly(
        env: TestEnv, processes: list[RoleProcess], clickhouse: Client, databases: list[str]) -> None:
    path = loader_config(env, max_rows=200, max_age="200ms")
    cfg = provision(path)
    databases.append(env.db)
    feed = Feed(cfg, seed=4)
    loader = start_loader(env, path, processes)
    with ServiceFault("zookeeper"):
        producing = stream(feed, batches=8, size=100, pause=0.3)
        time.sleep(1.0)
        devstack("kill", "zookeeper")
        producing.join()
        time.sleep(3)
        devstack("up", "zookeeper")
    assert_exact(clickhouse, env.db, feed, timeout=150)
    assert loader.terminate() == 0


def test_two_loaders_in_one_group_with_rebalances_are_exact(
        env: TestEnv, processes: list[RoleProcess], clickhouse: Client, databases: list[str]) -> None:
    path = loader_config(env, max_rows=100, max_age="200ms")
    cfg = provision(path)
    databases.append(env.db)
    feed = Feed(cfg, seed=5)
    feed.produce(300)
    first = start_loader(env, path, processes, log="first")
    producing = stream(feed, batches=10, size=100, pause=0.5)
    wait_for(lambda: loaded(clickhouse, env.db) > 0, 60, "the first loader loading")
    second = start_loader(env, path, processes, log="second")      # rebalance: partitions split
    wait_for(lambda: "starts at" in second.log(), 60, "the second loader getting partitions")
    time.sleep(1.5)
    first.kill9()                         # rebalance again: the second takes everything
    producing.join()
    assert_exact(clickhouse, env.db, feed, timeout=120)
    assert second.terminate() == 0


def test_a_destination_that_cannot_be_reached_does_not_hold_back_another(
        env: TestEnv, processes: list[RoleProcess], clickhouse: Client, databases: list[str]) -> None:
    good = {"name": "good", "hosts": ["127.0.0.1:9000"], "database": env.db, "group_id": f"{env.id}-good"}
    down = {"name": "down", "hosts": [f"127.0.0.1:{free_port()}"], "database": env.db,   # nothing listens
            "group_id": f"{env.id}-down", "connect_timeout": "1s"}
    cfg = provision(loader_config(env, "setup.yaml", destinations=[good]))
    databases.append(env.db)
    path = loader_config(env, destinations=[good, down])
    feed = Feed(cfg, seed=6)
    feed.produce(500)
    loader = start_loader(env, path, processes)
    assert_exact(clickhouse, env.db, feed)
    assert "destination down: connecting" in loader.log()
    consumer = KafkaConsumer(bootstrap_servers=KAFKA, group_id=f"{env.id}-down", enable_auto_commit=False)
    try:
        topics = event_topics(cfg, SchemaStore.load(cfg.events.schema_dir))
        committed = [consumer.committed(TopicPartition(t, p)) for t in topics for p in range(3)]
    finally:
        consumer.close()
    assert committed == [None] * len(committed)     # nothing acknowledged for the unreachable cluster
    assert loader.terminate() == 0                  # the down destination gives up its batch in time


def test_a_table_that_does_not_match_the_config_stops_the_role_loudly(
        env: TestEnv, processes: list[RoleProcess], clickhouse: Client, databases: list[str]) -> None:
    cfg = provision(loader_config(env, "setup.yaml"))
    databases.append(env.db)
    columns = [{"column": c.column, "field": c.field, "type": c.type, "money": c.money}
               for c in cfg.clickhouse_loader.columns]
    path = loader_config(env, columns=columns + [{"column": "referrer", "type": "String"}])
    feed = Feed(cfg, seed=8)
    feed.produce(50)
    loader = start_loader(env, path, processes)
    loader.proc.wait(60)
    assert loader.proc.returncode == 3, loader.log()
    assert "referrer String (table: missing)" in loader.log() and "run `eventd setup`" in loader.log()
    assert loaded(clickhouse, env.db) == 0
