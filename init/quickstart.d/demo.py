"""The quickstart's last step: send sample events to the running collector over HTTP, then
show them arriving in ClickHouse, MariaDB and HDFS. Uses only eventd's config and the
clients eventd itself depends on."""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
import urllib.request
from decimal import Decimal
from typing import Any, Callable

import pymysql
from clickhouse_driver import Client

from eventd.config import load_config
from eventd.roles.hdfs_uploader.webhdfs import WebHdfs

CAMPAIGNS = range(1, 21)


def main() -> int:
    args = argparse.ArgumentParser()
    args.add_argument("--events", type=int, default=5000)
    n = args.parse_args().events
    cfg = load_config(os.environ.get("EVENTD_CONFIG", "/etc/eventd/eventd.yaml"))
    base = f"http://{cfg.collector.http.host}:{cfg.collector.http.port}"
    wait("the collector to answer", lambda: _get(base + "/healthz") == 200, 120)
    seed_campaigns(cfg)
    sinks = Sinks(cfg)
    before = sinks.totals()
    lines, cost = sample(n)
    accepted = post(base, lines)
    print(f"sent {n} events, {accepted} accepted; total cost {cost}")
    if accepted != n:
        sys.exit("the collector rejected sample events: see the errors above")
    sinks.wait_for(before[0] + accepted, before[1] + cost)
    print("\neventd keeps running: `eventd status`, `init/quickstart stop`; log in /var/log/eventd.log")
    return 0


def sample(n: int) -> tuple[list[bytes], Decimal]:
    rng, now, total = random.Random(7), int(time.time()), Decimal(0)
    lines = []
    for i in range(n):
        kind = rng.choices(["impression", "click", "conversion"], [90, 9, 1])[0]
        micros = rng.randint(1, 5000) if kind == "impression" else 250_000
        cost, revenue = Decimal(micros).scaleb(-6), Decimal(micros // 2).scaleb(-6)
        total += cost
        c = rng.choice(CAMPAIGNS)
        lines.append(json.dumps({"type": kind, "time": now, "campaign_id": c, "advertiser_id": 1000 + c,
                                 "publisher_id": 2000 + c % 5, "site_id": 100 + c % 7, "zone_id": c % 3,
                                 "country": rng.choice(["DE", "FR", "US"]), "device": "mobile",
                                 "cost": str(cost), "revenue": str(revenue)}).encode())
    return lines, total


def seed_campaigns(cfg: Any) -> None:
    """Campaigns and accounts must exist for their events to be charged (else: dead letters)."""
    m, t = cfg.balance_aggregator.mariadb, cfg.balance_aggregator.tables
    db = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password.value, database=m.database,
                         autocommit=True)
    with db.cursor() as cur:
        for c in CAMPAIGNS:
            cur.execute(f"INSERT IGNORE INTO {t.campaigns.table} ({t.campaigns.id}, {t.campaigns.advertiser}) "
                        "VALUES (%s, %s)", (c, 1000 + c))
            for account in (1000 + c, 2000 + c % 5):
                cur.execute(f"INSERT IGNORE INTO {t.accounts.table} ({t.accounts.id}) VALUES (%s)", (account,))
    db.close()


def post(base: str, lines: list[bytes]) -> int:
    accepted = 0
    for i in range(0, len(lines), 500):
        req = urllib.request.Request(base + "/v1/events", data=b"\n".join(lines[i:i + 500]), method="POST")
        with urllib.request.urlopen(req, timeout=30) as answer:
            reply = json.load(answer)
        accepted += reply["accepted"]
        for error in reply.get("errors", [])[:3]:
            print(f"  rejected line {i + error['line']}: {error['error']}")
    return accepted


class Sinks:
    """Reads the totals the demo checks: events in ClickHouse's statistics, money in MariaDB,
    event types in HDFS. A re-run waits for its own events on top of what was there."""

    def __init__(self, cfg: Any) -> None:
        self.dest = cfg.clickhouse_loader.destinations[0]
        host, port = self.dest.hosts[0]
        self.ch = Client(host, port=port, user=self.dest.user, password=self.dest.password.value)
        m, self.t = cfg.balance_aggregator.mariadb, cfg.balance_aggregator.tables
        self.db = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password.value,
                                  database=m.database, autocommit=True)
        self.h = cfg.hdfs_uploader
        self.hdfs = WebHdfs(self.h.namenode_host, self.h.namenode_port, self.h.user, self.h.timeout)

    def events(self) -> int:
        return self.ch.execute(f"SELECT sum(events) FROM {self.dest.database}.stats_hourly")[0][0] or 0

    def spent(self) -> Decimal:
        with self.db.cursor() as cur:
            cur.execute(f"SELECT COALESCE(SUM({self.t.campaigns.spent}), 0) FROM {self.t.campaigns.table}")
            return cur.fetchone()[0]

    def archived_types(self) -> int:
        return len([e for e in self.hdfs.list(self.h.base_dir) if e["pathSuffix"].startswith("type=")])

    def totals(self) -> tuple[int, Decimal]:
        return self.events(), self.spent()

    def wait_for(self, events: int, spent: Decimal) -> None:
        wait(f"ClickHouse {self.dest.name}: {events} events in stats_hourly",
             lambda: _show("ClickHouse events", self.events(), events), 300)
        wait(f"MariaDB: campaigns spent {spent}", lambda: _show("MariaDB spent", self.spent(), spent), 300)
        wait(f"HDFS: event types archived under {self.h.base_dir}",
             lambda: _show("HDFS type= directories", self.archived_types(), 3), 300)


def _show(what: str, got: Any, want: Any) -> bool:
    print(f"  {what}: {got} (waiting for {want})", flush=True)
    if got > want and what != "HDFS type= directories":
        sys.exit(f"{what}: {got} is MORE than the {want} expected: something was counted twice")
    return got >= want


def _get(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=2) as answer:
            return answer.status
    except OSError:
        return 0


def wait(what: str, ok: Callable[[], bool], timeout: float) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if ok():
                print(f"OK: {what}")
                return
        except Exception as exc:  # a sink not ready yet: keep waiting, say why
            print(f"  ({what}: {exc})")
        time.sleep(3)
    sys.exit(f"timed out waiting for {what}; see /var/log/eventd.log and `eventd status`")


if __name__ == "__main__":
    sys.exit(main())
