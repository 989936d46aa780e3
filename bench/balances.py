"""Balance aggregator vs the raw capacity of the same MariaDB for the same set of updates.

eventd: the aggregator consumes N balance events (impressions, clicks, conversions, all with money)
from Kafka and applies them in windows (1 s, its default) to a database made by ``eventd setup``,
MariaDB at ``innodb_flush_log_at_trx_commit=1``. The clock runs from starting the process until the
offsets table — written in the same transaction as the money — covers all N events.

Peer ("raw capacity"): the same events' sums, computed beforehand, applied to a second database of
the same schema with the aggregator's own set-based statements (``ledger.TEMP_TABLES``, ``UNKNOWN``,
``APPLY``) plus the guarded offsets update, one transaction per window, from this process. Only the
SQL is timed: no Kafka, no decoding, no aggregation. The window holds as many events as the
aggregator's window held at its measured rate (rate × 1 s), so both sides send the same statements
for the same windows. Both end states are checked against the generator's exact totals.
"""

from __future__ import annotations

import sys
import time
from datetime import date
from pathlib import Path

from bench import gen, stack
from bench.common import Ctx, Progress, Result, Watch, repeat, say, wait_until
from bench.stack import EventdEnv

PARTITIONS = 6
DAY = date(2026, 1, 1)


def _connect(db: str | None = None):  # type: ignore[no-untyped-def]
    import pymysql
    return pymysql.connect(host="127.0.0.1", port=3306, user="eventd", password="eventd", database=db,
                           autocommit=False)


def _sql(config: Path):  # type: ignore[no-untyped-def]
    from eventd.config import load_config
    from eventd.roles.balance_aggregator.schema import Sql
    return Sql(load_config(str(config)).balance_aggregator.tables)


class Setup:
    def __init__(self, ctx: Ctx, n: int) -> None:
        self.ctx = ctx
        self.env = EventdEnv(ctx.work / "balances", PARTITIONS)
        self.base = self.env.write_config(self.env.settings(("balance-aggregator",)), "base.yaml")
        self.data, self.totals = gen.lines(n, seed=5, tag="B")
        say(f"balances: encoding and producing {n:,} Avro events")
        self.messages = gen.avro_messages(self.data, str(self.base))
        self.env.setup(self.base)
        positions = stack.produce(self.messages)
        self.topics = self.env.event_topics()
        # (topic, partition, offset, campaign, cost, publisher, revenue) in Kafka order per partition
        self.charges = sorted(((t, p, o) + _money(line) for (t, _, _), (p, o), line
                               in zip(self.messages, positions, self.data)), key=lambda c: (c[0], c[1], c[2]))

    def database(self, name: str) -> tuple[str, Path]:
        """A fresh database of the aggregator's schema, with every campaign and account."""
        s = self.env.settings(("balance-aggregator",))
        db = f"{self.env.db}_{name}"
        s["balance_aggregator"].update(group_id=f"{self.env.id}-{name}")
        s["balance_aggregator"]["mariadb"]["database"] = db
        path = self.env.write_config(s, f"{name}.yaml")
        self.env.setup(path)
        sql = _sql(path)
        conn = _connect(db)
        with conn.cursor() as cur:
            cur.executemany(sql("INSERT INTO {campaigns} ({campaigns.id}, {campaigns.advertiser}) VALUES (%s, %s)"),
                            [(c, gen.advertiser_of(c)) for c in range(1, gen.CAMPAIGNS + 1)])
            cur.executemany(sql("INSERT INTO {accounts} ({accounts.id}) VALUES (%s)"),
                            [(a,) for a in range(1, max(gen.ADVERTISERS, gen.PUBLISHERS) + 1)])
        conn.commit()
        conn.close()
        return db, path


def _money(line: bytes) -> tuple[int, int, int, int]:
    import json
    o = json.loads(line)
    micros = lambda s: int(s.replace(".", ""))   # noqa: E731  "12.345678" → 12345678 (6 decimals always)
    return o["campaign_id"], micros(o["cost"]), o["publisher_id"], micros(o["revenue"])


def _check(db: str, config: Path, st: Setup) -> bool:
    sql = _sql(config)
    conn = _connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(sql("SELECT SUM({campaigns.spent}) * 1000000 FROM {campaigns}"))
            spent = int(cur.fetchone()[0] or 0)
            cur.execute(sql("SELECT SUM({accounts.balance}) * 1000000 FROM {accounts}"))
            balance = int(cur.fetchone()[0] or 0)
    finally:
        conn.close()
    return spent == st.totals.cost_total and balance == st.totals.revenue_total - st.totals.cost_total


def _offsets_covered(db: str, config: Path) -> int:
    conn = _connect(db)
    try:
        with conn.cursor() as cur:
            cur.execute(_sql(config)("SELECT COALESCE(SUM(next_offset), 0) FROM {offsets}"))
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _aggregator(ctx: Ctx, st: Setup, run: int, profile_out=None) -> Result:  # type: ignore[no-untyped-def]
    db, path = st.database(f"agg{run}")
    argv = [sys.executable, "-m", "eventd", "role", "balance-aggregator", "-c", str(path)]
    if profile_out is not None:
        argv = ctx.profiled_argv(argv, profile_out)
    t0 = time.monotonic()
    proc = stack.Proc(argv, ctx.work / f"aggregator{run}.log", ctx.agent_cpus)
    watch = Watch({"aggregator": proc.pid, "mariadbd": stack.service_pid("mariadb") or 0},
                  rss_of=["aggregator"]).start()
    try:
        progress = Progress(lambda: _offsets_covered(db, path))
        t1 = wait_until(lambda: not proc.alive() or progress.at_least(st.totals.events), 900,
                        "aggregator: every offset applied", interval=0.2)
        if not proc.alive():
            raise RuntimeError(f"aggregator exited {proc.proc.returncode}:\n{proc.tail()}")
        cpu, rss = watch.stop()
    finally:
        proc.stop()
    ok = _check(db, path, st)
    _drop(db)
    return Result("balances", "eventd balance-aggregator", "eventd", events=st.totals.events, seconds=t1 - t0,
                  cpu=cpu, rss=rss, steady=progress.steady_rate(), note=("exact; " if ok else "TOTALS DIFFER; ")
                  + "window 1 s; clock includes process start and group join")


def _windows(st: Setup, size: int) -> list[tuple[list, list, list, list]]:
    """Per window: (spend rows, day rows, revenue rows, offset updates), as the aggregator would send."""
    out = []
    for i in range(0, len(st.charges), size):
        part = st.charges[i:i + size]
        spend: dict[int, int] = {}
        revenue: dict[int, int] = {}
        ends: dict[tuple[str, int], int] = {}
        for topic, p, offset, campaign, cost, publisher, rev in part:
            spend[campaign] = spend.get(campaign, 0) + cost
            revenue[publisher] = revenue.get(publisher, 0) + rev
            ends[(topic, p)] = offset + 1
        out.append((sorted(spend.items()), sorted((c, DAY, v) for c, v in spend.items()), sorted(revenue.items()),
                    sorted(ends.items())))
    return out


def _direct(ctx: Ctx, st: Setup, run: int, window: int) -> Result:
    from eventd.roles.balance_aggregator import ledger
    db, path = st.database(f"raw{run}")
    sql = _sql(path)
    windows = _windows(st, window)
    conn = _connect(db)
    cur = conn.cursor()
    for t in ledger.TEMP_TABLES:
        cur.execute(t)
    cur.executemany(sql("INSERT INTO {offsets} (topic, part, next_offset, updated_at, updated_by) "
                        "VALUES (%s, %s, 0, UTC_TIMESTAMP(6), 'bench')"),
                    sorted({(c[0], c[1]) for c in st.charges}))
    conn.commit()
    unknown, apply = sql(ledger.UNKNOWN), [sql(s) for s in ledger.APPLY]
    advance = sql("UPDATE {offsets} SET next_offset = %s, updated_at = UTC_TIMESTAMP(6) "
                  "WHERE topic = %s AND part = %s")
    stored: dict[tuple[str, int], int] = {}
    watch = Watch({"mariadbd": stack.service_pid("mariadb") or 0}).start()
    t0 = time.monotonic()
    for spend, days, revenue, ends in windows:
        for table in (ledger.SPEND, ledger.DAYS, ledger.REVENUE):
            cur.execute(f"DELETE FROM {table}")
        cur.executemany(f"INSERT INTO {ledger.SPEND} (w_campaign, w_cost) VALUES (%s, %s)", spend)
        cur.executemany(f"INSERT INTO {ledger.DAYS} (w_campaign, w_day, w_cost) VALUES (%s, %s, %s)", days)
        cur.executemany(f"INSERT INTO {ledger.REVENUE} (w_account, w_revenue) VALUES (%s, %s)", revenue)
        cur.execute(unknown)
        cur.fetchall()
        for statement in apply:
            cur.execute(statement)
        for (topic, p), end in ends:
            cur.execute(advance, (end, topic, p))
            stored[(topic, p)] = end
        conn.commit()
    seconds = time.monotonic() - t0
    cpu, _ = watch.stop()
    conn.close()
    ok = _check(db, path, st)
    _drop(db)
    return Result("balances", "MariaDB 10.11 direct (same statements)", "peer", events=st.totals.events,
                  seconds=seconds, cpu=cpu, note=("exact; " if ok else "TOTALS DIFFER; ")
                  + f"{len(windows)} windows of {window:,} events, sums precomputed, SQL only")


def _drop(db: str) -> None:
    conn = _connect()
    with conn.cursor() as cur:
        cur.execute(f"DROP DATABASE IF EXISTS `{db}`")
    conn.close()


def run(ctx: Ctx) -> list[Result]:
    if not stack.role_available("balance-aggregator"):
        return [Result("balances", "eventd balance-aggregator", "eventd", error="role not available yet")]
    st = Setup(ctx, ctx.size(200_000, 2_000))
    try:
        def measure(i: int) -> list[Result]:
            try:
                agg = _aggregator(ctx, st, i)
            except Exception as exc:
                say(f"balances aggregator failed: {exc}")
                agg = Result("balances", "eventd balance-aggregator", "eventd", error=f"{type(exc).__name__}: {exc}")
            window = max(500, int(agg.rate)) if agg.rate == agg.rate else 10_000
            return [agg, _direct(ctx, st, i, window)]
        results = repeat(ctx.runs, measure)
        if ctx.profile:
            ctx.add_profile("balance-aggregator", f"{st.totals.events:,} events",
                            lambda out: _aggregator(ctx, st, 99, out))
        return results
    finally:
        stack.delete_topics_with_prefix(st.env.prefix)
        _drop(st.env.db)
