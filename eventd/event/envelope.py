"""From one JSON line to an :class:`Event`: validation, the envelope, and the payload.

This is the only place input is interpreted; the collector and ``eventd replay`` both call
:meth:`EventParser.parse`, so a legacy file goes in exactly as a live event does.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from decimal import Decimal
from typing import Any, Callable, NamedTuple

from eventd.config.common import EventsConfig
from eventd.errors import InvalidEvent
from eventd.event.codec import HEADER_SIZE, decode_body
from eventd.event.from_json import envelope_middle, field_value
from eventd.event.schemas import GENERIC, SchemaEntry, SchemaStore

TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
ID_MAX = 64
# Epoch values above this are milliseconds (1e11 s is the year 5138; 1e11 ms is 1973).
_MS_THRESHOLD = 100_000_000_000
_TIME_MAX = 10**14


class Event(NamedTuple):
    """A validated event, encoded: its writer schema, the Kafka routing, and the bytes to send."""

    schema: SchemaEntry
    topic: str
    key: bytes
    value: bytes          # Avro single-object encoding (codec.py)
    received: int         # epoch ms at acceptance

    @property
    def record(self) -> dict[str, Any]:
        """The Avro record (decoded from ``value``: for tests and tools, not for a hot path)."""
        return decode_body(self.schema, self.value, HEADER_SIZE)

    @property
    def id(self) -> str:
        return self.record["id"]


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not allowed")


# (line's object, event id, time, received, input) -> the text of the Kafka key
Keyer = Callable[[dict[str, Any], str, int, int, str], str]


class EventParser:
    """Validates JSON lines against the schema store, encodes them and routes them to topics."""

    _ROUTES_MAX = 10_000   # event types remembered (unknown types are accepted, so bound it)

    def __init__(self, store: SchemaStore, events: EventsConfig, topic_prefix: str, partitions: int,
                 host: str) -> None:
        self.store, self.events, self.host = store, events, host
        self.prefix, self.partitions = topic_prefix, partitions
        self._decoder = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)
        self._routes: dict[str, tuple[SchemaEntry, str, Keyer]] = {}
        self._middle: tuple[int, str, bytes] = (-1, "", b"")

    def parse(self, line: bytes, input_name: str, received_ms: int, make_id: Callable[[], str]) -> Event:
        """Validate and encode one line. Raises :class:`InvalidEvent` naming the field and the
        reason; the envelope is checked first (type, id, time), then the payload in schema order."""
        if len(line) > self.events.max_line_size:
            raise InvalidEvent(f"line of {len(line)} bytes is over the limit of {self.events.max_line_size}")
        obj = self._decode(line)
        event_type = obj.get("type")
        route = self._routes.get(event_type) if type(event_type) is str else None
        if route is None:
            route = self._route(_event_type(event_type))
        schema, topic, keyer = route
        event_id = obj.get("id")
        if not (type(event_id) is str and 0 < len(event_id) <= ID_MAX):
            event_id = _event_id(event_id) or make_id()
        t = obj.get("time")
        time = t if type(t) is int and _MS_THRESHOLD <= t < _TIME_MAX else parse_time(t)
        try:
            value = schema.from_json(obj, event_id, event_type, time, self._middle_of(received_ms, input_name))
        except (ValueError, TypeError, OverflowError) as exc:   # a lone surrogate in a string
            raise InvalidEvent(f"cannot encode: {exc}"[:300]) from None
        key = keyer(obj, event_id, time, received_ms, input_name).encode()
        return Event(schema, topic, key, value, received_ms)

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

    def _middle_of(self, received_ms: int, input_name: str) -> bytes:
        """The envelope's received, host and input bytes, kept while a batch shares them."""
        last = self._middle
        if last[0] != received_ms or last[1] != input_name:
            last = self._middle = (received_ms, input_name, envelope_middle(received_ms, self.host, input_name))
        return last[2]

    def _route(self, event_type: str) -> tuple[SchemaEntry, str, Keyer]:
        """The writer schema, topic and key of a valid event type (remembered)."""
        if not self.store.known(event_type) and self.events.unknown_types == "reject":
            raise InvalidEvent(f"unknown event type {event_type!r} (events.unknown_types is reject)", "type")
        schema = self.store.writer(event_type)
        name = event_type if schema.type != GENERIC else GENERIC
        route = self.events.route(name, self.prefix, self.partitions)
        if len(self._routes) >= self._ROUTES_MAX:
            self._routes.clear()
        found = self._routes[event_type] = (schema, route.topic, _keyer(schema, route.key, event_type, self.host))
        return found


def _keyer(schema: SchemaEntry, key: str, event_type: str, host: str) -> Keyer:
    """The Kafka key of an event: the text of the record's field ``key`` when it is not null,
    else of the line's extra key ``key`` when the line has it, else the event id."""
    constant = {"type": event_type, "host": host, "schema_version": str(schema.version)}.get(key)
    if constant is not None:
        return lambda obj, event_id, time, received, input_name: constant
    by_envelope: dict[str, Keyer] = {
        "id": lambda obj, event_id, time, received, input_name: event_id,
        "time": lambda obj, event_id, time, received, input_name: str(time),
        "received": lambda obj, event_id, time, received, input_name: str(received),
        "input": lambda obj, event_id, time, received, input_name: input_name}
    if key in by_envelope:
        return by_envelope[key]
    spec = next((f for f in schema.payload if f.name == key), None)
    if spec is not None:
        default = spec.default
        # The input type whose text is the key as it stands (from_json has checked its range).
        plain = str if spec.avro_type == "string" else int if spec.avro_type in ("long", "int") and not spec.money \
            else None

        def payload_key(obj: dict[str, Any], event_id: str, time: int, received: int, input_name: str) -> str:
            value = obj.get(key)
            if type(value) is plain:
                return str(value)
            value = default if value is None else field_value(value, spec)
            return event_id if value is None else str(value)
        return payload_key

    def extra_key(obj: dict[str, Any], event_id: str, time: int, received: int, input_name: str) -> str:
        if key not in obj:
            return event_id
        value = obj[key]
        return value if type(value) is str else json.dumps(value, default=str)
    return extra_key


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
        if not 0 <= value < _TIME_MAX or (isinstance(value, Decimal) and not value.is_finite()):
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
