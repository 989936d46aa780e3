"""ClickHouse loader vs ClickHouse's own Kafka table engine, on the same server, into the same tables.

The fair comparison chosen: ClickHouse 18.16 has no Avro input format, so its Kafka engine cannot
read eventd's Avro single-object messages. Both sides therefore load the SAME ROWS into the SAME
TABLE SHAPE, each from its own topic in the format it reads:

- eventd: the Avro messages the collector writes (the loader decodes, maps, inserts columnar over
  the native protocol into ``events_input``);
- peer: one JSONEachRow message per event holding exactly the row the loader would build (made with
  the loader's own ``RowMapper``, Kafka positions included), consumed by a ``Kafka(…, 'JSONEachRow')``
  table and pushed by a materialized view into ``events_input`` of a second database created by the
  same ``eventd setup``, so both sides write the same ``events`` (ReplicatedMergeTree) and
  ``stats_hourly`` (ReplicatedSummingMergeTree) tables with the same view SELECTs. (The loader's
  rows pass a Null table whose two views fill them; 18.16 does not run a Null table's views for
  rows a Kafka engine's view writes into it, so the engine side has the same two views read the
  Kafka table directly.)

The clock runs from starting the consumer (the loader process / the engine's materialized view) until
``events`` holds every row. CPU is the loader's plus clickhouse-server's for eventd, clickhouse-server's
alone for the engine (other users of the shared server add noise to that figure).
"""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, timezone

from bench import gen, stack
from bench.common import Ctx, Progress, Result, Watch, repeat, say, wait_until
from bench.stack import EventdEnv

PARTITIONS = 6


def _client():  # type: ignore[no-untyped-def]
    from clickhouse_driver import Client
    return Client("127.0.0.1", port=9000, connect_timeout=10, send_receive_timeout=300)


def _json_rows(cfg_path: str, messages: list[tuple[str, bytes, bytes]], positions: list[tuple[int, int]]) -> list[bytes]:
    """The loader's row for each message, as JSONEachRow lines."""
    from eventd.config import load_config
    from eventd.event.codec import Decoder
    from eventd.event.schemas import SchemaStore
    from eventd.kafka.batch import Message
    from eventd.roles.clickhouse_loader.mapping import RowMapper
    cfg = load_config(cfg_path)
    store = SchemaStore.load(cfg.events.schema_dir)
    mapper = RowMapper.build(cfg.clickhouse_loader.columns, store, cfg.events)
    names = [n for n, _ in mapper.column_types()]
    decoder = Decoder(store)
    out = []
    for (topic, key, value), (partition, offset) in zip(messages, positions):
        entry, record = decoder.decode(value)
        row = list(mapper.row(entry, record, Message(topic, partition, offset, key, value, 0)))
        for i, v in enumerate(row):
            if isinstance(v, datetime):
                row[i] = v.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        out.append(json.dumps(dict(zip(names, row)), separators=(",", ":"), default=str).encode())
    return out


def _count(client, db: str) -> int:  # type: ignore[no-untyped-def]
    return client.execute(f"SELECT count() FROM {db}.events")[0][0]


def _sums(client, db: str) -> tuple:  # type: ignore[no-untyped-def]
    """Money in events and in stats_hourly (both must equal what was produced)."""
    return tuple(client.execute(f"SELECT sum(cost_micros), sum(revenue_micros) FROM {db}.events")[0]
                 + client.execute(f"SELECT sum(cost_micros), sum(revenue_micros) FROM {db}.stats_hourly")[0])


def _view_select(client, db: str, view: str) -> str:  # type: ignore[no-untyped-def]
    """The SELECT of a materialized view, from its CREATE statement."""
    create = client.execute(f"SHOW CREATE TABLE {db}.{view}")[0][0]
    return create[create.index(" AS SELECT ") + 4:]


class Setup:
    """Topics filled once; each run gets fresh databases and consumer groups."""

    def __init__(self, ctx: Ctx, n: int) -> None:
        self.ctx = ctx
        self.env = EventdEnv(ctx.work / "clickhouse", PARTITIONS)
        self.config = self.env.write_config(self.env.settings(("clickhouse-loader",)), "base.yaml")
        self.data, self.totals = gen.lines(n, seed=3, tag="C")
        say(f"clickhouse: encoding and producing {n:,} Avro events")
        self.messages = gen.avro_messages(self.data, str(self.config))
        self.env.setup(self.config)
        positions = stack.produce([(t, k, v) for t, k, v in self.messages])
        self.peer_topic = f"{self.env.prefix}jsoneachrow"
        stack.create_topics([self.peer_topic], PARTITIONS)
        rows = _json_rows(str(self.config), self.messages, positions)
        self.row_bytes = sum(len(r) for r in rows)
        say(f"clickhouse: producing {n:,} JSONEachRow rows")
        stack.produce([(self.peer_topic, None, r) for r in rows])
        self.avro_bytes = sum(len(v) for _, _, v in self.messages)

    def config_for(self, run: int, side: str) -> tuple[str, object]:
        s = self.env.settings(("clickhouse-loader",))
        db = f"{self.env.db}_{side}{run}"
        s["clickhouse_loader"]["destinations"][0].update(database=db, group_id=f"{self.env.id}-{side}{run}")
        path = self.env.write_config(s, f"{side}{run}.yaml")
        self.env.setup(path)
        return db, path


def _loader(ctx: Ctx, st: Setup, run: int, profile_out=None) -> Result:  # type: ignore[no-untyped-def]
    db, path = st.config_for(run, "loader")
    client, ch = _client(), stack.service_pid("clickhouse")
    argv = [sys.executable, "-m", "eventd", "role", "clickhouse-loader", "-c", str(path)]
    if profile_out is not None:
        argv = ctx.profiled_argv(argv, profile_out)
    t0 = time.monotonic()
    proc = stack.Proc(argv, ctx.work / f"loader{run}.log", ctx.agent_cpus)
    watch = Watch({"loader": proc.pid, "clickhouse-server": ch or 0}, rss_of=["loader"]).start()
    try:
        progress = Progress(lambda: _count(client, db))
        t1 = wait_until(lambda: not proc.alive() or progress.at_least(st.totals.events), 900,
                        "loader: every row in events", interval=0.2)
        if not proc.alive():
            raise RuntimeError(f"loader exited {proc.proc.returncode}:\n{proc.tail()}")
        cpu, rss = watch.stop()
    finally:
        proc.stop()
    ok = _sums(client, db) == (st.totals.cost_total, st.totals.revenue_total) * 2
    client.execute(f"DROP DATABASE IF EXISTS {db}")
    return Result("clickhouse", "eventd clickhouse-loader", "eventd", events=st.totals.events, seconds=t1 - t0,
                  bytes=st.avro_bytes, cpu=cpu, rss=rss, steady=progress.steady_rate(),
                  note=("Avro in; " if ok else "MONEY SUMS DIFFER; ") + "clock includes process start and group join")


def _engine(ctx: Ctx, st: Setup, run: int) -> Result:
    db, _ = st.config_for(run, "engine")
    client, ch = _client(), stack.service_pid("clickhouse")
    cols = client.execute(f"SELECT name, type FROM system.columns WHERE database = '{db}' AND table = 'events_input'")
    defs = ", ".join(f"{n} {t}" for n, t in cols)
    group = f"{st.env.id}-engine{run}"
    stack.commit_group_start(group, [st.peer_topic])   # librdkafka would start a new group at the end
    client.execute(f"CREATE TABLE {db}.kafka_queue ({defs}) ENGINE = Kafka('{stack.KAFKA}', '{st.peer_topic}', "
                   f"'{group}', 'JSONEachRow')")
    stats_select = _view_select(client, db, "stats_hourly_mv").replace(f"{db}.events_input", f"{db}.kafka_queue")
    watch = Watch({"clickhouse-server": ch or 0}).start()
    t0 = time.monotonic()
    # 18.16 does not run the views of a Null table that a Kafka engine's view writes into (seen:
    # events_input's views got nothing), so the engine's two views write the same tables directly.
    client.execute(f"CREATE MATERIALIZED VIEW {db}.kafka_stats_mv TO {db}.stats_hourly AS {stats_select}")
    client.execute(f"CREATE MATERIALIZED VIEW {db}.kafka_mv TO {db}.events AS SELECT * FROM {db}.kafka_queue")
    try:
        t1 = wait_until(lambda: _count(client, db) >= st.totals.events, 900, "Kafka engine: every row in events",
                        interval=0.2)
        cpu, _ = watch.stop()
    finally:
        client.execute(f"DROP TABLE IF EXISTS {db}.kafka_mv")
        client.execute(f"DROP TABLE IF EXISTS {db}.kafka_stats_mv")
        client.execute(f"DROP TABLE IF EXISTS {db}.kafka_queue")
    ok = _sums(client, db) == (st.totals.cost_total, st.totals.revenue_total) * 2
    client.execute(f"DROP DATABASE IF EXISTS {db}")
    return Result("clickhouse", "ClickHouse 18.16 Kafka engine", "peer", events=st.totals.events,
                  seconds=t1 - t0, bytes=st.row_bytes, cpu=cpu,
                  note=("JSONEachRow in (same rows); " if ok else "MONEY SUMS DIFFER; ")
                  + "engine defaults (flush every 7.5 s or 65,536 rows)")


def run(ctx: Ctx) -> list[Result]:
    if not stack.role_available("clickhouse-loader"):
        return [Result("clickhouse", "eventd clickhouse-loader", "eventd", error="role not available yet")]
    st = Setup(ctx, ctx.size(300_000, 2_000))
    try:
        def measure(i: int) -> list[Result]:
            out = []
            for side in (_loader, _engine):
                try:
                    out.append(side(ctx, st, i))
                except Exception as exc:
                    say(f"clickhouse {side.__name__} failed: {exc}")
                    name = "eventd clickhouse-loader" if side is _loader else "ClickHouse 18.16 Kafka engine"
                    out.append(Result("clickhouse", name, "eventd" if side is _loader else "peer",
                                      error=f"{type(exc).__name__}: {exc}"))
            return out
        results = repeat(ctx.runs, measure)
        if ctx.profile:
            ctx.add_profile("clickhouse-loader", f"{st.totals.events:,} events", lambda out: _loader(ctx, st, 99, out))
        return results
    finally:
        stack.delete_topics_with_prefix(st.env.prefix)
        _client().execute(f"DROP DATABASE IF EXISTS {st.env.db}")
