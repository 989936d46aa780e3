"""The compiled JSON → Avro path (``eventd/event/from_json.py``) against the readable rules.

``reference`` below is the event parser written the plain way: validate each payload field into a
record dict with :func:`field_value`, fill the extra map, encode the record with the schema's
writer (itself checked against fastavro and the official ``avro`` package in test_avro_binary and
test_event) and pick the key from the record. ``EventParser.parse`` must give the same bytes, topic
and key, or the same rejection, for every line.
"""

from __future__ import annotations

import dataclasses
import json
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from eventd.config import load_config
from eventd.config.common import EventsConfig
from eventd.errors import InvalidEvent
from eventd.event.codec import encode
from eventd.event.envelope import _MS_THRESHOLD, EventParser, _event_id, _event_type, parse_time
from eventd.event.from_json import extra_map, field_value
from eventd.event.schemas import GENERIC, SchemaStore

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(str(REPO / "conf" / "eventd.yaml"))
STORE = SchemaStore.load(CFG.events.schema_dir)
HOST, RECEIVED = "web1", 1_700_000_000_123


def reference(line: bytes, events: EventsConfig, input_name: str, store: SchemaStore = STORE) -> tuple[Any, ...]:
    """(topic, key, value) of ``line``, or ("invalid", field, reason): the rules field by field."""
    try:
        obj = json.loads(line, parse_float=Decimal)
        event_type = _event_type(obj.get("type"))
        if not store.known(event_type) and events.unknown_types == "reject":
            raise InvalidEvent(f"unknown event type {event_type!r} (events.unknown_types is reject)", "type")
        schema = store.writer(event_type)
        record = {"id": _event_id(obj.get("id")) or "made-id", "type": event_type,
                  "time": parse_time(obj.get("time")), "received": RECEIVED, "host": HOST,
                  "input": input_name, "schema_version": schema.version}
        for spec in schema.payload:
            value = obj.get(spec.name)
            if value is None:
                if not spec.nullable and spec.default is None:
                    raise InvalidEvent("missing", spec.name)
                record[spec.name] = spec.default
            else:
                record[spec.name] = field_value(value, spec)
        record["extra"] = extra_map(obj, schema.input_names)
        try:
            value = encode(schema, record)
        except (ValueError, TypeError, OverflowError) as exc:
            raise InvalidEvent(f"cannot encode: {exc}"[:300]) from None
    except InvalidEvent as exc:
        return "invalid", exc.field, exc.reason
    route = events.route(event_type if schema.type != GENERIC else GENERIC, "events.", 6)
    key = record.get(route.key)
    if key is None:
        key = record["extra"].get(route.key, record["id"])
    return route.topic, str(key).encode(), value


def compiled(line: bytes, events: EventsConfig, input_name: str, store: SchemaStore = STORE) -> tuple[Any, ...]:
    parser = EventParser(store, events, "events.", 6, HOST)
    try:
        ev = parser.parse(line, input_name, RECEIVED, lambda: "made-id")
    except InvalidEvent as exc:
        return "invalid", exc.field, exc.reason
    return ev.topic, ev.key, ev.value


# Values a field may be given: every JSON type, the edges of each Avro type's range, digit strings,
# money in its forms, and what the rules refuse.
VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 8191, 8192, -8193, 16383, 16384, 2**31 - 1, 2**31, -2**31 - 1, 2**63 - 1, 2**63,
    -2**63, -2**63 - 1, 10**20, 1.5, 0.000001, 0.0000001, 1e30, "", "x", "é ✓ 日本", "12", "-12", "007",
    "99999999999999999999", "0.004762", "1.", "abc", "1e3", [], [1, "a"], {"k": 1}, {"nested": {"x": None}},
    "a" * 9000,
]
MONEY: list[Any] = ["0.004762", "123456789012.999999", "0", 5, 0, 2.5, 0.1, "9223372036854.775807",
                    "9223372036854.775808", 9223372036855, -1, "-1", 0.0000001, True, "x", None]
TYPES = ["impression", "click", "conversion", "bid", "video_view", "Bad!"]
TIMES: list[Any] = [1_764_237_600, 1_764_237_600_123, _MS_THRESHOLD, _MS_THRESHOLD - 1, 10**14, 10**14 - 1, -1,
                    1.5, "2026-11-27T10:00:00Z", "2026-11-27T10:00:00", "soon", True, None]


def random_line(rng: random.Random, store: SchemaStore = STORE, types: list[str] = TYPES) -> bytes:
    obj: dict[str, Any] = {}
    if rng.random() < 0.97:
        obj["type"] = rng.choice(types)
    if rng.random() < 0.95:
        obj["time"] = rng.choice(TIMES) if rng.random() < 0.3 else TIMES[rng.randrange(2)]
    if rng.random() < 0.5:
        obj["id"] = rng.choice(["e-1", "", "x" * 64, "x" * 65, 7, None])
    schema = store.writer(obj.get("type") if isinstance(obj.get("type"), str) else GENERIC)
    for spec in schema.payload:
        r = rng.random()
        if r < 0.2:
            continue
        pool = MONEY if spec.money else VALUES
        # Mostly values of the field's own kind, so that lines get past the first field.
        if r < 0.85 and not spec.money:
            pool = {"string": ["site-1", "é", "", "a" * 9000], "boolean": [True, False],
                    "double": [1.5, 0, -2], "float": [0.25, 3]}.get(spec.avro_type, [0, 7, 8191, 16384, 2**40, -5])
        obj[spec.name] = rng.choice(pool)
    for i in range(rng.choice([0, 0, 1, 3])):
        obj[f"x{i}"] = rng.choice(VALUES)
    return json.dumps(obj).encode()


def events_with_key(key: str) -> EventsConfig:
    return dataclasses.replace(CFG.events, default_key=key, types={})


@pytest.mark.parametrize("seed", range(6))
def test_compiled_path_gives_what_the_rules_give(seed: int) -> None:
    rng = random.Random(seed)
    outcomes = set()
    for _ in range(1500):
        line = random_line(rng)
        expected = reference(line, CFG.events, "tcp")
        assert compiled(line, CFG.events, "tcp") == expected, line
        outcomes.add(expected[0] == "invalid")
    assert outcomes == {True, False}     # both accepted and rejected lines were compared


@pytest.mark.parametrize("key", ["id", "type", "time", "received", "host", "input", "schema_version",
                                 "campaign_id", "site_id", "country", "cost", "won", "x0", "absent"])
def test_every_kind_of_key_is_the_records(key: str) -> None:
    events = events_with_key(key)
    rng = random.Random(key)
    for _ in range(300):
        line = random_line(rng)
        assert compiled(line, events, "http") == reference(line, events, "http"), line


def test_unknown_types_refused_when_configured() -> None:
    events = dataclasses.replace(CFG.events, unknown_types="reject")
    line = b'{"type":"video_view","time":1764237600}'
    assert compiled(line, events, "tcp") == reference(line, events, "tcp")
    assert compiled(line, events, "tcp")[:2] == ("invalid", "type")


@pytest.mark.parametrize("line", [
    b'{"type":"click","time":1764237600,"id":"\\ud800"}',
    b'{"type":"click","time":1764237600,"country":"\\udfff"}',
    b'{"type":"click","time":1764237600,"\\ud800":"x"}',
    b'{"type":"click","time":1764237600,"note":"\\ud800"}',
])
def test_a_lone_surrogate_cannot_be_encoded(line: bytes) -> None:
    """JSON may escape half a surrogate pair; such a string has no UTF-8 and is refused as such."""
    got = compiled(line, CFG.events, "tcp")
    assert got == reference(line, CFG.events, "tcp")
    assert got[0] == "invalid" and got[2].startswith("cannot encode")


# Every kind of field the store admits, in each union order, required or with a default.
ODD_FIELDS = [
    {"name": "must", "type": "long"},                                   # required: "missing" when absent
    {"name": "count", "type": "int", "default": 3},
    {"name": "late", "type": ["long", "null"], "default": 5},           # the value branch first
    {"name": "ratio", "type": ["null", "double"], "default": None},
    {"name": "share", "type": "float", "default": 0.5},
    {"name": "flag", "type": "boolean", "default": False},
    {"name": "maybe", "type": ["null", "boolean"], "default": None},
    {"name": "label", "type": "string", "default": "none"},
    {"name": "note", "type": ["string", "null"], "default": "n/a"},
    {"name": "fee", "type": "long", "default": 0, "eventd.money": True},
    {"name": "tip", "type": ["null", "long"], "default": None, "eventd.money": True},
]


def test_every_field_kind_of_the_subset(tmp_path: Path) -> None:
    for f in (REPO / "conf" / "schemas").iterdir():
        (tmp_path / f.name).write_text(f.read_text())
    raw = json.loads((tmp_path / "_generic.v1.avsc").read_text())
    raw["name"], raw["fields"] = "Odd", raw["fields"][:7] + ODD_FIELDS + raw["fields"][-1:]
    (tmp_path / "odd.v1.avsc").write_text(json.dumps(raw))
    store = SchemaStore.load(str(tmp_path))
    rng = random.Random(7)
    outcomes = set()
    for _ in range(3000):
        line = random_line(rng, store, ["odd"])
        expected = reference(line, CFG.events, "udp", store)
        assert compiled(line, CFG.events, "udp", store) == expected, line
        outcomes.add(expected[0] if expected[0] == "invalid" else "ok")
        if expected[0] == "invalid":
            outcomes.add(expected[1])
    assert {"ok", "invalid", "must", "count", "fee", "ratio", "flag"} <= outcomes
