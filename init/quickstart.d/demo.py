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
    lines, cost = sample(n)
    accepted = post(base, lines)
    print(f"sent {n} events, {accepted} accepted; total cost {cost}")
    check_sinks(cfg, accepted, cost)
    print("\neventd keeps running: `eventd status`, `init/quickstart stop`; log in /var/log/eventd.log")
    return 0


def sample(n: int) -> tuple[list[bytes], Decimal]:
    rng, now, total = random.Random(7), int(time.time()), Decimal(0)
    lines = []
    for i in range(n):
        kind = rng.choices(["impression", "click", "conversion"], [90, 9, 1])[0]
        cost = Decimal(rng.randint(1, 5000)) / 1_000_000 if kind == "impression" else Decimal("0.25")
        total += cost
        c = rng.choice(CAMPAIGNS)
        lines.append(json.dumps({"type": kind, "time": now, "campaign_id": c, "advertiser_id": 1000 + c,
                                 "publisher_id": 2000 + c % 5, "site_id": 100 + c % 7, "zone_id": c % 3,
                                 "country": rng.choice(["DE", "FR", "US"]), "device": "mobile",
                                 "cost": str(cost), "revenue": str(cost / 2)}).encode())
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
            accepted += json.load(answer)["accepted"]
    return accepted


def check_sinks(cfg: Any, n: int, cost: Decimal) -> None:
    dest = cfg.clickhouse_loader.destinations[0]
    ch = Client(dest.hosts[0][0], port=dest.hosts[0][1], user=dest.user, password=dest.password.value)
    wait(f"ClickHouse {dest.name}: {n} events in stats_hourly",
         lambda: _show("ClickHouse", ch.execute(f"SELECT sum(events) FROM {dest.database}.stats_hourly")[0][0] or 0, n),
         300)
    m, t = cfg.balance_aggregator.mariadb, cfg.balance_aggregator.tables
    db = pymysql.connect(host=m.host, port=m.port, user=m.user, password=m.password.value, database=m.database,
                         autocommit=True)

    def spent() -> Decimal:
        with db.cursor() as cur:
            cur.execute(f"SELECT COALESCE(SUM({t.campaigns.spent}), 0) FROM {t.campaigns.table}")
            return cur.fetchone()[0]
    wait(f"MariaDB: campaigns spent >= {cost}", lambda: _show("MariaDB spent", spent(), cost), 300)
    h = cfg.hdfs_uploader
    hdfs = WebHdfs(h.namenode_host, h.namenode_port, h.user, h.timeout)

    def archived() -> int:
        types = [e["pathSuffix"] for e in hdfs.list(h.base_dir) if e["pathSuffix"].startswith("type=")]
        return len(types)
    wait(f"HDFS: event types archived under {h.base_dir}", lambda: _show("HDFS type= directories", archived(), 3),
         300)


def _show(what: str, got: Any, want: Any) -> bool:
    print(f"  {what}: {got} (waiting for {want})", flush=True)
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
