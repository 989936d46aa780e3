"""``eventd replay --to kafka`` against the real broker: exact totals and rejects, a second
run that changes nothing, and kill -9 in the middle followed by a re-run."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from harness import KAFKA, REPO, RoleProcess, TestEnv, consume_all, wait_for

from eventd.config import load_config
from eventd.event.codec import Decoder
from eventd.event.schemas import SchemaStore
from eventd.kafka.topics import ensure_topics
from eventd.replay.command import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_REJECTED
from eventd.replay.testdata import Expected, generate

TYPES = ("impression", "click", "conversion")


def prepare(env: TestEnv, topics: bool = True) -> tuple[Path, Any]:
    path = env.write_config()
    cfg = load_config(str(path))
    store = SchemaStore.load(cfg.events.schema_dir)
    if topics:
        ensure_topics(cfg, store)
    return path, store


def replay(config: Path, *args: str) -> tuple[int, dict[str, str], str]:
    proc = subprocess.run([sys.executable, "-m", "eventd", "replay", *args, "-c", str(config)], cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, figures(proc.stdout), proc.stdout + proc.stderr


def figures(text: str) -> dict[str, str]:
    """The summary's figures by label, and the split of duplicates."""
    out = {l.split(":")[0].strip(): l.split(":")[1].split()[0].replace(",", "")
           for l in text.splitlines() if l.startswith("  ") and ":" in l}
    for l in text.splitlines():
        if "delivered by an earlier run" in l:
            out["delivered before"] = l.split("(")[1].split()[0].replace(",", "")
    return out


def kafka_total(topics: list[str]) -> int:
    """Messages in ``topics`` (sum of end offsets: nothing is ever deleted in a test)."""
    from kafka import KafkaConsumer
    from kafka import TopicPartition
    consumer = KafkaConsumer(bootstrap_servers=KAFKA)
    try:
        tps = [TopicPartition(t, p) for t in topics for p in consumer.partitions_for_topic(t) or ()]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def kafka_events(env: TestEnv, store: SchemaStore) -> list[dict]:
    """Every event message of the test's topics, decoded."""
    topics = [env.topic(t) for t in TYPES]
    total = kafka_total(topics)
    decoder = Decoder(store)
    records = [decoder.decode(m.value)[1] for m in consume_all(topics, total, timeout=90)]
    assert len(records) == total
    return records


def assert_exact(records: list[dict], exp: Expected) -> None:
    ids = Counter(r["id"] for r in records)
    assert set(ids) == exp.ids
    first = {}
    for r in records:
        first.setdefault(r["id"], r)
    assert Counter(r["type"] for r in first.values()) == exp.by_type
    cost, revenue = Counter(), Counter()
    for r in first.values():
        cost[r["campaign_id"]] += r["cost"]
        revenue[r["campaign_id"]] += r["revenue"]
    assert cost == exp.cost and revenue == exp.revenue
    assert all(r["input"] == "replay" and r["host"] == "testhost" for r in records)


def test_file_with_bad_lines_gives_exact_events_and_rejects_and_a_rerun_changes_nothing(env: TestEnv) -> None:
    config, store = prepare(env)
    exp = generate(str(env.tmp / "legacy.json.gz"), 3000)
    rejects = env.tmp / "rejects.json"
    code, fig, log = replay(config, str(env.tmp / "legacy.json.gz"), "--rejects", str(rejects))
    assert code == EXIT_REJECTED, log
    assert fig["lines read"] == str(exp.lines) and fig["accepted"] == str(exp.events)
    assert fig["rejected"] == str(len(exp.rejects)) and fig["blank lines"] == str(exp.blank)
    rows = [json.loads(l) for l in rejects.read_text().splitlines()]
    assert {r["line"]: r for r in rows}.keys() == exp.rejects.keys()
    records = kafka_events(env, store)
    assert len(records) == exp.events
    assert_exact(records, exp)

    code, fig, log = replay(config, str(env.tmp / "legacy.json.gz"), "--rejects", str(rejects))
    assert code == EXIT_REJECTED, log
    assert fig["accepted"] == "0" and fig["delivered before"] == str(exp.events)
    assert len([json.loads(l) for l in rejects.read_text().splitlines()]) == len(exp.rejects)
    assert len(kafka_events(env, store)) == exp.events   # nothing new in Kafka


def test_kill_9_in_the_middle_then_rerun_sends_every_event_and_resends_only_the_unrecorded_tail(
        env: TestEnv, processes: list[RoleProcess]) -> None:
    config, store = prepare(env)
    exp = generate(str(env.tmp / "big.json"), 10000, seed=3)
    proc = RoleProcess(env, ["replay", str(env.tmp / "big.json")], config, "replay1")
    processes.append(proc)
    ledger_dir = env.tmp / "state" / "replay"

    def checkpoints() -> int:
        lines = [l for f in ledger_dir.glob("*/*.ckpt") for l in f.read_text().splitlines()]
        return sum(1 for l in lines if l.split()[1].isdigit())
    wait_for(lambda: checkpoints() >= 4, 120, "four checkpoints recorded")
    proc.kill9()
    assert checkpoints() < exp.lines // 500, "the run finished before it was killed"

    code, fig, log = replay(config, str(env.tmp / "big.json"))
    assert code == EXIT_REJECTED, log
    skipped, sent = int(fig["delivered before"]), int(fig["accepted"])
    assert skipped >= 1900 and skipped + sent == exp.events
    records = kafka_events(env, store)
    assert_exact(records, exp)
    per_id = Counter(r["id"] for r in records)
    # The prefix the ledger recorded is in Kafka exactly once; duplicates (acknowledged by
    # Kafka after the last recorded checkpoint, before the kill) are all after it.
    assert all(per_id[i] == 1 for i in exp.order[:skipped])
    assert len(records) - exp.events == sum(n - 1 for n in per_id.values())
    print(f"kill -9: {skipped} events skipped on the re-run, {len(records) - exp.events} sent twice")

    code, fig, log = replay(config, str(env.tmp / "big.json"))
    assert code == EXIT_REJECTED and fig["accepted"] == "0" and fig["delivered before"] == str(exp.events), log
    assert len(kafka_events(env, store)) == len(records)


def test_clean_file_exits_0_and_missing_topics_fail_before_sending(env: TestEnv) -> None:
    config, store = prepare(env, topics=False)
    exp = generate(str(env.tmp / "clean.json"), 200, bad_every=10**9)
    code, fig, log = replay(config, str(env.tmp / "clean.json"))
    assert code == EXIT_FAILED and "topics missing" in log and fig["lines read"] == "0", log
    ensure_topics(load_config(str(config)), store)
    code, fig, log = replay(config, str(env.tmp / "clean.json"))
    assert code == EXIT_OK and fig["accepted"] == str(exp.events), log
    assert_exact(kafka_events(env, store), exp)


def test_ctrl_c_in_the_middle_then_rerun_gives_exactly_one_copy_of_each_event(
        env: TestEnv, processes: list[RoleProcess]) -> None:
    config, store = prepare(env)
    exp = generate(str(env.tmp / "big.json.gz"), 10000, seed=4)
    proc = RoleProcess(env, ["replay", str(env.tmp / "big.json.gz")], config, "replay1")
    processes.append(proc)
    ledger_dir = env.tmp / "state" / "replay"
    wait_for(lambda: sum(len(f.read_text().splitlines()) for f in ledger_dir.glob("*/*.ckpt")) >= 4, 120,
             "checkpoints recorded")
    proc.proc.send_signal(signal.SIGINT)
    assert proc.proc.wait(60) == EXIT_INTERRUPTED, proc.log()
    first = figures(proc.log())
    assert "replay interrupted" in proc.log() and 0 < int(first["lines read"]) < exp.lines

    code, fig, log = replay(config, str(env.tmp / "big.json.gz"))
    assert code == EXIT_REJECTED, log
    # A graceful stop records everything Kafka acknowledged: the re-run sends exactly the rest.
    assert int(fig["delivered before"]) == int(first["accepted"]) and int(fig["accepted"]) == exp.events - int(
        first["accepted"]), log
    records = kafka_events(env, store)
    assert len(records) == exp.events
    assert_exact(records, exp)
