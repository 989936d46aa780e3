"""From one JSON line to an :class:`Event`: validation, the envelope, and the payload.

This is the only place input is interpreted; the collector and ``eventd replay`` both call
:meth:`EventParser.parse`, so a legacy file goes in exactly as a live event does.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable

from eventd.config.common import EventsConfig
from eventd.errors import InvalidEvent
from eventd.event.money import to_micros
from eventd.event.schemas import FieldSpec, SchemaEntry, SchemaStore

TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ID_MAX = 64
_INT_RANGE = {"int": (-2**31, 2**31 - 1), "long": (-2**63, 2**63 - 1)}
_LONG_MIN, _LONG_MAX = _INT_RANGE["long"]
# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 100_000_000_000


@dataclass(frozen=True)
class Event:
    """A validated event: its writer schema, the Avro record, and the Kafka routing."""

    schema: SchemaEntry
    record: dict[str, Any]
    topic: str
    key: bytes

    @property
    def id(self) -> str:
        return self.record["id"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


class EventParser:
    """Validates JSON lines against the schema store and routes them to topics."""

    def __init__(self, store: SchemaStore, events: EventsConfig, topic_prefix: str, partitions: int,
                 host: str) -> None:
        self.store, self.events, self.host = store, events, host
        self.prefix, self.partitions = topic_prefix, partitions
        self._decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)

    def parse(self, line: bytes, input_name: str, received_ms: int, make_id: Callable[[], str]) -> Event:
        """Validate one line. Raises :class:`InvalidEvent` naming the field and the reason."""
        if len(line) > self.events.max_line_size:
            raise InvalidEvent(f"line of {len(line)} bytes is over the limit of {self.events.max_line_size}")
        obj = self._decode(line)
        event_type = _event_type(obj.get("type"))
        schema = self._schema_for(event_type)
        record = {"id": _event_id(obj.get("id")) or make_id(), "type": event_type,
                  "time": parse_time(obj.get("time")), "received": received_ms, "host": self.host,
                  "input": input_name, "schema_version": schema.version}
        _fill_payload(record, obj, schema.payload)
        known = schema.input_names
        record["extra"] = {} if obj.keys() <= known else {
            k: v if type(v) is str else json.dumps(v, default=str) for k, v in obj.items() if k not in known}
        return self._route(schema, record)

    def _decode(self, line: bytes) -> dict[str, Any]:
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidEvent(f"invalid UTF-8 at byte {exc.start}") from None
        try:
            obj = self._decoder.decode(text)
        except ValueError as exc:
            raise InvalidEvent(f"not valid JSON: {exc}") from None
        if not isinstance(obj, dict):
            raise InvalidEvent(f"expected a JSON object, got {type(obj).__name__}")
        return obj

    def _schema_for(self, event_type: str) -> SchemaEntry:
        if not self.store.known(event_type) and self.events.unknown_types == "reject":
            raise InvalidEvent(f"unknown event type {event_type!r} (events.unknown_types is reject)", "type")
        return self.store.writer(event_type)

    def _route(self, schema: SchemaEntry, record: dict[str, Any]) -> Event:
        name = record["type"] if schema.type != "_generic" else "_generic"
        route = self.events.route(name, self.prefix, self.partitions)
        key_value = record.get(route.key)
        if key_value is None:
            key_value = record["extra"].get(route.key, record["id"])
        return Event(schema, record, route.topic, str(key_value).encode())


def _event_type(value: Any) -> str:
    if value is None:
        raise InvalidEvent("missing", "type")
    if not isinstance(value, str) or not TYPE_RE.match(value):
        raise InvalidEvent(f"{value!r} is not an event type (expected [a-z][a-z0-9_]{{0,63}})", "type")
    return value


def _event_id(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or len(value) > ID_MAX:
        raise InvalidEvent(f"expected a non-empty string of at most {ID_MAX} characters", "id")
    return value


def parse_time(value: Any) -> int:
    """ISO-8601 with an offset, epoch seconds or epoch milliseconds → epoch milliseconds."""
    if value is None:
        raise InvalidEvent("missing", "time")
    if isinstance(value, bool):
        raise InvalidEvent("expected ISO-8601 or epoch seconds/milliseconds, got a boolean", "time")
    if isinstance(value, (int, Decimal)):
        if not 0 <= value < 10**14 or (isinstance(value, Decimal) and not value.is_finite()):
            raise InvalidEvent(f"epoch value {value} is out of range", "time")
        return int(value) if value >= _MS_THRESHOLD else int(value * 1000)
    if isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidEvent(f"{value!r} is not ISO-8601", "time") from None
        if dt.tzinfo is None:
            raise InvalidEvent(f"{value!r} has no UTC offset (expected e.g. 2026-01-01T12:00:00+00:00)", "time")
        return int(dt.timestamp() * 1000)
    raise InvalidEvent(f"expected ISO-8601 or epoch seconds/milliseconds, got {type(value).__name__}", "time")


def _fill_payload(record: dict[str, Any], obj: dict[str, Any], fields: tuple[FieldSpec, ...]) -> None:
    """Copy the schema's payload fields from ``obj`` into ``record``. A string for a string field
    and an int in range for a long field, by far the most common, are taken without a call."""
    get = obj.get
    for spec in fields:
        name = spec.name
        value = get(name)
        if value is None:
            if not spec.nullable and spec.default is None:
                raise InvalidEvent("missing", name)
            record[name] = spec.default
        elif spec.money:
            record[name] = to_micros(value, name)
        elif (type(value) is str and spec.avro_type == "string") or (
                type(value) is int and spec.avro_type == "long" and _LONG_MIN <= value <= _LONG_MAX):
            record[name] = value
        else:
            record[name] = _coerce(value, spec)


def _coerce(value: Any, spec: FieldSpec) -> Any:
    """A JSON value as the field's Avro type. Integers given as digit strings are accepted
    (legacy producers quote ids); anything else of the wrong type is refused."""
    t = spec.avro_type
    if t == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    elif t in ("int", "long"):
        if isinstance(value, str) and re.fullmatch(r"-?\d{1,20}", value):
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            lo, hi = _INT_RANGE[t]
            if not lo <= value <= hi:
                raise InvalidEvent(f"{value} overflows a {t} ({lo}..{hi})", spec.name)
            return value
    elif t in ("double", "float"):
        if isinstance(value, (int, Decimal)) and not isinstance(value, bool):
            return float(value)
    elif t == "boolean" and isinstance(value, bool):
        return value
    raise InvalidEvent(f"expected {t}, got {type(value).__name__} {value!r}"[:200], spec.name)
