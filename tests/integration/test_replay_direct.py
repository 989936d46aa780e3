"""``eventd replay --to clickhouse|balances|hdfs`` against the real services, through each role's
own sink: exact totals and rejects, a second run that changes nothing, and a kill -9 at the
worst line — after the sink took a block, before the replay recorded it (the roles'
failpoints) — followed by a re-run."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import avro.datafile
import avro.io
import pymysql
import pytest
from clickhouse_driver import Client

from eventd.replay.command import EXIT_REJECTED
from eventd.replay.testdata import Expected, generate
from harness import REPO, TestEnv, hdfs_get, hdfs_walk, wait_for

# Lines of one generated file: three blocks of the direct targets (10,000 lines each).
LINES = 21_000
HDFS_LINES = 12_000     # two blocks; each block is a dozen files (types × event hours), each placed slowly


def settings(env: TestEnv, keep: str) -> dict[str, Any]:
    s = env.settings()
    for role in ("collector", "clickhouse_loader", "balance_aggregator", "hdfs_uploader"):
        if role != keep:
            s[role]["enabled"] = False
    return s


def setup(config: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "eventd", "setup", "-c", str(config)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr


def replay(config: Path, to: str, path: Path, failpoints: str | None = None) -> tuple[int, dict[str, str], str]:
    env = {**os.environ}
    env.pop("EVENTD_FAILPOINTS", None)
    if failpoints:
        env["EVENTD_FAILPOINTS"] = failpoints
    r = subprocess.run([sys.executable, "-m", "eventd", "replay", str(path), "--to", to, "-c", str(config),
                        "--rejects", str(path) + ".rejects"], cwd=REPO, capture_output=True, text=True,
                       timeout=600, env=env)
    return r.returncode, figures(r.stdout), r.stdout + r.stderr


def figures(text: str) -> dict[str, str]:
    out = {l.split(":")[0].strip(): l.split(":")[1].split()[0].replace(",", "")
           for l in text.splitlines() if l.startswith("  ") and ":" in l}
    m = re.search(r"\(([\d,]+) delivered by an earlier run, ([\d,]+) already in", text)
    if m:
        out["delivered before"], out["already in"] = (g.replace(",", "") for g in m.groups())
    return out


def rejects(path: Path) -> dict[int, str]:
    return {json.loads(l)["line"]: json.loads(l)["reason"] for l in Path(str(path) + ".rejects").read_text().splitlines()}


def first_run_is_exact(code: int, fig: dict[str, str], log: str, exp: Expected, path: Path) -> None:
    assert code == EXIT_REJECTED, log
    assert fig["lines read"] == str(exp.lines) and fig["accepted"] == str(exp.events), log
    assert fig["rejected"] == str(len(exp.rejects))
    assert rejects(path).keys() == exp.rejects.keys()


def rerun_changes_nothing(config: Path, to: str, path: Path, exp: Expected) -> None:
    code, fig, log = replay(config, to, path)
    assert code == EXIT_REJECTED, log
    assert fig["accepted"] == "0" and fig["delivered before"] == str(exp.events), log
    assert rejects(path).keys() == exp.rejects.keys()


def killed_then_rerun(config: Path, to: str, path: Path, failpoint: str, exp: Expected,
                      blocks_recorded: int = 1) -> dict[str, str]:
    """Run until the failpoint kills the process; then the same command again finishes the job,
    skipping the ``blocks_recorded`` blocks the killed run recorded."""
    code, fig, log = replay(config, to, path, failpoints=failpoint)
    assert code == -9, f"the failpoint {failpoint} was not reached:\n{log}"
    code, fig, log = replay(config, to, path)
    assert code == EXIT_REJECTED, log
    done = int(fig["delivered before"]) + int(fig["already in"]) + int(fig["accepted"])
    assert done == exp.events, log
    assert 9_000 * blocks_recorded <= int(fig["delivered before"]) <= 10_000 * blocks_recorded, log
    return fig


# -- ClickHouse -------------------------------------------------------------------------------------
@pytest.fixture
def clickhouse(env: TestEnv) -> Iterator[Client]:
    client = Client("127.0.0.1", 9000, connect_timeout=5, send_receive_timeout=60)
    yield client
    wait_for(lambda: _drop(client, env.db), 120, f"dropping {env.db}", interval=2)
    client.disconnect()


def _drop(client: Client, db: str) -> bool:
    try:
        client.execute(f"DROP DATABASE IF EXISTS {db}")
        return True
    except Exception:  # noqa: BLE001 - ClickHouse busy: try again
        return False


def clickhouse_exact(client: Client, db: str, exp: Expected) -> None:
    count, unique = client.execute(f"SELECT count(), uniqExact(id) FROM {db}.events")[0]
    assert (count, unique) == (exp.events, exp.events)
    assert {r[0] for r in client.execute(f"SELECT DISTINCT id FROM {db}.events")} == exp.ids
    assert dict(client.execute(f"SELECT type, sum(events) FROM {db}.stats_hourly GROUP BY type")) == exp.by_type
    sums = client.execute(f"SELECT campaign_id, sum(cost_micros), sum(revenue_micros) FROM {db}.stats_hourly "
                          f"GROUP BY campaign_id")
    assert {c: (cost, rev) for c, cost, rev in sums} == {c: (exp.cost[c], exp.revenue[c]) for c in exp.cost}
    inputs = client.execute(f"SELECT DISTINCT input, kafka_topic FROM {db}.events")
    assert all(i == "replay" and topic.startswith("eventd-replay-") for i, topic in inputs)


def test_clickhouse_exact_then_rerun_changes_nothing_then_kill_after_insert_is_exact(
        env: TestEnv, clickhouse: Client) -> None:
    config = env.write_config(settings(env, "clickhouse_loader"))
    setup(config)
    path = env.tmp / "legacy.json.gz"
    exp = generate(str(path), LINES, seed=11)
    first_run_is_exact(*replay(config, "clickhouse", path), exp, path)
    clickhouse_exact(clickhouse, env.db, exp)
    rerun_changes_nothing(config, "clickhouse", path, exp)
    clickhouse_exact(clickhouse, env.db, exp)

    # A second file, killed right after its second block went into ClickHouse and before the
    # replay recorded it: the re-run rebuilds that identical block and ClickHouse drops it.
    other = env.tmp / "other.json"
    exp2 = generate(str(other), LINES, seed=12)
    killed_then_rerun(config, "clickhouse", other, "clickhouse_loader.after_insert=2", exp2)
    both = Expected(events=exp.events + exp2.events, ids=exp.ids | exp2.ids, by_type=exp.by_type + exp2.by_type,
                    cost=exp.cost + exp2.cost, revenue=exp.revenue + exp2.revenue)
    clickhouse_exact(clickhouse, env.db, both)


# -- balances -----------------------------------------------------------------------------------------
def mariadb(db: str) -> pymysql.Connection:
    return pymysql.connect(host="127.0.0.1", port=3306, user="eventd", password="eventd", database=db,
                           autocommit=True)


def micros(value: Decimal) -> int:
    return int(value.scaleb(6))


OWNER = {c: 100 + c % 3 for c in range(1, 8)}     # campaign → its advertiser account
PUBLISHERS = range(200, 205)


def add_world(db: str) -> None:
    conn = mariadb(db)
    with conn.cursor() as cur:
        cur.executemany("INSERT INTO campaigns (id, advertiser_id) VALUES (%s, %s)", list(OWNER.items()))
        cur.executemany("INSERT INTO accounts (id) VALUES (%s)", [(a,) for a in {*OWNER.values(), *PUBLISHERS}])
    conn.close()


def balances_exact(db: str, exp: Expected) -> None:
    conn = mariadb(db)
    with conn.cursor() as cur:
        cur.execute("SELECT id, spent FROM campaigns")
        assert {c: micros(v) for c, v in cur.fetchall()} == {c: exp.cost[c] for c in OWNER}
        cur.execute("SELECT campaign_id, SUM(spent) FROM campaign_daily_spend GROUP BY campaign_id")
        assert {c: micros(v) for c, v in cur.fetchall()} == {c: exp.cost[c] for c in OWNER}
        cur.execute("SELECT id, balance FROM accounts")
        expected = Counter({p: exp.earned[p] for p in PUBLISHERS})
        for c, owner in OWNER.items():
            expected[owner] -= exp.cost[c]
        assert {a: micros(v) for a, v in cur.fetchall()} == dict(expected)
    conn.close()


def test_balances_exact_then_rerun_changes_nothing_then_kill_after_commit_is_exact(env: TestEnv) -> None:
    config = env.write_config(settings(env, "balance_aggregator"))
    setup(config)
    add_world(env.db)
    path = env.tmp / "legacy.json"
    exp = generate(str(path), LINES, seed=21)
    first_run_is_exact(*replay(config, "balances", path), exp, path)
    balances_exact(env.db, exp)
    rerun_changes_nothing(config, "balances", path, exp)
    balances_exact(env.db, exp)

    # Killed right after the second block's transaction committed, before the replay recorded it:
    # the stored offset of the input (moved in that transaction) keeps the block from counting twice.
    other = env.tmp / "other.json"
    exp2 = generate(str(other), LINES, seed=22)
    fig = killed_then_rerun(config, "balances", other, "balance_aggregator.after_commit=2", exp2)
    assert 9_000 <= int(fig["already in"]) <= 10_000, fig    # the committed, unrecorded second block
    balances_exact(env.db, Expected(cost=exp.cost + exp2.cost, earned=exp.earned + exp2.earned))


# -- HDFS ---------------------------------------------------------------------------------------------
def hdfs_records(base: str) -> tuple[list[dict], list[str]]:
    """Every record of every final file below ``base``, and the names of leftover temporary files."""
    records, tmp = [], []
    for path, _ in hdfs_walk(base):
        if "/_tmp/" in path:
            tmp.append(path)
            continue
        records += list(avro.datafile.DataFileReader(io.BytesIO(hdfs_get(path, "OPEN")), avro.io.DatumReader()))
    return records, tmp


def hdfs_exact(base: str, exp: Expected) -> None:
    records, tmp = hdfs_records(base)
    assert tmp == []
    assert len(records) == exp.events and {r["id"] for r in records} == exp.ids
    assert Counter(r["type"] for r in records) == exp.by_type
    cost = Counter()
    for r in records:
        cost[r["campaign_id"]] += r["cost"]
    assert cost == exp.cost


def test_hdfs_exact_then_rerun_changes_nothing_then_kill_after_rename_is_exact(env: TestEnv) -> None:
    config = env.write_config(settings(env, "hdfs_uploader"))
    setup(config)
    path = env.tmp / "legacy.json"
    exp = generate(str(path), HDFS_LINES, seed=31)
    first_run_is_exact(*replay(config, "hdfs", path), exp, path)
    hdfs_exact(env.hdfs_base, exp)
    rerun_changes_nothing(config, "hdfs", path, exp)
    hdfs_exact(env.hdfs_base, exp)

    # Killed after some files of the first block were renamed into place, before the block was
    # recorded: the re-run regenerates the block under the same names and keeps what is in place.
    other = env.tmp / "other.json"
    exp2 = generate(str(other), HDFS_LINES, seed=32)
    killed_then_rerun(config, "hdfs", other, "hdfs-after-rename=3", exp2, blocks_recorded=0)
    hdfs_exact(env.hdfs_base, Expected(events=exp.events + exp2.events, ids=exp.ids | exp2.ids,
                                       by_type=exp.by_type + exp2.by_type, cost=exp.cost + exp2.cost))
