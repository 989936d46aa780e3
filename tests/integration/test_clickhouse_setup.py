"""`eventd setup` for ClickHouse, and what the tables themselves guarantee, on the real
ClickHouse of the stack (18.16, ZooKeeper): idempotent setup, columns added by config,
changes that cannot be made in place refused, and the deduplication the loader relies on —
a retried block is stored once in events AND in stats_hourly, a block missing only from
stats_hourly is completed by the retry, and two different blocks with equal sums both count."""

from __future__ import annotations

import json
from typing import Any, Iterator

import pytest
from clickhouse_driver import Client

from eventd.config import Config, load_config
from eventd.event.codec import Decoder, encode
from eventd.event.envelope import EventParser
from eventd.event.schemas import SchemaStore
from eventd.kafka.batch import Message
from eventd.roles import clickhouse_loader
from eventd.roles.clickhouse_loader.mapping import RowMapper
from eventd.roles.clickhouse_loader.schema import SetupError
from harness import TestEnv, wait_for


@pytest.fixture
def client(env: TestEnv) -> Iterator[Client]:
    c = Client("127.0.0.1", 9000, send_receive_timeout=60)
    yield c
    wait_for(lambda: _drop(c, env.db), 60, f"dropping {env.db}", interval=2)
    c.disconnect()


def _drop(c: Client, db: str) -> bool:
    try:
        c.execute(f"DROP DATABASE IF EXISTS {db}")
        return True
    except Exception:  # noqa: BLE001
        return False


def config(env: TestEnv, **loader: Any) -> Config:
    s = env.settings()
    s["clickhouse_loader"].update(loader)
    return load_config(str(env.write_config(s)))


def columns_of(cfg: Config, extra: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{"column": c.column, "field": c.field, "type": c.type, "money": c.money}
            for c in cfg.clickhouse_loader.columns] + extra


def test_setup_twice_changes_nothing_the_second_time_and_follows_new_columns(env: TestEnv, client: Client) -> None:
    cfg = config(env)
    first = clickhouse_loader.setup(cfg)
    assert [line.split(": ", 1)[1] for line in first] == [
        f"created database {env.db}", f"created table {env.db}.events", f"created table {env.db}.stats_hourly",
        f"created table {env.db}.events_input", f"created view {env.db}.events_mv",
        f"created view {env.db}.stats_hourly_mv"]
    assert clickhouse_loader.setup(cfg) == []
    engines = dict(client.execute(f"SELECT name, engine FROM system.tables WHERE database = '{env.db}'"))
    assert engines == {"events": "ReplicatedMergeTree", "stats_hourly": "ReplicatedSummingMergeTree",
                       "events_input": "Null", "events_mv": "MaterializedView", "stats_hourly_mv": "MaterializedView"}

    wider = config(env, columns=columns_of(cfg, [{"column": "referrer", "type": "String"}]))
    assert [line.split(": ", 1)[1] for line in clickhouse_loader.setup(wider)] == [
        f"added column referrer String to {env.db}.events", f"added column referrer String to {env.db}.events_input"]
    assert clickhouse_loader.setup(wider) == []

    retyped = config(env, columns=columns_of(cfg, [{"column": "referrer", "type": "UInt32"}]))
    with pytest.raises(SetupError, match="events does not match the configuration: referrer is String, the config "
                                         "says UInt32"):
        clickhouse_loader.setup(retyped)
    regrouped = config(env, stats={"dimensions": ["campaign_id", "country"]})
    with pytest.raises(SetupError, match="stats_hourly does not match the configuration"):
        clickhouse_loader.setup(regrouped)


def block(cfg: Config, first_offset: int, cost: str, n: int = 4, partition: int = 0) -> list[tuple[Any, ...]]:
    """n click rows of campaign 1 at offsets first_offset.., exactly as the loader builds them."""
    store = SchemaStore.load(cfg.events.schema_dir)
    parser = EventParser(store, cfg.events, cfg.kafka.topics.prefix, 3, "h")
    mapper = RowMapper(cfg.clickhouse_loader.columns)
    rows = []
    for i in range(n):
        offset = first_offset + i
        line = json.dumps({"type": "click", "id": f"c{partition}-{offset}", "time": 1_710_064_800,
                           "campaign_id": 1, "cost": cost})
        event = parser.parse(line.encode(), "t", 0, lambda: "x")
        entry, record = Decoder(store).decode(encode(event.schema, event.record))
        rows.append(mapper.row(entry, record, Message("t.click", partition, offset, None, b"", 0)))
    return rows


def insert(client: Client, table: str, cfg: Config, rows: list[tuple[Any, ...]]) -> None:
    names = [n for n, _ in RowMapper(cfg.clickhouse_loader.columns).column_types()]
    client.execute(f"INSERT INTO {table} ({', '.join(names)}) VALUES", [list(c) for c in zip(*rows)],
                   columnar=True)


def totals(client: Client, db: str) -> tuple[int, int, int]:
    events = client.execute(f"SELECT count() FROM {db}.events")[0][0]
    n, cost = client.execute(f"SELECT sum(events), sum(cost_micros) FROM {db}.stats_hourly")[0]
    return events, n, cost


def test_tables_drop_a_retried_block_everywhere_and_complete_a_half_written_one(env: TestEnv, client: Client) -> None:
    cfg = config(env)
    clickhouse_loader.setup(cfg)
    db = env.db
    x = block(cfg, 0, "0.5")
    insert(client, f"{db}.events_input", cfg, x)
    insert(client, f"{db}.events_input", cfg, x)                 # the retry of an identical block
    assert totals(client, db) == (4, 4, 2_000_000)

    insert(client, f"{db}.events_input", cfg, block(cfg, 4, "0.5"))    # next block, equal sums
    insert(client, f"{db}.events_input", cfg, block(cfg, 0, "0.5", partition=1))  # other partition
    assert totals(client, db) == (12, 12, 6_000_000)

    # An INSERT that failed after events had the block and before stats_hourly did:
    half = block(cfg, 8, "1.25")
    insert(client, f"{db}.events", cfg, half)
    assert totals(client, db) == (16, 12, 6_000_000)
    insert(client, f"{db}.events_input", cfg, half)              # the loader's retry completes it
    assert totals(client, db) == (16, 16, 11_000_000)
    insert(client, f"{db}.events_input", cfg, half)
    assert totals(client, db) == (16, 16, 11_000_000)
