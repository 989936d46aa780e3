"""The schema store: every Avro schema file in ``events.schema_dir``, by type, version and fingerprint.

Files are named ``<type>.v<N>.avsc``; ``_generic.v<N>.avsc`` carries types that have no
schema of their own. Writers use a type's highest version; readers find any version by
its CRC-64-AVRO fingerprint, so old and new versions live side by side.
Every schema must begin with the envelope fields, exactly as :data:`ENVELOPE` lists them.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from eventd.errors import EventdError
from eventd.event.binary import MAGIC, Reader, UnsupportedSchema, Writer, compile_reader, compile_writer
from eventd.event.from_json import FieldSpec, FromJson, compile_from_json

GENERIC = "_generic"
ENVELOPE: tuple[tuple[str, str], ...] = (
    ("id", "string"), ("type", "string"), ("time", "long"), ("received", "long"),
    ("host", "string"), ("input", "string"), ("schema_version", "int"))
ENVELOPE_INPUT = ("id", "type", "time")   # the envelope fields an input line may carry
_FILE = re.compile(r"^(_generic|[a-z][a-z0-9_]{0,63})\.v(\d+)\.avsc$")


class SchemaError(EventdError):
    """A schema file is unusable; the message names the file."""


@dataclass(frozen=True)
class SchemaEntry:
    type: str                     # event type, or "_generic"
    version: int
    path: str
    schema: dict[str, Any] = field(repr=False)   # parsed by fastavro
    raw: dict[str, Any] = field(repr=False)      # as written in the file (for Avro container headers)
    fingerprint: bytes                           # 8 bytes, little-endian CRC-64-AVRO of the canonical form
    payload: tuple[FieldSpec, ...] = field(repr=False)
    write: Writer = field(repr=False, compare=False)     # record -> Avro body (binary.py)
    read: Reader = field(repr=False, compare=False)      # (bytes, start) -> (record, end)
    from_json: FromJson = field(repr=False, compare=False)  # JSON object -> single-object encoding (from_json.py)
    money_fields: tuple[str, ...] = ()
    input_names: frozenset[str] = frozenset()    # the keys of an input line this schema knows


class SchemaStore:
    """All schemas of a directory. Immutable after construction."""

    def __init__(self, entries: list[SchemaEntry]) -> None:
        self.by_fingerprint = {e.fingerprint: e for e in entries}
        self.latest: dict[str, SchemaEntry] = {}
        for e in sorted(entries, key=lambda e: e.version):
            self.latest[e.type] = e
        if GENERIC not in self.latest:
            raise SchemaError(f"no {GENERIC}.vN.avsc schema: unknown event types could not be carried")

    @classmethod
    def load(cls, directory: str) -> "SchemaStore":
        entries = [_load_file(os.path.join(directory, name))
                   for name in sorted(os.listdir(directory)) if name.endswith(".avsc")]
        return cls(entries)

    def writer(self, event_type: str) -> SchemaEntry:
        """The schema new events of ``event_type`` are written with (its latest, else generic)."""
        return self.latest.get(event_type) or self.latest[GENERIC]

    def known(self, event_type: str) -> bool:
        return event_type in self.latest and event_type != GENERIC


def _load_file(path: str) -> SchemaEntry:
    m = _FILE.match(os.path.basename(path))
    if not m:
        raise SchemaError(f"{path}: schema files must be named <type>.v<N>.avsc")
    try:
        with open(path, encoding="utf-8") as fh:
            raw = json.load(fh)
        parsed = fastavro.parse_schema(raw)
    except (OSError, ValueError, fastavro.schema.SchemaParseException) as exc:
        raise SchemaError(f"{path}: {exc}") from None
    _check_envelope(path, raw)
    payload = tuple(_field_spec(f) for f in raw["fields"][len(ENVELOPE):] if f["name"] != "extra")
    fp = bytes.fromhex(fingerprint(to_parsing_canonical_form(parsed), "CRC-64-AVRO"))
    version = int(m.group(2))
    input_names = frozenset(ENVELOPE_INPUT).union(f.name for f in payload)
    try:
        write, read = compile_writer(raw), compile_reader(raw)
        from_json = compile_from_json(raw, payload, MAGIC + fp, version, input_names)
    except UnsupportedSchema as exc:
        raise SchemaError(f"{path}: {exc}") from None
    # ``schema`` is kept in fastavro's hinted form for what fastavro still does here (schema
    # resolution between versions, container files): without the hint it re-parses every call.
    return SchemaEntry(type=m.group(1), version=version, path=path, schema=parsed, raw=raw,
                       fingerprint=fp, payload=payload,
                       money_fields=tuple(f.name for f in payload if f.money),
                       input_names=input_names, write=write, read=read, from_json=from_json)


def _check_envelope(path: str, raw: dict[str, Any]) -> None:
    fields = raw.get("fields", []) if raw.get("type") == "record" else []
    got = tuple((f["name"], f["type"]) for f in fields[:len(ENVELOPE)])
    if got != ENVELOPE:
        raise SchemaError(f"{path}: a record whose first fields are the envelope {ENVELOPE}")
    last = fields[-1]
    if last["name"] != "extra" or last["type"] != {"type": "map", "values": "string"}:
        raise SchemaError(f"{path}: the last field must be 'extra', a map of strings")


def _field_spec(f: dict[str, Any]) -> FieldSpec:
    t = f["type"]
    nullable = isinstance(t, list) and "null" in t
    base = next(x for x in t if x != "null") if isinstance(t, list) else t
    if not isinstance(base, str) or base not in ("string", "long", "int", "double", "float", "boolean"):
        raise SchemaError(f"field {f['name']}: payload fields must be string, long, int, double, float or boolean")
    money = bool(f.get("eventd.money"))
    if money and base != "long":
        raise SchemaError(f"field {f['name']}: money fields must be long (micro-units)")
    return FieldSpec(f["name"], base, nullable, money, f.get("default"))
