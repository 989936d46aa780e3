"""The HDFS uploader against the real Kafka and HDFS: every produced event lands in exactly one
file, read back with the official avro library (counts and money sums match); the layout,
file names and offset ranges; dead letters; a graceful stop; ``eventd setup`` twice.

The helpers here are shared by test_hdfs_faults.py."""

from __future__ import annotations

import collections
import io
import json
import random
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import avro.datafile
import avro.io
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition  # kafka-python: an independent client checks Kafka

from eventd.config import load_config
from eventd.event.codec import encode
from eventd.event.envelope import EventParser
from eventd.event.schemas import SchemaStore
from harness import KAFKA, REPO, RoleProcess, TestEnv, consume_all, hdfs_get, hdfs_walk, wait_for

TYPES = ("impression", "click", "conversion", "bid")
BASE_HOUR = datetime(2026, 11, 20, 10, tzinfo=timezone.utc).timestamp() * 1000


@dataclass(frozen=True)
class Produced:
    id: str
    type: str
    time: int
    money: int          # sum of the record's money fields (micro-units)


# -- configuration and producing -------------------------------------------------------------
def hdfs_settings(env: TestEnv, **hdfs: Any) -> dict[str, Any]:
    """A config where only the uploader is enabled (``eventd setup`` then touches only Kafka
    and HDFS)."""
    s = env.settings()
    for role in ("collector", "clickhouse_loader", "balance_aggregator"):
        s[role]["enabled"] = False
    s["hdfs_uploader"].update(hdfs)
    return s


def setup(env: TestEnv, config: Path) -> str:
    out = subprocess.run([sys.executable, "-m", "eventd", "setup", "-c", str(config)], cwd=REPO,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr + out.stdout
    return out.stdout


def make_events(env: TestEnv, config: Path, n: int, seed: int, bad: int = 0) -> tuple[list[tuple], list[Produced]]:
    """``n`` valid events over four types and several event hours (a few a day late), plus
    ``bad`` undecodable messages; returns (messages to send, what was produced)."""
    cfg = load_config(str(config))
    store = SchemaStore.load(cfg.events.schema_dir)
    parser = EventParser(store, cfg.events, cfg.kafka.topics.prefix, cfg.kafka.topics.partitions, "testhost")
    rnd = random.Random(seed)
    messages, produced = [], []
    for i in range(n):
        etype = rnd.choice(TYPES)
        late = rnd.random() < 0.05
        t = int(BASE_HOUR + rnd.randrange(0, 2 * 3600_000) - (2 * 86400_000 if late else 0))
        fields = {"id": f"{env.id}-{seed}-{i}", "type": etype, "time": t, "campaign_id": rnd.randrange(1, 20),
                  "cost": f"{rnd.randrange(0, 5000)}.{rnd.randrange(0, 999999):06d}",
                  "revenue": rnd.randrange(0, 3), "bid": "0.25", "user_agent": "Mozilla/5.0 ü"}
        event = parser.parse(json.dumps(fields).encode(), "test", int(BASE_HOUR), lambda: "x")
        money = sum(event.record.get(f) or 0 for f in event.schema.money_fields)
        messages.append((event.topic, event.key, encode(event.schema, event.record)))
        produced.append(Produced(event.id, etype, t, money))
    for j in range(bad):
        messages.insert(rnd.randrange(len(messages) + 1), (env.topic(rnd.choice(TYPES)), b"k", b"garbage %d" % j))
    return messages, produced


def produce(messages: list[tuple]) -> None:
    producer = KafkaProducer(bootstrap_servers=KAFKA, acks="all", linger_ms=5)
    for topic, key, value in messages:
        producer.send(topic, key=key, value=value)
    producer.flush(60)
    producer.close()


def event_partitions(env: TestEnv) -> list[TopicPartition]:
    return [TopicPartition(env.topic(t), p) for t in TYPES for p in range(3)]


def end_offsets(env: TestEnv) -> dict[TopicPartition, int]:
    consumer = KafkaConsumer(bootstrap_servers=KAFKA)
    try:
        return consumer.end_offsets(event_partitions(env))
    finally:
        consumer.close()


def committed(group: str) -> dict[TopicPartition, Any]:
    admin = KafkaAdminClient(bootstrap_servers=KAFKA)
    try:
        return admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()


def all_committed(env: TestEnv, timeout: float = 90, group: str | None = None) -> None:
    """Wait until the uploader's committed offsets reach the end of every event partition."""
    ends = end_offsets(env)

    def done() -> bool:
        got = committed(group or f"{env.id}-hdfs")
        return all((got[tp].offset if tp in got else 0) == end and (not got.get(tp) or not got[tp].metadata)
                   for tp, end in ends.items())
    wait_for(done, timeout, "the uploader to commit every partition's end", interval=0.5)


def start_uploader(env: TestEnv, config: Path, processes: list, name: str = "hdfs",
                   failpoints: str = "") -> RoleProcess:
    import os
    old = os.environ.get("EVENTD_FAILPOINTS")
    os.environ["EVENTD_FAILPOINTS"] = failpoints
    try:
        proc = RoleProcess(env, ["role", "hdfs-uploader"], config, name)
    finally:
        if old is None:
            del os.environ["EVENTD_FAILPOINTS"]
        else:
            os.environ["EVENTD_FAILPOINTS"] = old
    processes.append(proc)
    return proc


# -- reading HDFS ----------------------------------------------------------------------------
@dataclass
class Archive:
    files: dict[str, list[dict]]          # final path → records
    tmp: list[str]                        # leftovers in _tmp


def read_archive(base: str) -> Archive:
    files, tmp = {}, []
    for path, _ in hdfs_walk(base):
        if "/_tmp/" in path:
            tmp.append(path)
            continue
        data = hdfs_get(path, "OPEN")
        reader = avro.datafile.DataFileReader(io.BytesIO(data), avro.io.DatumReader())
        files[path] = list(reader)
    return Archive(files, tmp)


def check_archive(env: TestEnv, produced: list[Produced], base: str | None = None) -> Archive:
    """Exactly once, right place, ranges tiling each partition, nothing left in _tmp."""
    archive = read_archive(base or env.hdfs_base)
    assert archive.tmp == [], f"temporary files left: {archive.tmp}"
    seen = collections.Counter(r["id"] for records in archive.files.values() for r in records)
    expected = {p.id for p in produced}
    dupes = [i for i, c in seen.items() if c > 1]
    assert not dupes, f"{len(dupes)} events archived twice, e.g. {dupes[:3]}"
    missing = expected - set(seen)
    assert not missing, f"{len(missing)} events missing, e.g. {sorted(missing)[:3]}"
    assert set(seen) == expected
    by_type = collections.defaultdict(lambda: [0, 0])
    for path, records in archive.files.items():
        for r in records:
            hour = datetime.fromtimestamp(r["time"] / 1000, tz=timezone.utc)
            assert f"/type={r['type']}/date={hour:%Y-%m-%d}/hour={hour:%H}/" in path, (path, r["time"])
            entry = SchemaStore.load(str(REPO / "conf" / "schemas")).latest[r["type"]]
            by_type[r["type"]][0] += 1
            by_type[r["type"]][1] += sum(r[f] for f in entry.money_fields)
    want = collections.defaultdict(lambda: [0, 0])
    for p in produced:
        want[p.type][0] += 1
        want[p.type][1] += p.money
    assert dict(by_type) == dict(want)
    check_ranges(env, archive)
    return archive


def check_ranges(env: TestEnv, archive: Archive) -> None:
    """Each partition's distinct file ranges tile 0..end-1: no overlap, no gap."""
    from eventd.roles.hdfs_uploader.layout import parse_final
    ranges = collections.defaultdict(set)
    for path in archive.files:
        name = parse_final(path.rsplit("/", 1)[1])
        assert name is not None, path
        ranges[TopicPartition(name.topic, name.partition)].add((name.first, name.last))
    for tp, end in end_offsets(env).items():
        expect_next = 0
        for first, last in sorted(ranges.get(tp, ())):
            assert first == expect_next, f"{tp}: range {first}..{last} after {expect_next - 1} (overlap or gap)"
            expect_next = last + 1
        # A tail of dead-lettered messages has no file: the committed offset covers it instead.
        assert expect_next <= end


# -- the tests -------------------------------------------------------------------------------
def test_every_event_archived_exactly_once(env: TestEnv, processes: list) -> None:
    config = env.write_config(hdfs_settings(env, roll_age="2s", roll_size="64KiB"))
    out = setup(env, config)
    assert "hdfs-uploader: created HDFS directory" in out
    assert setup(env, config).strip() == "nothing to change: everything exists"

    messages, produced = make_events(env, config, 1200, seed=1, bad=5)
    produce(messages[:600])
    proc = start_uploader(env, config, processes)
    produce(messages[600:])
    all_committed(env)
    archive = check_archive(env, produced)
    assert len(archive.files) > len(TYPES) * 4          # several hours and flushes per type
    late = [p for p in archive.files if "/date=2026-11-18/" in p]
    assert late, "late events are in the directory of their own event hour"

    dead = consume_all([f"{env.prefix}_deadletter"], 5, timeout=30)
    assert len(dead) == 5
    sources = {dict(d.headers)["eventd.source"].decode() for d in dead}
    assert all(s.startswith(env.prefix) for s in sources) and len(sources) == 5

    assert proc.terminate() == 0
    assert "Traceback" not in proc.log()


def test_snappy_and_zstandard_files_are_read_by_the_official_library(env: TestEnv, processes: list) -> None:
    config = env.write_config(hdfs_settings(env))
    messages, produced = make_events(env, config, 100, seed=2)
    setup(env, config)
    produce(messages)
    for codec in ("snappy", "zstandard"):
        base, group = f"{env.hdfs_base}-{codec}", f"{env.id}-hdfs-{codec}"
        config = env.write_config(hdfs_settings(env, codec=codec, base_dir=base, group_id=group, roll_age="1s"))
        setup(env, config)
        proc = start_uploader(env, config, processes, name=f"hdfs-{codec}")
        all_committed(env, group=group)
        assert proc.terminate() == 0
        archive = check_archive(env, produced, base)
        for path in archive.files:
            reader = avro.datafile.DataFileReader(io.BytesIO(hdfs_get(path, "OPEN")), avro.io.DatumReader())
            assert reader.get_meta("avro.codec").decode() == codec
