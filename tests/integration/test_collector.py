"""The collector against the real Kafka: every input delivers each event once, decodable from the
schema files alone with money exact; bad lines are rejected with their reasons while the good ones
beside them arrive; processes share ports; a retired slot's queue is delivered; a graceful stop."""

from __future__ import annotations

import io
import json
from pathlib import Path

import avro.io
import avro.schema
from test_collector_support import STORE, Collector, Sent, assert_delivered, collector_settings, event, read_kafka

from eventd.config import load_config
from eventd.event.codec import encode
from eventd.event.envelope import EventParser
from eventd.roles.collector.queue import DurableQueue
from eventd.roles.collector.records import payload
from harness import SCHEMAS, RoleProcess, TestEnv, consume_all, wait_for


LONG = b'{"type": "click", "time": 1767268800, "pad": "' + b"x" * (1 << 20) + b'"}'


def test_every_input_delivers_each_event_once_money_exact(env: TestEnv, processes: list[RoleProcess]) -> None:
    logs = env.tmp / "weblogs"
    logs.mkdir()
    c = Collector(env, processes, collector_settings(env, tail={"enabled": True, "paths": [str(logs / "*.log")],
                                                                "poll_interval": "100ms"}))
    c.ensure_topics()
    c.start()
    sent: list[Sent] = []
    costs = ["0.000001", "123456.789012", 0.1, 7, "0.5", 1e-06]

    def batch(name: str, n: int) -> list[bytes]:
        out = []
        for i in range(n):
            raw, s = event(i, f"{env.id}-{name}", cost=costs[i % len(costs)])
            out.append(raw)
            sent.append(s)
        return out

    status, doc = c.post(batch("http", 40))
    assert (status, doc["accepted"], doc["rejected"]) == (202, 40, 0)
    status, doc = c.post([json.dumps(json.loads(batch("httpjson", 1)[0]), indent=2).encode()], "application/json")
    assert (status, doc["accepted"]) == (202, 1)
    assert sum(a["accepted"] for a in c.stream(batch("tcp", 40))) == 40
    assert sum(a["accepted"] for a in c.stream(batch("unix", 40), unix=True)) == 40
    c.datagrams(batch("udp", 20))
    c.datagrams(batch("dgram", 20), unix=True)
    (logs / "app.log").write_bytes(b"".join(x + b"\n" for x in batch("tail", 30)))
    wait_for(lambda: (c.health() or {}).get("unacked_events") == 0
             and len(read_kafka(env, len(sent), 5)) >= len(sent), 60, "every input's events in Kafka")
    got = assert_delivered(env, sent)
    inputs = {r["id"].split("-")[-2]: r["input"] for _, _, r in got}
    assert inputs == {"http": "http", "httpjson": "http", "tcp": "tcp", "unix": "unix", "udp": "udp",
                      "dgram": "unix_datagram", "tail": "tail"}
    for topic, key, r in got:
        assert topic == env.topic(r["type"]) and r["host"] == "testhost" and r["schema_version"] == 1
        assert key == (r["id"] if r["type"] == "bid" else str(r["campaign_id"])).encode()
    assert {r["cost"] for _, _, r in got if r["type"] != "bid"} >= {1, 123_456_789_012, 100_000, 7_000_000, 500_000}


def test_messages_decode_with_the_official_avro_library(env: TestEnv, processes: list[RoleProcess]) -> None:
    c = Collector(env, processes, collector_settings(env))
    c.ensure_topics()
    c.start()
    raw, s = event(1, env.id, type_="click", cost="0.123456", country="DE", referrer="x.com")
    assert c.post([raw])[1]["accepted"] == 1
    (m,) = consume_all([env.topic("click")], 1, 30)
    schema = avro.schema.parse((SCHEMAS / "click.v1.avsc").read_text())
    assert m.value[:2] == b"\xc3\x01" and m.value[2:10] == schema.fingerprint("CRC-64-AVRO")
    rec = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(m.value[10:])))
    assert (rec["id"], rec["cost"], rec["country"], rec["extra"]) == (s.id, 123_456, "DE", {"referrer": "x.com"})


def test_bad_lines_are_rejected_with_reasons_while_good_ones_arrive(env: TestEnv, processes: list[RoleProcess]) -> None:
    c = Collector(env, processes, collector_settings(env))
    c.ensure_topics()
    c.start()
    good = [event(i, env.id, cost="1.25") for i in range(4)]
    bad = [
        (b'{"type": "click", "time": 1767268800, "cost": -5}', "cost: money must not be negative, got -5"),
        (b'{"type": "click", "time": 1767268800, "cost": NaN}', "not valid JSON: NaN is not allowed"),
        (b'{"type": "click", "time": 1767268800, "cost": "ten"}', "cost: money must be a number, got 'ten'"),
        (b'{"type": "click", "time": 1767268800, "cost": 0.0000001}',
         "cost: money 1E-7 has more than 6 decimal places"),
        (b'{"type": "click", "time": 1767268800, "campaign_id": 99999999999999999999}',
         "campaign_id: 99999999999999999999 overflows a long"),
        (b'{"time": 1767268800}', "type: missing"),
        (b'{"type": "click"}', "time: missing"),
        (b'{"type": "click", "time": "noon"}', "time: 'noon' is not ISO-8601"),
        (b'{"type": "click", "time": 1767268800, "x": "\xc3\x28"}', "invalid UTF-8 at byte 44"),
        (b'{"type": "click", "time": 1767',  "not valid JSON"),
        (LONG, f"line of {len(LONG)} bytes is over the limit of {1 << 20}"),
    ]
    lines = [good[0][0]] + [b for b, _ in bad[:6]] + [good[1][0]] + [b for b, _ in bad[6:]]
    status, doc = c.post(lines)
    assert status == 202 and (doc["accepted"], doc["rejected"]) == (2, len(bad))
    reasons = {e["line"]: e["error"] for e in doc["errors"]}
    expected_lines = list(range(2, 8)) + list(range(9, 9 + len(bad) - 6))
    for line_no, (_, reason) in zip(expected_lines, bad):
        assert reasons[line_no].startswith(reason), (line_no, reasons[line_no], reason)
    answers = c.stream([good[2][0], bad[0][0], bad[5][0], good[3][0]])
    assert sum(a["accepted"] for a in answers) == 2
    assert [(e["line"], e["error"]) for a in answers for e in a["errors"]] == [(2, bad[0][1]), (3, bad[5][1])]
    c.wait_drained()
    assert_delivered(env, [s for _, s in good])


def test_processes_share_the_ports(env: TestEnv, processes: list[RoleProcess]) -> None:
    settings = collector_settings(env, processes=2)
    c = Collector(env, processes, settings)
    c.ensure_topics()
    c.start()
    second = RoleProcess(env, ["role", "collector", "--slot", "1"], c.config, "collector-slot1")
    processes.append(second)
    queue_dir = Path(settings["collector"]["queue"]["dir"])
    wait_for(lambda: (queue_dir / "slot-1").exists() or not second.alive(), 30, "slot 1 running")
    assert second.alive(), second.log()
    sent = []
    for k in range(40):      # new connections: the kernel spreads them over both processes
        lines = []
        for i in range(5):
            raw, s = event(k * 5 + i, env.id)
            lines.append(raw)
            sent.append(s)
        assert sum(a["accepted"] for a in c.stream(lines)) == 5
    assert_delivered(env, sent)
    assert all(list((queue_dir / slot).glob("*.seg")) for slot in ("slot-0", "slot-1"))
    slot_of = {p: json.loads((queue_dir / p / "acked").read_text())["seq"] for p in ("slot-0", "slot-1")}
    assert all(v > 0 for v in slot_of.values()), slot_of     # both processes took events


def test_a_retired_slots_queue_is_delivered_and_removed(env: TestEnv, processes: list[RoleProcess]) -> None:
    settings = collector_settings(env)
    c = Collector(env, processes, settings)
    c.ensure_topics()
    retired = Path(settings["collector"]["queue"]["dir"]) / "slot-3"
    q = DurableQueue.open(str(retired), 1 << 20, 64 << 20)
    cfg = load_config(str(c.config))
    parser = EventParser(STORE, cfg.events, cfg.kafka.topics.prefix, cfg.kafka.topics.partitions, "oldhost")
    sent = []
    for i in range(25):
        raw, s = event(i, env.id)
        ev = parser.parse(raw, "tcp", 1, lambda: "unused")
        q.append([payload(ev.topic, ev.key, encode(ev.schema, ev.record))])
        sent.append(s)
    q.close()
    c.start()
    assert_delivered(env, sent)
    c.proc.terminate()
    wait_for(lambda: not retired.exists(), 30, "the retired queue removed")


def test_graceful_stop_leaves_nothing_behind(env: TestEnv, processes: list[RoleProcess]) -> None:
    c = Collector(env, processes, collector_settings(env))
    c.ensure_topics()
    c.start()
    lines, sent = zip(*(event(i, env.id) for i in range(200)))
    assert c.post(list(lines))[1]["accepted"] == 200
    assert c.proc.terminate() == 0      # SIGTERM
    assert "every accepted event is in Kafka" in c.proc.log()
    assert_delivered(env, list(sent))
