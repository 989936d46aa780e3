"""From a parsed JSON object straight to the Avro single-object encoding, compiled once per schema.

The collector and ``eventd replay`` take every event through this. Validating the payload into a
record dict and then encoding that dict walked every field twice and built a dict per event;
this module generates, per schema, one function that checks each field and writes its bytes in
the same step (``bench/codec.py`` measures it).

Contract of ``compile_from_json(raw, payload, header, version, known)(obj, event_id, event_type, time, middle)``:
- ``obj`` is the JSON object of one input line, parsed with ``parse_float=Decimal``; the envelope
  values ``event_id``, ``event_type`` and ``time`` are already validated by the caller, and
  ``middle`` is the Avro encoding of ``received``, ``host`` and ``input`` (:func:`envelope_middle`).
- The result is ``header`` (``C3 01`` and the schema fingerprint) followed by the Avro body of
  the record whose payload fields are taken from ``obj`` by the rules of :func:`coerce` and
  :func:`eventd.event.money.to_micros`, missing or null fields being the schema default, and whose
  ``extra`` map holds ``obj``'s other keys (strings as they are, any other value as its JSON).
- A field that does not validate raises :class:`InvalidEvent` naming it; the fields are checked in
  schema order and the first fault is reported. A string that cannot be encoded (a lone
  surrogate from a JSON ``\\ud800`` escape) raises ``UnicodeEncodeError``.
- The common cases (a string for a string field, an in-range integer for a long or int field)
  are written inline; every other value goes through the same functions as above, so the
  generated code decides nothing the readable rules do not.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Callable

from eventd.errors import InvalidEvent
from eventd.event import binary
from eventd.event.money import to_micros

FromJson = Callable[[dict[str, Any], str, str, int, bytes], bytes]

_INT_RANGE = {"int": (-2**31, 2**31 - 1), "long": (-2**63, 2**63 - 1)}
_DIGITS = re.compile(r"-?\d{1,20}")


@dataclass(frozen=True)
class FieldSpec:
    """One payload field: its Avro base type, whether it may be null, whether it is money."""

    name: str
    avro_type: str
    nullable: bool
    money: bool
    default: Any


def coerce(value: Any, spec: FieldSpec) -> Any:
    """A JSON value as the field's Avro type. Integers given as digit strings are accepted
    (legacy producers quote ids); anything else of the wrong type is refused."""
    t = spec.avro_type
    if t == "string":
        if isinstance(value, str):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
    elif t in ("int", "long"):
        if isinstance(value, str) and _DIGITS.fullmatch(value):
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


def field_value(value: Any, spec: FieldSpec) -> Any:
    """The record value of a payload field given ``value`` (not None) in the input line."""
    return to_micros(value, spec.name) if spec.money else coerce(value, spec)


def envelope_middle(received: int, host: str, input_name: str) -> bytes:
    """The Avro encoding of the envelope's ``received``, ``host`` and ``input`` fields, which
    are the same for every line of a batch."""
    return binary.put_long(received) + binary.put_string(host) + binary.put_string(input_name)


def extra_map(obj: dict[str, Any], known: frozenset[str]) -> dict[str, str]:
    """The keys of ``obj`` no schema field takes: strings as they are, other values as JSON."""
    return {k: v if type(v) is str else json.dumps(v, default=str) for k, v in obj.items() if k not in known}


def compile_from_json(raw: dict[str, Any], payload: tuple[FieldSpec, ...], header: bytes, version: int,
                      known: frozenset[str]) -> FromJson:
    """The function described in the module docstring for schema ``raw`` (the JSON of a
    ``.avsc`` file whose first seven fields are the envelope and whose last is ``extra``);
    ``payload`` lists the fields in between, ``version`` is the schema's, ``known`` the keys of
    an input line the schema takes."""
    fields = binary.fields_of(raw)
    rules = {spec.name: spec for spec in payload}
    namespace: dict[str, Any] = {f"put_{k}": f for k, f in binary.PUT.items()}
    namespace |= {"SMALL": binary.SMALL, "varint": binary.varint, "put_string_map": binary.put_string_map,
                  "extra_map": extra_map, "field_value": field_value, "to_micros": to_micros,
                  "InvalidEvent": InvalidEvent, "HEADER": header, "VERSION": binary.put_int(version),
                  "KNOWN": known}
    body, parts = [], []
    for i, (name, kind, null_index) in enumerate(fields):
        spec = rules.get(name)
        if spec is None:
            continue            # an envelope field (the arguments) or extra (the last part)
        namespace[f"S{i}"] = spec
        body += _field_lines(i, name, kind, null_index, spec, namespace)
        parts.append(f"p{i}")
    src = "\n".join(["def from_json(o, event_id, event_type, time, middle):",
                     "    get = o.get",
                     *("    " + line for line in body),
                     "    b = event_id.encode()",
                     "    t = event_type.encode()",
                     "    return b''.join((HEADER, SMALL[len(b) << 1] if len(b) < 8192 else varint(len(b) << 1), b,",
                     "                     SMALL[len(t) << 1] if len(t) < 8192 else varint(len(t) << 1), t,",
                     "                     varint((time << 1) ^ (time >> 63)), middle, VERSION,",
                     f"                     {', '.join(parts)}{',' if parts else ''}",
                     "                     b'\\x00' if o.keys() <= KNOWN else put_string_map(extra_map(o, KNOWN))))"])
    exec(compile(src, f"<from json to {raw.get('name')}>", "exec"), namespace)
    return namespace["from_json"]


def _field_lines(i: int, name: str, kind: str, null_index: int | None, spec: FieldSpec,
                 namespace: dict[str, Any]) -> list[str]:
    """Statements setting ``p<i>`` to the Avro encoding of payload field ``name`` of ``o``."""
    tag = b"" if null_index is None else binary.union_tags(null_index)[1]
    namespace[f"T{i}"] = tag
    prefix = f"T{i} + " if tag else ""
    if spec.default is not None:
        namespace[f"M{i}"] = tag + binary.PUT[kind](spec.default)
        missing = [f"    p{i} = M{i}"]
    elif null_index is not None:
        namespace[f"M{i}"] = binary.union_tags(null_index)[0]
        missing = [f"    p{i} = M{i}"]
    else:
        missing = [f"    raise InvalidEvent('missing', {name!r})"]
    if spec.money or kind in ("long", "int"):
        shift = 63 if spec.money or kind == "long" else 31
        lo, hi = _INT_RANGE[kind]
        take = [f"    v = to_micros(v, {name!r})"] if spec.money else [
            f"    if not (type(v) is int and {lo} <= v <= {hi}):", f"        v = field_value(v, S{i})"]
        present = [*take, f"    z = (v << 1) ^ (v >> {shift})",
                   f"    p{i} = {prefix}(SMALL[z] if z < 16384 else varint(z))"]
    elif kind == "string":
        present = ["    if type(v) is not str:", f"        v = field_value(v, S{i})", "    b = v.encode()",
                   f"    p{i} = {prefix}(SMALL[len(b) << 1] + b if len(b) < 8192 else varint(len(b) << 1) + b)"]
    else:
        present = [f"    p{i} = {prefix}put_{kind}(field_value(v, S{i}))"]
    return [f"v = get({name!r})", "if v is None:", *missing, "else:", *present]
