"""From one decoded event to one row of ``events_input``: the fixed envelope columns, the
configured payload columns, the other fields as ``extra_keys``/``extra_values``, and the
message's Kafka position.

A row depends only on the message (never on the clock or on the process): a batch rebuilt
after a crash is the identical block, which ClickHouse's block deduplication recognises.
A value that does not fit its column raises :class:`InvalidEvent` (the event is dead-lettered).
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any, Callable

from eventd.config.clickhouse import INTEGER_TYPES, ColumnMapping
from eventd.config.common import EventsConfig
from eventd.errors import CannotStart, InvalidEvent
from eventd.event.binary import READ_HELPERS, read_steps
from eventd.event.codec import HEADER_SIZE, corrupt_body, trailing_bytes
from eventd.event.money import format_micros, to_micros
from eventd.event.schemas import FieldSpec, SchemaEntry, SchemaStore
from eventd.kafka.batch import Message

Row = tuple[Any, ...]
RowReader = Callable[[bytes, str, int, int], Row]    # (message value, topic, partition, offset) -> row
Convert = Callable[[Any], Any]   # field value (None if absent) -> column value; raises InvalidEvent

# (column, ClickHouse type), written exactly as system.columns reports them. No column
# comments: 18.16 refuses a Replicated table with them ("structure in ZooKeeper is too different").
ENVELOPE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("id", "String"), ("type", "String"), ("time", "DateTime('UTC')"), ("time_ms", "UInt64"),
    ("received_ms", "UInt64"), ("host", "String"), ("input", "String"), ("schema_version", "UInt32"))
TAIL_COLUMNS: tuple[tuple[str, str], ...] = (
    ("extra_keys", "Array(String)"), ("extra_values", "Array(String)"),
    ("kafka_topic", "String"), ("kafka_partition", "UInt32"), ("kafka_offset", "UInt64"))



def _int_range(typ: str) -> tuple[int, int]:
    bits = int(typ.removeprefix("U").removeprefix("Int"))
    return (0, 2 ** bits - 1) if typ.startswith("U") else (-2 ** (bits - 1), 2 ** (bits - 1) - 1)


_INT_RANGE = {t: _int_range(t) for t in INTEGER_TYPES}
_AVRO_RANGE = {"int": _INT_RANGE["Int32"], "long": _INT_RANGE["Int64"]}
_DATETIME_MAX = 2 ** 32 - 1          # DateTime is UInt32 seconds: 1970-01-01 .. 2106-02-07
_INTEGER_TEXT = re.compile(r"^\s*-?\d{1,20}\s*$")
_JSON_BOOLEANS = {"true": 1, "false": 0}


@dataclass(frozen=True)
class _Plan:
    """How one writer schema's records become rows (computed once per schema version)."""

    steps: tuple[tuple[bool, str, Convert], ...]   # per configured column: (from the extra map, field, convert)
    unmapped: tuple[tuple[str, bool], ...]          # payload fields without a column: (field, is money)
    values: Callable[[dict[str, Any], dict[str, str]], tuple[Any, ...]]   # (record, extra) -> the steps' values


class RowMapper:
    """Builds rows for the configured columns; one instance per process, shared by destinations."""

    def __init__(self, columns: tuple[ColumnMapping, ...]) -> None:
        self.columns = columns
        self._mapped_fields = frozenset(c.field for c in columns)
        self._plans: dict[bytes, _Plan] = {}
        self._readers: dict[bytes, RowReader] = {}

    @classmethod
    def build(cls, columns: tuple[ColumnMapping, ...], store: SchemaStore, events: EventsConfig) -> "RowMapper":
        """The mapper, after checking that no money field lands in a non-integer column."""
        money = set(events.money_fields)
        for entry in store.by_fingerprint.values():
            money.update(entry.money_fields)
        for c in columns:
            if c.field in money and c.type not in INTEGER_TYPES:
                raise CannotStart(f"clickhouse_loader.columns: {c.column} ({c.type}) is filled from money field "
                                  f"{c.field!r}: money is integer micro-units, map it to Int64 or UInt64 with "
                                  f"money: true")
        return cls(columns)

    def column_types(self) -> list[tuple[str, str]]:
        """Every column of ``events_input`` in row order: (name, type)."""
        return [*ENVELOPE_COLUMNS, *((c.column, c.type) for c in self.columns), *TAIL_COLUMNS]

    def row(self, entry: SchemaEntry, record: dict[str, Any], msg: Message) -> Row:
        """The row for ``record`` (written with ``entry``) read from ``msg``: the rules, applied
        to a decoded record (``reader`` does the same in one step from the message's bytes)."""
        plan = self._plans.get(entry.fingerprint) or self._plan(entry)
        extra: dict[str, str] = record.get("extra") or {}
        values = plan.values(record, extra)
        keys, texts = _extras(extra, tuple(record.get(name) for name, _ in plan.unmapped), plan.unmapped,
                              self._mapped_fields)
        return (record["id"], record["type"], _seconds(record["time"]), record["time"], record["received"],
                record["host"], record["input"], record["schema_version"], *values, keys, texts,
                msg.topic, msg.partition, msg.offset)

    def reader(self, entry: SchemaEntry) -> RowReader:
        """``read(value, topic, partition, offset)``: the row of a message of schema ``entry``
        (its single-object bytes ``value``), decoded and mapped in one generated function — no
        record dict, each column's value taken from the field just read. The same row as
        ``row`` of the decoded record, or the same DecodeError / InvalidEvent."""
        read = self._readers.get(entry.fingerprint)
        if read is None:
            read = self._readers[entry.fingerprint] = self._compile_reader(entry)
        return read

    def _plan(self, entry: SchemaEntry) -> _Plan:
        payload = {f.name: f for f in entry.payload}
        steps = tuple((c.field not in payload, c.field, _converter(c, payload.get(c.field))) for c in self.columns)
        namespace: dict[str, Any] = {}
        exprs = _value_exprs(steps, lambda in_extra, field: f"{'x' if in_extra else 'r'}.get({field!r})", namespace)
        plan = _Plan(steps=steps,
                     unmapped=tuple((f.name, f.money) for f in entry.payload if f.name not in self._mapped_fields),
                     values=_define("def values(r, x):\n    return (" + "".join(f"\n        {e}," for e in exprs)
                                    + "\n    )", "<clickhouse row values>", namespace))
        self._plans[entry.fingerprint] = plan
        return plan

    def _compile_reader(self, entry: SchemaEntry) -> RowReader:
        plan = self._plans.get(entry.fingerprint) or self._plan(entry)
        steps, index = read_steps(entry.raw, None)
        f = {name: f"f{i}" for name, i in index.items()}
        namespace: dict[str, Any] = {"corrupt": corrupt_body, "trailing": trailing_bytes, "entry": entry,
                                     "seconds": _seconds, "extras": _extras, "unmapped": plan.unmapped,
                                     "mapped": self._mapped_fields, "struct": struct}
        namespace.update(READ_HELPERS)
        exprs = _value_exprs(plan.steps, lambda in_extra, field: f"x.get({field!r})" if in_extra else f[field],
                             namespace)
        unmapped = "".join(f"{f[name]}, " for name, _ in plan.unmapped)
        extra = f.get("extra", "None")
        source = "\n".join([
            "def read(d, topic, partition, offset):",
            f"    p = {HEADER_SIZE}",
            "    try:",
            *("    " + line for line in steps),
            "        if p > len(d):",
            "            raise ValueError(f'the record ends {p - len(d)} bytes after the data')",
            "    except (ValueError, IndexError, struct.error) as exc:   # UnicodeDecodeError is a ValueError",
            "        raise corrupt(entry, exc) from None",
            "    if p != len(d):",
            "        raise trailing(entry, len(d) - p)",
            f"    x = {extra} or {{}}",
            "    v = (",             # before the time's check, as in ``row``: the same first error
            *(f"        {e}," for e in exprs),
            "    )",
            f"    keys, texts = extras(x, ({unmapped}), unmapped, mapped)",
            f"    return ({f['id']}, {f['type']}, seconds({f['time']}), {f['time']}, {f['received']}, {f['host']}, "
            f"{f['input']}, {f['schema_version']}, *v, keys, texts, topic, partition, offset)"])
        return _define(source, f"<clickhouse row of {entry.type} v{entry.version}>", namespace)


def _value_exprs(steps: tuple[tuple[bool, str, Convert], ...], source: Callable[[bool, str], str],
                 namespace: dict[str, Any]) -> list[str]:
    """Per step, the expression of its column's value: ``convert(<source of the field>)``,
    where the two commonest conversions (a string or an integer that fits its column, absent
    values as "" or 0, and an integer within its column's narrower range) are written inline
    instead of called — 31 calls per row cost more than the work they do. The converters called
    are put into ``namespace``."""
    exprs = []
    for i, (in_extra, field, convert) in enumerate(steps):
        value = source(in_extra, field)
        if convert is _string_or_empty:
            exprs.append(f"('' if (v{i} := {value}) is None else v{i})")
        elif convert is _int_or_zero:
            exprs.append(f"(0 if (v{i} := {value}) is None else v{i})")
        elif isinstance(convert, _InRange):     # the call only to refuse
            namespace[f"c{i}"] = convert
            exprs.append(f"(0 if (v{i} := {value}) is None else v{i} if {convert.lo} <= v{i} <= {convert.hi} "
                         f"else c{i}(v{i}))")
        else:
            namespace[f"c{i}"] = convert
            exprs.append(f"c{i}({value})")
    return exprs


def _define(source: str, filename: str, namespace: dict[str, Any]) -> Any:
    """The one function that generated ``source`` defines."""
    exec(compile(source, filename, "exec"), namespace)
    return namespace[source.split("(", 1)[0].removeprefix("def ")]


def _seconds(ms: int) -> int:
    seconds = ms // 1000
    if not 0 <= seconds <= _DATETIME_MAX:
        raise InvalidEvent(f"{ms} ms is outside ClickHouse's DateTime range (1970-01-01 to 2106-02-07)", "time")
    return seconds


def _extras(extra: dict[str, str], values: tuple[Any, ...], unmapped: tuple[tuple[str, bool], ...],
            mapped: frozenset[str]) -> tuple[list[str], list[str]]:
    """Payload fields without a column (``values``, in ``unmapped`` order: (field, is money)),
    and the extra map minus what columns took; by name."""
    fields = {k: v for k, v in extra.items() if k not in mapped} if extra else {}
    for (name, money), value in zip(unmapped, values):
        if value is not None:
            fields[name] = format_micros(value) if money else _text(value)
    keys = sorted(fields)
    return keys, [fields[k] for k in keys]


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else str(value)


def _converter(c: ColumnMapping, source: FieldSpec | None) -> Convert:
    """The conversion of column ``c``'s value, specialised for its source: a payload field of the
    writer schema (typed by Avro), or the ``extra`` map (``source`` None: text)."""
    avro = source.avro_type if source is not None else None
    if avro == "string" and c.type == "String":
        return _string_or_empty
    if avro in _AVRO_RANGE and c.type in INTEGER_TYPES:
        return _avro_integer(c, _AVRO_RANGE[avro])
    if c.type in INTEGER_TYPES:
        return _integer(c, from_extra=source is None)
    if c.type.startswith("Float"):
        return _float(c)
    return lambda value: "" if value is None else _text(value)


def _string_or_empty(value: str | None) -> str:
    return "" if value is None else value


def _int_or_zero(value: int | None) -> int:
    return 0 if value is None else value


def _avro_integer(c: ColumnMapping, avro_range: tuple[int, int]) -> Convert:
    """An Avro int/long (money fields already in micro-units): only a narrower column needs a check."""
    lo, hi = _INT_RANGE[c.type]
    if lo <= avro_range[0] and avro_range[1] <= hi:
        return _int_or_zero
    return _InRange(c, lo, hi)


class _InRange:
    """An Avro integer into a column of a narrower range: absent is 0, outside the range is
    refused. (A class, so that the generated row functions can write the check inline.)"""

    def __init__(self, c: ColumnMapping, lo: int, hi: int) -> None:
        self.c, self.lo, self.hi = c, lo, hi

    def __call__(self, value: int | None) -> int:
        if value is None:
            return 0
        if not self.lo <= value <= self.hi:
            raise InvalidEvent(f"{value} is out of range of column {self.c.column} {self.c.type} "
                               f"({self.lo}..{self.hi})", self.c.field)
        return value


def _integer(c: ColumnMapping, from_extra: bool) -> Convert:
    lo, hi = _INT_RANGE[c.type]

    def convert(value: Any) -> int:
        if value is None:
            return 0
        if from_extra and c.money:
            number = to_micros(value, c.field)          # decimal text in units, like the JSON input
        elif isinstance(value, int):                    # bool is an int: True -> 1
            number = int(value)
        elif isinstance(value, str) and _INTEGER_TEXT.match(value):
            number = int(value)
        elif from_extra and value in _JSON_BOOLEANS:    # the extra map holds JSON true/false as text
            number = _JSON_BOOLEANS[value]
        else:
            raise InvalidEvent(f"{value!r} is not an integer (column {c.column} {c.type})"[:200], c.field)
        if not lo <= number <= hi:
            raise InvalidEvent(f"{number} is out of range of column {c.column} {c.type} ({lo}..{hi})", c.field)
        return number
    return convert


def _float(c: ColumnMapping) -> Convert:
    def convert(value: Any) -> float:
        if value is None:
            return 0.0
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise InvalidEvent(f"{value!r} is not a number (column {c.column} {c.type})"[:200], c.field) from None
        if number != number or number in (float("inf"), float("-inf")):
            raise InvalidEvent(f"{value!r} is not a finite number (column {c.column})", c.field)
        return number
    return convert
