"""The ``monitor`` role: reads the event topics, keeps sliding windows in memory, and raises alerts
for technical issues and fraud (docs/roles/monitor.md).

- ``observation.py``  the few fields of an event the rules read
- ``windows.py``      per-key counts in time buckets with running window sums
- ``timebase.py``     the watermark: up to which data time the windows are complete
- ``rules.py``        one class per rule kind: traffic, ctr, flood, clock
- ``incidents.py``    one alert per incident, then one resolved message
- ``alerts.py``       the outputs: log, Kafka alert topic, webhook
- ``state.py``        the state file: what was judged and announced (survives restarts)
- ``engine.py``       ties them together on an injectable clock
- ``sink.py``         the consumer-loop sink
"""

from __future__ import annotations

import logging
import os

from eventd.config import Config
from eventd.config.common import DeadLetterConfig
from eventd.config.monitor import ALL, MonitorConfig
from eventd.errors import CannotStart
from eventd.event.codec import Decoder
from eventd.event.schemas import SchemaStore
from eventd.kafka.consumer import new_consumer
from eventd.kafka.consumer_loop import ConsumerLoop, LoopSettings
from eventd.kafka.deadletter import DeadLetter, InvalidLimit
from eventd.kafka.positions import positions_by_time
from eventd.kafka.producer import Producer
from eventd.kafka.topics import create_topics, event_topics, existing_topics
from eventd.roles.base import RoleContext
from eventd.roles.monitor.alerts import AlertOutputs, KafkaOutput, WebhookOutput
from eventd.roles.monitor.engine import Monitor
from eventd.roles.monitor.observation import Projector
from eventd.roles.monitor.rules import build_rule
from eventd.roles.monitor.sink import MonitorSink
from eventd.roles.monitor.state import load_state

log = logging.getLogger(__name__)
ENVELOPE = ("id", "type", "time", "received", "host", "input", "schema_version")
BATCH_ITEMS, BATCH_AGE = 10_000, 1.0    # write() only counts in memory: small, frequent batches


def setup(cfg: Config) -> list[str]:
    """Create the alert topic (one partition: every incident's messages in order). Idempotent."""
    created = create_topics(cfg.kafka, {cfg.monitor.alert_topic: 1})
    return [f"created the alert topic {t}" for t in created]


def main(ctx: RoleContext) -> None:
    cfg, m = ctx.config, ctx.config.monitor
    topics = event_topics(cfg, ctx.schemas, m.event_types)
    check_start(cfg, ctx.schemas, topics)
    producer = Producer(cfg.kafka, "monitor")
    try:
        webhook = WebhookOutput(m.webhook) if m.webhook.url else None
        outputs = AlertOutputs(KafkaOutput(producer, m.alert_topic), webhook, cfg.node.host, m.recent_alerts)
        monitor = Monitor(m, [build_rule(r, m.max_keys) for r in m.rules], outputs, load_state(m.state_file))
        consumer = new_consumer(cfg.kafka, f"monitor-{ctx.slot}", m.group_id)
        sink = MonitorSink(monitor, Decoder(ctx.schemas), Projector(r.by for r in m.rules),
                           positions_by_time(consumer))
        loop = ConsumerLoop(LoopSettings("monitor", topics, BATCH_ITEMS, BATCH_AGE), consumer, sink,
                            DeadLetter(producer, cfg.kafka.topics.dead_letter, "monitor"),
                            InvalidLimit(DeadLetterConfig(1.0, 10_000)))  # transform never raises
        log.info("monitoring %d topic(s) with %d rule(s); alerts to %s%s", len(topics), len(m.rules),
                 m.alert_topic, " and the webhook" if webhook else "")
        loop.run(ctx.stop)
    finally:
        producer.close()


def check_start(cfg: Config, store: SchemaStore, topics: list[str]) -> None:
    """What can never work as configured: raises :class:`CannotStart` naming it."""
    m = cfg.monitor
    if m.alert_topic in topics:
        raise CannotStart(f"monitor.alert_topic {m.alert_topic} is also an event topic")
    check_rule_fields(m, store)
    _check_state_dir(m)
    if m.alert_topic not in existing_topics(cfg.kafka):
        raise CannotStart(f"the alert topic {m.alert_topic} does not exist: run `eventd setup`")


def check_rule_fields(m: MonitorConfig, store: SchemaStore) -> None:
    """Every rule's ``by`` must be a field of at least one schema of the types it reads."""
    for rule in m.rules:
        types = rule.event_types or tuple(store.latest)
        fields = set(ENVELOPE)
        for t in types:
            fields.update(f.name for f in store.writer(t).payload)
        if rule.by != ALL and rule.by not in fields:
            raise CannotStart(f"monitor rule {rule.name}: no schema of {', '.join(types)} has a field "
                              f"{rule.by!r} (fields: {', '.join(sorted(fields))})")


def _check_state_dir(m: MonitorConfig) -> None:
    directory = os.path.dirname(m.state_file) or "."
    try:
        os.makedirs(directory, exist_ok=True)
    except OSError as exc:
        raise CannotStart(f"cannot create the directory of monitor.state_file {m.state_file}: {exc}") from None
    if not os.access(directory, os.W_OK):
        raise CannotStart(f"monitor.state_file {m.state_file}: directory {directory} is not writable")
