"""The whole pipeline as ``eventd run`` runs it, for tests that drive all roles at once (the daemon
tests and the fault-injection suite): provisioning, the daemon, a client that posts events to the
collector and remembers which were accepted, and readers of every sink's public tables and files."""

from __future__ import annotations

import http.client
import io
import json
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
from clickhouse_driver import Client
from daemon_process import DaemonProcess, Procs, all_running
from harness import NAMENODE, REPO, TestEnv, free_port, hdfs_get, hdfs_walk, mariadb, sql, wait_for

ROLES = ("collector", "clickhouse-loader", "balance-aggregator", "hdfs-uploader")
CAMPAIGNS = {1: 501, 2: 501, 3: 502, 4: 503}        # campaign → advertiser account
PUBLISHERS = (601, 602)
TYPES = ("impression", "click", "conversion")


# -- the world: config, provisioning, the daemon -----------------------------------------------
def free_range(n: int) -> int:
    """A base port with ``n`` free consecutive ports (one metrics endpoint per role process)."""
    for _ in range(50):
        base = free_port()
        if base + n < 65536 and all(_bindable(base + i) for i in range(n)):
            return base
    raise RuntimeError("no free port range")


def _bindable(port: int) -> bool:
    import socket
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def daemon_settings(env: TestEnv) -> dict[str, Any]:
    s = env.settings()
    s["metrics"] = {"enabled": True, "listen": f"127.0.0.1:{free_range(len(ROLES))}"}
    s["daemon"].update({"stop_timeout": "20s", "start_seconds": "2s", "restart_backoff": "500ms",
                        "restart_backoff_max": "5s"})
    s["collector"]["drain_timeout"] = "10s"
    return s


class Daemon(DaemonProcess):
    """``eventd run`` as a child process, its log in the test's directory."""

    def __init__(self, env: TestEnv, config: Path, name: str = "daemon") -> None:
        super().__init__([sys.executable, "-m", "eventd", "run", "-c", str(config)], config,
                         env.tmp / f"{name}.log", b"eventd.daemon.child")
        assert config.parent == env.tmp, "the run directory is the test directory's run/"

    def wait_serving(self, roles: tuple[str, ...] = ROLES, timeout: float = 120) -> Procs:
        """Every process of ``roles`` RUNNING with its metrics endpoint up (its role code runs)."""
        return self.wait(all_running({f"{r}-0" for r in roles}), timeout, f"{', '.join(roles)} running")


def setup(config: Path) -> None:
    r = subprocess.run([sys.executable, "-m", "eventd", "setup", "-c", str(config)], cwd=REPO,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, f"eventd setup failed:\n{r.stdout}\n{r.stderr}"


def add_campaigns(db: str) -> None:
    conn = mariadb(db)
    try:
        with conn.cursor() as cur:
            cur.executemany("INSERT INTO campaigns (id, advertiser_id) VALUES (%s, %s)", list(CAMPAIGNS.items()))
            cur.executemany("INSERT INTO accounts (id) VALUES (%s)",
                            [(a,) for a in sorted(set(CAMPAIGNS.values()) | set(PUBLISHERS))])
    finally:
        conn.close()


def provision(env: TestEnv, settings: dict[str, Any]) -> Path:
    """Write the config, run ``eventd setup`` (topics, ClickHouse and MariaDB tables, HDFS base)
    and add the test campaigns and accounts; returns the config path. Undo with :func:`teardown`."""
    config = env.write_config(settings)
    setup(config)
    add_campaigns(env.db)
    return config


def teardown(env: TestEnv) -> None:
    """Drop what :func:`provision` made: the MariaDB and ClickHouse databases and the HDFS base."""
    conn = mariadb()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{env.db}`")
    conn.close()
    ch = Client("127.0.0.1", 9000, connect_timeout=5)
    wait_for(lambda: _drop_clickhouse(ch, env.db), 120, f"dropping {env.db}", interval=2)
    ch.disconnect()
    try:
        urllib.request.urlopen(urllib.request.Request(
            f"{NAMENODE}{env.hdfs_base}?op=DELETE&recursive=true&user.name=eventd", method="DELETE"), timeout=30)
    except OSError:
        pass


def _drop_clickhouse(client: Client, db: str) -> bool:
    try:
        client.execute(f"DROP DATABASE IF EXISTS {db}")
        return True
    except Exception:  # noqa: BLE001 - a transient ClickHouse error: try again
        return False


# -- events in, and what every sink must hold ----------------------------------------------------
class Sender:
    """Posts events to the collector's HTTP input and keeps those it accepted (``accepted``: the
    collector answered 202, so it is responsible for them) apart from every event it offered
    (``offered``, by id: an event whose answer was lost may still be delivered, once)."""

    def __init__(self, env: TestEnv, run: str) -> None:
        self.port, self.run = env.http_port, run
        self.accepted: list[dict[str, Any]] = []
        self.offered: dict[str, dict[str, Any]] = {}
        self.answers: Counter[str] = Counter()     # HTTP status or error class → requests
        self.seq = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def batch(self, n: int) -> list[dict[str, Any]]:
        out = []
        for _ in range(n):
            self.seq += 1
            i = self.seq
            campaign = 1 + i % len(CAMPAIGNS)
            out.append({"id": f"{self.run}-{i}", "type": TYPES[i % 3], "time": int(time.time() * 1000),
                        "campaign_id": campaign, "advertiser_id": CAMPAIGNS[campaign],
                        "publisher_id": PUBLISHERS[i % 2], "site_id": 10 + i % 3, "zone_id": 100,
                        "cost": str(Decimal(i % 997 + 1) / 10**6 * 7), "revenue": str(Decimal(i % 13) / 10**6)})
        return out

    def post(self, events: list[dict[str, Any]]) -> bool:
        """True when the collector accepted the batch (then it is responsible for every event)."""
        body = b"".join(json.dumps(e).encode() + b"\n" for e in events)
        self.offered.update((e["id"], e) for e in events)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            conn.request("POST", "/v1/events", body, {"Content-Type": "application/x-ndjson"})
            resp = conn.getresponse()
            doc = json.loads(resp.read())
            conn.close()
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self.answers[type(exc).__name__] += 1
            return False
        self.answers[str(resp.status)] += 1
        if resp.status == 202:            # accepted: in the collector's durable queue
            assert doc["accepted"] == len(events) and doc["rejected"] == 0, doc
            self.accepted.extend(events)
            return True
        return False

    def send(self, n: int, size: int = 50) -> None:
        for _ in range(0, n, size):
            events = self.batch(size)
            wait_for(lambda: self.post(events), 60, "the collector to accept a batch")

    def start_stream(self, per_batch: int = 20, pause: float = 0.1) -> None:
        """Post batches in the background until :meth:`stop_stream`; a refused batch is not counted
        (and not retried: the collector may be stopping)."""
        def loop() -> None:
            while not self._stop.is_set():
                self.post(self.batch(per_batch))
                time.sleep(pause)
        self._stop.clear()
        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop_stream(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(60)


def micros(value: str) -> int:
    return int(Decimal(value) * 10**6)


class Expected:
    def __init__(self, events: list[dict[str, Any]]) -> None:
        self.ids = {e["id"] for e in events}
        assert len(self.ids) == len(events)
        self.stats: Counter[tuple[str, int]] = Counter()
        self.cost: Counter[tuple[str, int]] = Counter()
        self.spent: Counter[int] = Counter()
        self.balance: Counter[int] = Counter()
        for e in events:
            self.stats[(e["type"], e["campaign_id"])] += 1
            self.cost[(e["type"], e["campaign_id"])] += micros(e["cost"])
            self.spent[e["campaign_id"]] += micros(e["cost"])
            self.balance[e["advertiser_id"]] -= micros(e["cost"])
            self.balance[e["publisher_id"]] += micros(e["revenue"])


def clickhouse_stats(db: str) -> tuple[Counter, Counter]:
    ch = Client("127.0.0.1", 9000, connect_timeout=5, send_receive_timeout=30)
    try:
        rows = ch.execute(f"SELECT type, campaign_id, sum(events), sum(cost_micros) FROM {db}.stats_hourly "
                          f"GROUP BY type, campaign_id")
    except Exception:  # noqa: BLE001 - not there yet
        return Counter(), Counter()
    finally:
        ch.disconnect()
    return Counter({(t, c): n for t, c, n, _ in rows}), Counter({(t, c): s for t, c, _, s in rows})


def balances(db: str) -> tuple[Counter, Counter]:
    spent = Counter({c: micros(str(s)) for c, s in sql(db, "SELECT id, spent FROM campaigns") if s})
    bal = Counter({a: micros(str(b)) for a, b in sql(db, "SELECT id, balance FROM accounts") if b})
    return spent, bal


def hdfs_ids(base: str) -> Counter[str]:
    """Event ids in the archive's published Avro files (what readers of the archive see)."""
    ids: Counter[str] = Counter()
    for path, _ in hdfs_walk(base):
        if "/_tmp/" in path or path.rsplit("/", 1)[1].startswith(("_", ".")):
            continue
        ids.update(r["id"] for r in fastavro.reader(io.BytesIO(hdfs_get(path, "OPEN"))))
    return ids


def assert_sinks_exact(env: TestEnv, events: list[dict[str, Any]], sinks: tuple[str, ...] = ("clickhouse",
                       "balances", "hdfs"), timeout: float = 150) -> None:
    """Wait until every sink holds as many events as were accepted, then compare exactly."""
    want = Expected(events)
    n = len(events)
    if "clickhouse" in sinks:
        wait_for(lambda: sum(clickhouse_stats(env.db)[0].values()) >= n, timeout, f"{n} events in ClickHouse", 1)
    if "balances" in sinks:
        wait_for(lambda: sum(balances(env.db)[0].values()) >= sum(want.spent.values()), timeout,
                 "every cost in MariaDB", 1)
    if "hdfs" in sinks:
        wait_for(lambda: sum(hdfs_ids(env.hdfs_base).values()) >= n, timeout, f"{n} events in HDFS", 2)
    time.sleep(3)     # duplicates, if any, would show up now
    if "clickhouse" in sinks:
        stats, cost = clickhouse_stats(env.db)
        assert stats == want.stats and cost == want.cost
    if "balances" in sinks:
        spent, bal = balances(env.db)
        assert dict(spent) == nonzero(want.spent) and dict(bal) == nonzero(want.balance)
    if "hdfs" in sinks:
        ids = hdfs_ids(env.hdfs_base)
        assert set(ids) == want.ids and max(ids.values()) == 1


def nonzero(c: Counter) -> dict:
    return {k: v for k, v in c.items() if v}


def pids(procs: dict[str, dict[str, Any]]) -> dict[str, int]:
    return {k: v["pid"] for k, v in procs.items()}


def clickhouse_ids(db: str) -> Counter[str]:
    """Rows per event id in ClickHouse's ``events`` table (a count above 1 is a duplicate)."""
    ch = Client("127.0.0.1", 9000, connect_timeout=5, send_receive_timeout=30)
    try:
        return Counter(dict(ch.execute(f"SELECT id, count() FROM {db}.events GROUP BY id")))
    except Exception:  # noqa: BLE001 - ClickHouse down or the table not there yet: nothing seen
        return Counter()
    finally:
        ch.disconnect()


def set_budgets(db: str, budgets: dict[int, int]) -> None:
    """Give campaigns a total budget, in micro-units."""
    for campaign, budget in budgets.items():
        sql(db, "UPDATE campaigns SET total_budget = %s WHERE id = %s", (Decimal(budget) / 10**6, campaign))


def campaign_states(db: str) -> dict[int, tuple[str, int, int, int | None]]:
    """campaign → (status, spent, overspend, total_budget), money in micro-units."""
    rows = sql(db, "SELECT id, status, spent, overspend, total_budget FROM campaigns")
    return {c: (st, micros(str(sp)), micros(str(ov)), None if b is None else micros(str(b)))
            for c, st, sp, ov, b in rows}


def control_stops(env: TestEnv) -> Counter[int]:
    """campaign → distinct ``campaign_stopped`` event ids on the control topic (1 = stopped once)."""
    from harness import consume_all
    ids: dict[int, set[str]] = {}
    for record in consume_all([f"{env.prefix}_control"], 10**9, timeout=5):
        event = json.loads(record.value)
        if event.get("type") == "campaign_stopped":
            ids.setdefault(event["campaign_id"], set()).add(event["id"])
    return Counter({c: len(v) for c, v in ids.items()})
