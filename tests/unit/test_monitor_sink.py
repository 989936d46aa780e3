"""The monitor's consumer-loop sink: where partitions start (history by time; a re-assigned
partition where this process left it), what transform makes of good and bad messages, and the
whole role's loop over an in-memory consumer."""

from __future__ import annotations

import threading
from pathlib import Path

from eventd.config.common import DeadLetterConfig
from eventd.event.codec import Decoder, encode
from eventd.event.schemas import SchemaStore
from eventd.kafka.batch import Batch, Message
from eventd.kafka.consumer_loop import ConsumerLoop, LoopSettings
from eventd.kafka.deadletter import DeadLetter, InvalidLimit
from eventd.kafka.types import TopicPartition
from eventd.metrics import REJECTED
from eventd.roles.monitor.observation import Projector
from eventd.roles.monitor.sink import MonitorSink
from eventd.roles.monitor.testdata import Flood, Simulation, Traffic, generate, monitor_config

REPO = Path(__file__).resolve().parents[2]
STORE = SchemaStore.load(str(REPO / "conf" / "schemas"))
T0 = 1_700_000_000_000
RULES = """
settle: 2s
rules:
  - {name: flood, kind: flood, by: ip, event_types: [click], step: 10s, window: 1m, max_events: 30, resolve_after: 1m}
"""
TP0, TP1 = TopicPartition("events.click", 0), TopicPartition("events.click", 1)


def make(tmp_path: Path) -> tuple[Simulation, MonitorSink, list]:
    sim = Simulation.start(monitor_config(RULES, str(tmp_path / "state.json")), T0)
    asked: list = []

    def positions(tps, t_ms):  # type: ignore[no-untyped-def]
        asked.append((sorted(tps), t_ms))
        return {tp: 100 + tp.partition for tp in tps}

    return sim, MonitorSink(sim.monitor, Decoder(STORE), Projector(["ip"]), positions), asked


def test_start_reads_history_by_time_and_resumes_its_own_partitions(tmp_path: Path) -> None:
    sim, sink, asked = make(tmp_path)
    starts = sink.start([TP0, TP1], {})
    assert {tp: s.offset for tp, s in starts.items()} == {TP0: 100, TP1: 101}
    assert asked == [([TP0, TP1], sim.monitor.history_start())]
    batch: Batch = Batch()
    batch.add(TP0, 100, None)
    batch.add(TP0, 101, None)
    sink.write(batch, None)  # type: ignore[arg-type]
    again = sink.start([TP0, TP1], {})          # a rebalance gives both back
    assert again[TP0].offset == 102 and again[TP1].offset == 101
    assert len(asked) == 1                      # TP1 was never counted: asked for once, at the first start


def test_transform_projects_good_messages_and_counts_bad_ones(tmp_path: Path) -> None:
    _, sink, _ = make(tmp_path)
    record = next(e for sec in generate(Traffic(T0, 5)) for e in sec if e["type"] == "click")
    obs = sink.transform(Message("events.click", 0, 7, None, encode(STORE.writer("click"), record), 0))
    assert obs is not None and obs.fields == {"ip": record["ip"]} and obs.received == record["received"]
    before = REJECTED.labels("monitor", "DecodeError")._value.get()
    assert sink.transform(Message("events.click", 0, 8, None, b"garbage", 0)) is None
    assert REJECTED.labels("monitor", "DecodeError")._value.get() == before + 1


def test_the_loop_over_an_in_memory_consumer_raises_the_flood(tmp_path: Path) -> None:
    from fake_kafka import FakeConsumer, FakeProducer   # the shared consumer-loop fakes

    traffic = Traffic(T0, 4 * 60, seed=2, anomalies=(Flood(T0 + 60_000, T0 + 120_000, value="192.0.2.1", per_s=2),))
    values = [encode(STORE.writer(e["type"]), e) for sec in generate(traffic) for e in sec if e["type"] == "click"]
    sim, sink, _ = make(tmp_path)
    sink.positions = lambda tps, t: {tp: 0 for tp in tps}
    consumer = FakeConsumer({TP0: values})
    sim.clock.t = (T0 + 5 * 60_000) / 1000         # the monitor starts after the data was produced: a backlog
    stop = threading.Event()
    consumer.on_poll = lambda c: sim.output.messages and stop.set()
    loop = ConsumerLoop(LoopSettings("monitor", ["events.click"], 500, 0.05), consumer, sink,
                        DeadLetter(FakeProducer(), "dl", "monitor"), InvalidLimit(DeadLetterConfig(1.0, 100)))
    timer = threading.Timer(30, stop.set)          # a safety net: the assertion below then fails
    timer.start()
    loop.run(stop)
    timer.cancel()
    assert [(m["kind"], m["key"]) for m in sim.output.messages][:1] == [("alert", "192.0.2.1")]
    assert consumer.commits, "the loop commits after write"
