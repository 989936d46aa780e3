"""The compiled Avro writer and reader (eventd/event/binary.py) against fastavro and the official
``avro`` package: same bytes, same records, and clear errors for what does not fit."""

from __future__ import annotations

import io
import json
import random
import struct
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer

from eventd.errors import DecodeError
from eventd.event.binary import (UnsupportedSchema, compile_projection, compile_reader, compile_writer, get_long,
                                 varint)
from eventd.event.codec import decode_body

SCHEMAS = sorted((Path(__file__).resolve().parents[2] / "conf" / "schemas").glob("*.avsc"))
EDGE_LONGS = (0, 1, -1, 63, -64, 64, 8191, -8192, 8192, 2**31 - 1, -2**31, 2**53 + 1, 2**63 - 1, -2**63)
EDGE_INTS = (0, -1, 8191, -8192, 8192, 2**31 - 1, -2**31)
TEXTS = ("", "a", "Grüße", "日本語", "x" * 63, "y" * 64, "z" * 8191, "w" * 9000, "ü" * 5000)

ALL_TYPES = {"type": "record", "name": "T", "fields": [
    {"name": "s", "type": "string"}, {"name": "l", "type": "long"}, {"name": "i", "type": "int"},
    {"name": "d", "type": "double"}, {"name": "f", "type": "float"}, {"name": "b", "type": "boolean"},
    {"name": "ns", "type": ["null", "string"], "default": None}, {"name": "sn", "type": ["string", "null"]},
    {"name": "nl", "type": ["null", "long"], "default": None}, {"name": "ni", "type": ["null", "int"]},
    {"name": "nd", "type": ["null", "double"]}, {"name": "nb", "type": ["null", "boolean"]},
    {"name": "dl", "type": "long", "default": 7},
    {"name": "m", "type": {"type": "map", "values": "string"}, "default": {}}]}


def value(rng: random.Random, t: Any) -> Any:
    if isinstance(t, list):
        return None if rng.random() < 0.3 else value(rng, next(x for x in t if x != "null"))
    if isinstance(t, dict):
        return {rng.choice(TEXTS)[:20] + str(k): rng.choice(TEXTS) for k in range(rng.choice((0, 0, 1, 3)))}
    return {"string": lambda: rng.choice(TEXTS), "long": lambda: rng.choice(EDGE_LONGS + (rng.getrandbits(40),)),
            "int": lambda: rng.choice(EDGE_INTS), "double": lambda: rng.choice((0.0, -1.5, 1e300, rng.random())),
            "float": lambda: rng.choice((0.0, 0.5, -2.25)), "boolean": lambda: rng.random() < 0.5}[t]()


def records(raw: dict[str, Any], n: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    return [{f["name"]: value(rng, f["type"]) for f in raw["fields"]} for _ in range(n)]


def fastavro_bytes(raw: dict[str, Any], record: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    schemaless_writer(buf, parse_schema(raw), record)
    return buf.getvalue()


@pytest.mark.parametrize("raw", [ALL_TYPES] + [json.loads(p.read_text()) for p in SCHEMAS],
                         ids=["all-types"] + [p.stem for p in SCHEMAS])
def test_same_bytes_as_fastavro_and_both_ways_round_trip(raw: dict[str, Any]) -> None:
    write, read = compile_writer(raw), compile_reader(raw)
    parsed = parse_schema(raw)
    for record in records(raw, 300, seed=len(raw["fields"])):
        ours = write(record)
        assert ours == fastavro_bytes(raw, record)
        assert read(ours, 0) == (schemaless_reader(io.BytesIO(ours), parsed, None), len(ours))


@pytest.mark.parametrize("raw", [ALL_TYPES] + [json.loads(p.read_text()) for p in SCHEMAS],
                         ids=["all-types"] + [p.stem for p in SCHEMAS])
def test_a_reader_of_some_fields_gives_exactly_those_and_ends_where_the_full_one_does(raw: dict[str, Any]) -> None:
    names = [f["name"] for f in raw["fields"]]
    write, full = compile_writer(raw), compile_reader(raw)
    for keep in (frozenset(), frozenset(names[::2]), frozenset(names[1::3]), frozenset(names)):
        some = compile_reader(raw, keep)
        for record in records(raw, 200, seed=len(keep)):
            body = write(record)
            got, end = full(body, 0)
            assert some(body, 0) == ({k: v for k, v in got.items() if k in keep}, end)


def test_a_reader_of_some_fields_refuses_every_truncation_and_bad_union_index() -> None:
    write, some = compile_writer(ALL_TYPES), compile_reader(ALL_TYPES, frozenset({"l"}))
    for record in records(ALL_TYPES, 20, seed=5):
        body = write(record)
        for cut in range(len(body)):
            with pytest.raises((ValueError, IndexError)):
                some(body[:cut], 0)
    raw = {"type": "record", "name": "R", "fields": [{"name": "x", "type": ["null", "string"]},
                                                     {"name": "y", "type": "long"}]}
    with pytest.raises(ValueError, match="union index 4 of field x"):
        compile_reader(raw, frozenset({"y"}))(b"\x04\x02", 0)
    with pytest.raises(ValueError, match="-1 bytes"):
        compile_reader(raw, frozenset({"y"}))(b"\x02\x01\x02", 0)


def test_the_official_avro_package_reads_what_we_write() -> None:
    schema = avro.schema.parse(json.dumps(ALL_TYPES))
    write = compile_writer(ALL_TYPES)
    for record in records(ALL_TYPES, 100, seed=3):
        got = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(write(record))))
        assert got == fastavro_roundtrip(record)


def fastavro_roundtrip(record: dict[str, Any]) -> dict[str, Any]:
    """The record as Avro gives it back (floats at 32-bit precision)."""
    return schemaless_reader(io.BytesIO(fastavro_bytes(ALL_TYPES, record)), parse_schema(ALL_TYPES), None)


def test_reads_at_an_offset_and_map_blocks_with_a_byte_size() -> None:
    raw = {"type": "record", "name": "M", "fields": [{"name": "m", "type": {"type": "map", "values": "string"}}]}
    # Two blocks, the first with a negative count and its byte size (writers may do that).
    body = b"\x01" + b"\x08" + b"\x02a\x02b" + b"\x02" + b"\x02c\x02d" + b"\x00"
    assert compile_reader(raw)(b"junk" + body, 4) == ({"m": {"a": "b", "c": "d"}}, 4 + len(body))


def test_missing_fields_take_their_defaults() -> None:
    write = compile_writer(ALL_TYPES)
    partial = {"s": "x", "l": 1, "i": 2, "d": 0.0, "f": 0.0, "b": True, "sn": None, "ni": None, "nd": None,
               "nb": None}
    full = partial | {"ns": None, "nl": None, "dl": 7, "m": {}}
    assert write(partial) == write(full) == fastavro_bytes(ALL_TYPES, full)
    with pytest.raises(KeyError):
        write({k: v for k, v in partial.items() if k != "s"})


@pytest.mark.parametrize("field, bad, error", [
    ("l", 2**63, OverflowError), ("l", -2**63 - 1, OverflowError), ("i", 2**31, OverflowError),
    ("i", -2**31 - 1, OverflowError), ("l", "12", TypeError), ("s", 12, TypeError), ("s", b"x", TypeError),
    ("ns", 5, TypeError), ("b", 1, TypeError), ("s", "\ud800", UnicodeEncodeError), ("m", {"k": 1}, TypeError),
    ("d", "x", Exception)])
def test_values_that_do_not_fit_are_refused(field: str, bad: Any, error: type[Exception]) -> None:
    record = records(ALL_TYPES, 1, seed=1)[0] | {field: bad}
    with pytest.raises(error):
        compile_writer(ALL_TYPES)(record)


def test_every_truncation_and_trailing_bytes_are_decode_errors() -> None:
    from eventd.event.schemas import SchemaStore
    store = SchemaStore.load(str(SCHEMAS[0].parent))
    entry = store.writer("impression")
    body = entry.write(records(entry.raw, 1, seed=9)[0] | {"user_agent": "a" * 300})
    for cut in range(len(body)):
        with pytest.raises(DecodeError):
            decode_body(entry, body[:cut])
    with pytest.raises(DecodeError, match="1 trailing bytes"):
        decode_body(entry, body + b"\x00")


@pytest.mark.parametrize("field_type, body, message", [
    ("long", b"\xff" * 11, "more than 10 bytes"), (["null", "long"], b"\x04", "union index 4"),
    ("string", b"\x01", "-1 bytes")])
def test_malformed_bodies_say_what_is_wrong(field_type: Any, body: bytes, message: str) -> None:
    raw = {"type": "record", "name": "R", "fields": [{"name": "x", "type": field_type}]}
    with pytest.raises(ValueError, match=message):
        compile_reader(raw)(body, 0)


@pytest.mark.parametrize("field_type", [["null", "long", "string"], {"type": "array", "items": "long"},
                                        "bytes", {"type": "map", "values": "long"}])
def test_schemas_outside_the_subset_are_refused(field_type: Any) -> None:
    with pytest.raises(UnsupportedSchema):
        compile_writer({"type": "record", "name": "X", "fields": [{"name": "x", "type": field_type}]})


def test_varint_matches_the_spec_at_every_byte_boundary() -> None:
    for bits in range(0, 64):
        for z in (1 << bits) - 1, 1 << bits:
            expected = bytearray()
            n = z
            while n >= 0x80:
                expected.append((n & 0x7F) | 0x80)
                n >>= 7
            expected.append(n)
            assert varint(z) == bytes(expected), z


def test_compiled_longs_read_exactly_what_get_long_reads() -> None:
    """The readers decode longs inline; on every length of varint, a valid one or an overlong or
    truncated one, they must agree with ``get_long`` (value and end, or both refuse)."""
    raw = {"type": "record", "name": "R", "fields": [{"name": "x", "type": "long"}]}
    read = compile_reader(raw)
    rng = random.Random(5)
    cases = [varint(z) for bits in range(64) for z in ((1 << bits) - 1, 1 << bits)]
    cases += [bytes(rng.randrange(128, 256) for _ in range(n)) + bytes([rng.randrange(128)]) for n in range(12)]
    cases += [bytes(rng.randrange(128, 256) for _ in range(n)) for n in range(1, 12)]    # truncated
    for data in cases:
        try:
            expected: Any = get_long(data, 0)
        except (ValueError, IndexError) as exc:
            expected = type(exc)
        try:
            record, end = read(data, 0)
            got: Any = (record["x"], end)
        except (ValueError, IndexError) as exc:
            got = type(exc)
        assert got == expected, data.hex()


def outcome(read: Any, data: bytes) -> Any:
    try:
        return read(data, 0)
    except (ValueError, IndexError, struct.error):
        return "refused"


@pytest.mark.parametrize("seed", range(4))
def test_a_verifying_projection_refuses_what_the_whole_reader_refuses(seed: int) -> None:
    """``compile_projection(..., verify=True)``: the values of some fields, and exactly the
    whole reader's verdict on damaged bodies (bytes flipped, cut, or overlong varints)."""
    rng = random.Random(seed)
    names = ("l", "ns", "b")
    whole, projection = compile_reader(ALL_TYPES), compile_projection(ALL_TYPES, names, verify=True)
    refused = 0
    for record in records(ALL_TYPES, 150, seed=seed):
        body = bytearray(compile_writer(ALL_TYPES)(record))
        for _ in range(rng.choice((0, 1, 3))):
            body[rng.randrange(len(body))] = rng.choice((0x80, 0xFF, 0xC3, 0x01, rng.randrange(256)))
        data = bytes(body[:rng.randrange(len(body) + 1)] if rng.random() < 0.2 else body)
        expected = outcome(whole, data)
        got = outcome(projection, data)
        if expected == "refused":
            refused += 1
            assert got == "refused", data.hex()
        else:
            assert got == (tuple(expected[0][n] for n in names), expected[1]), data.hex()
    assert refused > 20      # the damage did reach the checks
