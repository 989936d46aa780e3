"""Avro single-object encoding: ``C3 01``, the writer schema's 8-byte CRC-64-AVRO fingerprint
(little-endian), then the Avro binary body. Any consumer finds the writer schema from the
fingerprint, so schemas evolve without coordination.

The body is written and read by the functions compiled for each schema (``binary.py``); tests
check that the official ``avro`` library and fastavro decode what we write from the schema files
alone, and that we decode what they write.
"""

from __future__ import annotations

import struct
from typing import Any

from eventd.errors import DecodeError
from eventd.event.binary import MAGIC, Projection, Reader
from eventd.event.schemas import SchemaEntry, SchemaStore

HEADER_SIZE = 10


def encode(schema: SchemaEntry, record: dict[str, Any]) -> bytes:
    """One record → single-object encoded bytes; ``TypeError``/``OverflowError``/``ValueError``
    when a value does not fit its field."""
    return MAGIC + schema.fingerprint + schema.write(record)


class Decoder:
    """Decodes single-object messages with any schema version the store holds."""

    def __init__(self, store: SchemaStore) -> None:
        self.store = store

    def split(self, data: bytes) -> tuple[SchemaEntry, memoryview]:
        """The writer schema and the raw Avro body, without decoding it (for container files)."""
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (missing C3 01 header)")
        entry = self.store.by_fingerprint.get(bytes(data[2:HEADER_SIZE]))
        if entry is None:
            raise DecodeError(f"unknown writer schema fingerprint {bytes(data[2:HEADER_SIZE]).hex()}")
        return entry, memoryview(data)[HEADER_SIZE:]

    def decode(self, data: bytes) -> tuple[SchemaEntry, dict[str, Any]]:
        """The writer schema and the record; :class:`DecodeError` says why a message is unreadable."""
        entry = self.split(data)[0]
        return entry, decode_body(entry, bytes(data), HEADER_SIZE)


def decode_body(entry: SchemaEntry, data: bytes, start: int = 0, read: Reader | Projection | None = None) -> Any:
    """The record of schema ``entry`` that fills ``data[start:]`` exactly; :class:`DecodeError`
    when it is truncated, malformed or followed by more bytes. ``read``: a reader of ``entry``'s
    schema that keeps only some fields (``binary.compile_reader``), or some values as a tuple
    (``binary.compile_projection``); by default the whole record."""
    try:
        record, end = (read or entry.read)(data, start)
    except (ValueError, IndexError, struct.error) as exc:   # UnicodeDecodeError is a ValueError
        raise corrupt_body(entry, exc) from None
    if end != len(data):
        raise trailing_bytes(entry, len(data) - end)
    return record


def corrupt_body(entry: SchemaEntry, exc: Exception) -> DecodeError:
    """The error of a body of ``entry`` that its reader refused with ``exc``."""
    return DecodeError(f"corrupt Avro body for {entry.type} v{entry.version}: {type(exc).__name__}: {exc}")


def trailing_bytes(entry: SchemaEntry, count: int) -> DecodeError:
    return DecodeError(f"{count} trailing bytes after the {entry.type} record")


# -- the envelope prefix, read without decoding the rest ----------------------------------------
# Every schema starts with the envelope: id (string), type (string), time (long). Roles that only
# route or deduplicate read these few bytes instead of decoding the record.

def read_long(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    """(position after it, value) of the Avro long (zig-zag varint) at ``pos``."""
    n = shift = 0
    while True:
        if pos >= len(data) or shift > 63:
            raise DecodeError("corrupt Avro body: a truncated or overlong long in the envelope")
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        shift += 7
        if not b & 0x80:
            return pos, (n >> 1) ^ -(n & 1)


def read_string(data: bytes | memoryview, pos: int) -> tuple[int, bytes]:
    """(position after it, raw bytes) of the Avro string at ``pos``."""
    pos, size = read_long(data, pos)
    if size < 0 or pos + size > len(data):
        raise DecodeError(f"corrupt Avro body: a truncated string in the envelope ({size} bytes announced, "
                          f"{len(data) - pos} left)")
    return pos + size, bytes(data[pos:pos + size])


def envelope_id(data: bytes) -> bytes:
    """The event id of a single-object encoded message (the first envelope field)."""
    if len(data) <= HEADER_SIZE or data[:2] != MAGIC:
        raise DecodeError("not Avro single-object encoding (missing C3 01 header)")
    b = data[HEADER_SIZE]
    if b < 128 and not b & 1 and HEADER_SIZE + 1 + (b >> 1) <= len(data):   # under 64 bytes: the common case
        return bytes(data[HEADER_SIZE + 1:HEADER_SIZE + 1 + (b >> 1)])
    return read_string(data, HEADER_SIZE)[1]
