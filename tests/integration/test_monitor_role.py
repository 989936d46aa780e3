"""The monitor role against the real Kafka: a click flood planted in live traffic reaches the alert
topic as one alert, the monitor restarted meanwhile does not announce it again, and the resolved
message follows once the flood is over. Also: what the role refuses to start with."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

from kafka import KafkaProducer

from harness import KAFKA, SCHEMAS, RoleProcess, TestEnv, consume_all, wait_for

from eventd.config import load_config
from eventd.errors import EXIT_CANNOT_START
from eventd.event.codec import encode
from eventd.event.schemas import SchemaStore
from eventd.kafka.topics import ensure_topics
from eventd.roles import monitor
from eventd.roles.monitor.state import load_state
from eventd.roles.monitor.testdata import Flood, Traffic, generate

FLOOD_IP = "203.0.113.50"
STORE = SchemaStore.load(str(SCHEMAS))


def monitor_settings(env: TestEnv) -> dict[str, Any]:
    s = env.settings()
    s["monitor"] = {"enabled": True, "group_id": f"{env.id}-monitor", "alert_topic": f"{env.prefix}_alerts",
                    "state_file": str(env.tmp / "monitor" / "state.json"), "settle": "2s", "idle_after": "10s",
                    "rules": [{"name": "click-flood-ip", "kind": "flood", "by": "ip", "event_types": ["click"],
                               "step": "2s", "window": "10s", "max_events": 30, "resolve_after": "4s"}]}
    return s


class LiveClicks(threading.Thread):
    """Produces the clicks of generated traffic in real time: each second's events when it ends."""

    def __init__(self, topic: str, traffic: Traffic) -> None:
        super().__init__(daemon=True)
        self.topic, self.traffic, self.stop = topic, traffic, threading.Event()
        self.sent = 0

    def run(self) -> None:
        producer = KafkaProducer(bootstrap_servers=KAFKA, acks="all")
        try:
            for s, events in enumerate(generate(self.traffic)):
                wait = (self.traffic.start_ms + (s + 1) * 1000) / 1000 - time.time()
                if self.stop.wait(max(0.0, wait)):
                    return
                for e in events:
                    if e["type"] == "click":
                        producer.send(self.topic, encode(STORE.writer("click"), e), timestamp_ms=e["received"])
                        self.sent += 1
                producer.flush()
        finally:
            producer.close()


def alerts(topic: str, expected: int, timeout: float) -> list[dict[str, Any]]:
    return [json.loads(r.value) for r in consume_all([topic], expected, timeout)]


def test_flood_alert_reaches_the_topic_once_across_a_restart_then_resolves(
        env: TestEnv, processes: list[RoleProcess]) -> None:
    path = env.write_config(monitor_settings(env))
    cfg = load_config(str(path))
    ensure_topics(cfg, STORE)
    assert monitor.setup(cfg) == [f"created the alert topic {env.prefix}_alerts"]
    assert monitor.setup(cfg) == []

    start = int(time.time() * 1000)
    traffic = Traffic(start, 90, seed=31, impressions_per_s=30, anomalies=(
        Flood(start + 15_000, start + 40_000, field_name="ip", value=FLOOD_IP, per_s=10),))
    clicks = LiveClicks(env.topic("click"), traffic)
    clicks.start()
    try:
        first = RoleProcess(env, ["role", "monitor"], path, "monitor-1")
        processes.append(first)
        [alert] = wait_for(lambda: alerts(cfg.monitor.alert_topic, 1, 2), 60, "the flood alert")
        assert (alert["kind"], alert["rule"], alert["key"]) == ("alert", "click-flood-ip", FLOOD_IP)
        assert alert["details"]["count"] > 30 and alert["source"] == "testhost"
        assert first.terminate() == 0, first.log()
        assert "ALERT [warning] click flood: ip=203.0.113.50" in first.log()
        state = load_state(cfg.monitor.state_file)
        assert [i.key for i in state.incidents] == [FLOOD_IP]

        second = RoleProcess(env, ["role", "monitor"], path, "monitor-2")   # while the flood goes on
        processes.append(second)
        messages = wait_for(lambda: (m := alerts(cfg.monitor.alert_topic, 2, 2)) and len(m) >= 2 and m,
                            90, "the resolved message")
        assert [(m["kind"], m["incident"]) for m in messages] == [("alert", alert["incident"]),
                                                                    ("resolved", alert["incident"])]
        assert messages[1]["at"] >= start + 40_000
        time.sleep(3)
        assert len(alerts(cfg.monitor.alert_topic, 3, 2)) == 2, "a message was repeated"
        assert second.terminate() == 0, second.log()
    finally:
        clicks.stop.set()
        clicks.join(30)
    assert clicks.sent > 250
    assert load_state(cfg.monitor.state_file).incidents == []


def test_cannot_start_without_its_alert_topic_or_with_an_unknown_field(
        env: TestEnv, processes: list[RoleProcess], tmp_path: Path) -> None:
    settings = monitor_settings(env)
    path = env.write_config(settings)
    ensure_topics(load_config(str(path)), STORE)
    no_topic = RoleProcess(env, ["role", "monitor"], path, "no-topic")
    processes.append(no_topic)
    assert no_topic.proc.wait(60) == EXIT_CANNOT_START
    assert "does not exist: run `eventd setup`" in no_topic.log()

    settings["monitor"]["rules"][0]["by"] = "ip_address"
    bad = RoleProcess(env, ["role", "monitor"], env.write_config(settings, "bad.yaml"), "bad-field")
    processes.append(bad)
    assert bad.proc.wait(60) == EXIT_CANNOT_START
    assert "no schema of click has a field 'ip_address'" in bad.log()
