"""Shared pieces of the collector's unit tests: a parser from the sample config, a queue in a
temporary directory, and reading back what was appended (decoded)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from eventd.config import load_config
from eventd.event.codec import Decoder
from eventd.event.envelope import EventParser
from eventd.event.schemas import SchemaStore
from eventd.roles.collector.intake import Intake
from eventd.roles.collector.queue import DurableQueue
from eventd.roles.collector.reader import QueueReader

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(str(REPO / "conf" / "eventd.yaml"))
STORE = SchemaStore.load(CFG.events.schema_dir)
DECODER = Decoder(STORE)


def parser() -> EventParser:
    return EventParser(STORE, CFG.events, "events.", 6, "web1")


def line(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def good(i: int = 0, **extra: Any) -> bytes:
    return line(type="click", time=1_767_268_800 + i, campaign_id=100 + i, cost="0.000001", **extra)


def make_intake(path: Path, cap: int = 1 << 24, max_errors: int = 100) -> tuple[Intake, DurableQueue]:
    q = DurableQueue.open(str(path), 1 << 16, cap)
    return Intake(parser(), q, max_errors), q


def queued(q: DurableQueue, start: int = 0) -> list[tuple[str, bytes, dict[str, Any]]]:
    """(topic, key, decoded record) of every record from ``start``."""
    r = QueueReader(q, start)
    out = []
    while batch := r.read(1000):
        out.extend((x.topic, x.key, DECODER.decode(x.value)[1]) for x in batch)
    r.close()
    return out
