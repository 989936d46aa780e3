"""Avro binary encoding and decoding of eventd's schemas, compiled once per schema.

Every event is encoded once (collector, replay) and decoded at least once per consuming role, so
this is the hot path of the whole pipeline. fastavro's generic ``schemaless_writer`` and
``schemaless_reader`` walk the schema for every record and resolve each union by trying its
branches: about 14–27 µs per ad event on this machine's cores (``bench/codec.py``). The schema
store (``schemas.py``) only admits a small subset of Avro — a record of ``string``, ``long``,
``int``, ``double``, ``float`` and ``boolean`` fields, each possibly a union with ``null``, ending in
a ``map`` of strings — and for that subset a function generated per schema, straight-line code
without a walk or a union search, is several times faster in plain Python.

Contracts:
- ``compile_writer(raw)(record)`` returns the Avro binary body of ``record``, byte for byte what
  any Avro writer produces for the schema (tests compare with fastavro and decode with the
  official ``avro`` package). A value of the wrong type or out of its type's range raises
  ``TypeError``/``OverflowError``/``ValueError`` (an unencodable string); nothing is written
  partially, since the body is only returned whole.
- ``compile_reader(raw)(data, pos)`` decodes the record starting at ``pos`` of ``data`` (bytes)
  and returns ``(record, end)``. Truncated or malformed input raises ``ValueError`` or
  ``IndexError`` (the caller turns them into a ``DecodeError`` naming the message).
- ``compile_reader(raw, keep)`` returns only the fields named in ``keep``, decoded exactly as
  above; the others are stepped over, not decoded: their lengths, union indexes and booleans are
  checked and ``end`` is the same, but a string's bytes are not checked to be UTF-8 (a role that
  needs a few fields of every record need not build the rest).
- ``compile_projection(raw, names)(data, pos)`` is the same as ``compile_reader(raw, set(names))``
  but returns ``((value of each name, in order; None where the schema lacks it), end)``.
- Field order and names come from the schema; a field missing from the record is written as its
  schema default, and a missing field without a default raises ``KeyError``.
"""

from __future__ import annotations

import struct
from typing import Any, Callable

Writer = Callable[[dict[str, Any]], bytes]
Reader = Callable[[bytes, int], tuple[dict[str, Any], int]]
Projection = Callable[[bytes, int], tuple[tuple[Any, ...], int]]

MAGIC = b"\xc3\x01"      # Avro single-object encoding: this, the 8-byte schema fingerprint, the body
SCALARS = ("string", "long", "int", "double", "float", "boolean")
_DOUBLE, _FLOAT = struct.Struct("<d"), struct.Struct("<f")
# Varints of the zig-zagged values 0..16383 (ints from -8192 to 8191: ids, counts, small money)
# are looked up instead of computed.
SMALL = tuple(bytes([z]) if z < 0x80 else bytes([(z & 0x7F) | 0x80, z >> 7]) for z in range(1 << 14))
# The same 14 bits when more follow: both bytes carry the continuation bit.
FULL = tuple(bytes([(z & 0x7F) | 0x80, (z >> 7) | 0x80]) for z in range(1 << 14))


class UnsupportedSchema(ValueError):
    """The schema uses Avro features outside eventd's subset (the store refuses such files)."""


# ---------------------------------------------------------------- encoding

def varint(z: int) -> bytes:
    """The Avro varint of a non-negative (already zig-zagged) integer: 14 bits per table lookup."""
    if z < 16384:
        return SMALL[z]
    parts = []
    while z >= 16384:
        parts.append(FULL[z & 0x3FFF])
        z >>= 14
    parts.append(SMALL[z])
    return b"".join(parts)


def put_long(n: int) -> bytes:
    """An Avro long; ``OverflowError`` outside the signed 64-bit range, ``TypeError`` for a non-int."""
    return _put_signed(n, 63, "long")


def put_int(n: int) -> bytes:
    """An Avro int; ``OverflowError`` outside the signed 32-bit range."""
    return _put_signed(n, 31, "int")


def _put_signed(n: int, sign_shift: int, name: str) -> bytes:
    z = (n << 1) ^ (n >> sign_shift)          # zig-zag: 0, -1, 1, -2 … → 0, 1, 2, 3 …
    if 0 <= z < 16384:
        return SMALL[z]
    if not 0 <= z < 1 << (sign_shift + 1):
        raise OverflowError(f"{n} is out of range for an Avro {name}")
    return varint(z)


def put_string(s: str) -> bytes:
    """An Avro string (``TypeError`` for a non-str, ``UnicodeEncodeError`` for a lone surrogate)."""
    if type(s) is not str:
        raise TypeError(f"expected a string, got {type(s).__name__}")
    b = s.encode()
    return SMALL[len(b) << 1] + b if len(b) < 8192 else varint(len(b) << 1) + b


def put_double(v: float) -> bytes:
    return _DOUBLE.pack(v)


def put_float(v: float) -> bytes:
    return _FLOAT.pack(v)


def put_boolean(v: bool) -> bytes:
    if type(v) is not bool:
        raise TypeError(f"expected a boolean, got {type(v).__name__}")
    return b"\x01" if v else b"\x00"


def put_string_map(m: dict[str, str]) -> bytes:
    """An Avro map of strings: one block with all entries, then the empty block."""
    if not m:
        return b"\x00"
    parts = [put_long(len(m))]
    for k, v in m.items():
        parts.append(put_string(k))
        parts.append(put_string(v))
    parts.append(b"\x00")
    return b"".join(parts)


PUT = {"string": put_string, "long": put_long, "int": put_int, "double": put_double, "float": put_float,
        "boolean": put_boolean}


def compile_writer(raw: dict[str, Any]) -> Writer:
    """The encoder of records of schema ``raw`` (the JSON of a ``.avsc`` file)."""
    head, parts = [], []
    defaults = {f["name"]: f["default"] for f in raw["fields"] if "default" in f}
    for i, (name, kind, null_index) in enumerate(fields_of(raw)):
        value = f"r.get({name!r}, {defaults[name]!r})" if name in defaults else f"r[{name!r}]"
        if kind == "map":
            parts.append(f"put_string_map({value})")
        elif null_index is None:
            parts.append(_inline_put(kind, value, i))
        else:
            # The union's index byte for null and for a value, bound once per schema.
            head.append(f"n{i}, s{i} = {union_tags(null_index)!r}")
            parts.append(f"(n{i} if (u{i} := {value}) is None else s{i} + {_inline_put(kind, f'u{i}', i)})")
    src = "\n".join([*head, "def write(r):", "    try:", "        return b''.join((",
                     *(f"            {p}," for p in parts), "        ))",
                     "    except AttributeError as exc:   # str.encode on a value that is not a str",
                     "        raise TypeError(f'expected a string: {exc}') from None"])
    return _build(src, raw, "write")


def _inline_put(kind: str, value: str, i: int) -> str:
    """An expression encoding ``value`` (evaluated once, into ``v<i>``): the common small cases
    inline, the rest by a call."""
    if kind in ("long", "int"):
        sign_shift = 63 if kind == "long" else 31
        return (f"(SMALL[z{i}] if 0 <= (z{i} := ((v{i} := {value}) << 1) ^ (v{i} >> {sign_shift})) < 16384 "
                f"else put_{kind}(v{i}))")
    if kind == "string":
        return f"(SMALL[len(b{i}) << 1] + b{i} if len(b{i} := (v{i} := {value}).encode()) < 8192 else put_string(v{i}))"
    return f"put_{kind}({value})"


def _build(src: str, raw: dict[str, Any], name: str) -> Any:
    namespace: dict[str, Any] = {f"put_{k}": f for k, f in PUT.items()} | READ_HELPERS
    namespace |= {"put_string_map": put_string_map, "SMALL": SMALL}
    exec(compile(src, f"<avro {name} of {raw.get('name')}>", "exec"), namespace)
    return namespace[name]


def union_tags(null_index: int) -> tuple[bytes, bytes]:
    """The union index bytes of (null, the value) for a union whose null branch is ``null_index``."""
    return (b"\x00", b"\x02") if null_index == 0 else (b"\x02", b"\x00")


# ---------------------------------------------------------------- decoding

def get_long(data: bytes, pos: int) -> tuple[int, int]:
    """(value, position after it) of the Avro long at ``pos``; ``ValueError`` when malformed."""
    b = data[pos]
    if b < 0x80:
        return (b >> 1) ^ -(b & 1), pos + 1
    z, shift = b & 0x7F, 7
    while True:
        pos += 1
        b = data[pos]
        z |= (b & 0x7F) << shift
        if b < 0x80:
            return (z >> 1) ^ -(z & 1), pos + 1
        shift += 7
        if shift > 63:
            raise ValueError("an Avro long of more than 10 bytes")


def get_string(data: bytes, pos: int) -> tuple[str, int]:
    size, pos = get_long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise ValueError(f"a string of {size} bytes where {len(data) - pos} are left")
    return data[pos:end].decode(), end


def get_double(data: bytes, pos: int) -> tuple[float, int]:
    return _DOUBLE.unpack_from(data, pos)[0], pos + 8


def get_float(data: bytes, pos: int) -> tuple[float, int]:
    return _FLOAT.unpack_from(data, pos)[0], pos + 4


def get_boolean(data: bytes, pos: int) -> tuple[bool, int]:
    b = data[pos]
    if b > 1:
        raise ValueError(f"a boolean byte of {b}")
    return b == 1, pos + 1


def get_string_map(data: bytes, pos: int) -> tuple[dict[str, str], int]:
    out: dict[str, str] = {}
    while True:
        count, pos = get_long(data, pos)
        if count == 0:
            return out, pos
        if count < 0:                   # a block with its byte size (the size is not needed)
            count = -count
            _, pos = get_long(data, pos)
        for _ in range(count):
            key, pos = get_string(data, pos)
            out[key], pos = get_string(data, pos)


get_int = get_long      # the same varint; the writer's range is the writer's business

_GET = {"string": get_string, "long": get_long, "int": get_int, "double": get_double, "float": get_float,
        "boolean": get_boolean}


def compile_reader(raw: dict[str, Any], keep: frozenset[str] | None = None) -> Reader:
    """The decoder of records of schema ``raw``: every field, or only those in ``keep``."""
    body, index = read_steps(raw, keep)
    record = ", ".join(f"{n!r}: f{i}" for n, i in index.items())
    return _build(_reader_source(body, f"{{{record}}}"), raw, "read")


def compile_projection(raw: dict[str, Any], names: tuple[str, ...], verify: bool = False) -> Projection:
    """The decoder of the values of ``names``, in that order, from records of schema ``raw``:
    ``(values, end)``, None for a field the schema lacks. The other fields are stepped over as
    in ``compile_reader(raw, keep)``; no record dict is built (a role reading a few fields of
    every event, the balance aggregator, unpacks the tuple). With ``verify`` the other fields
    are decoded and dropped: the projection refuses exactly what the whole reader refuses (the
    HDFS uploader verifying the records it archives as they are)."""
    body, index = read_steps(raw, frozenset(names), verify)
    values = "".join(f"f{index[n]}, " if n in index else "None, " for n in names)
    return _build(_reader_source(body, f"({values})"), raw, "read")


def read_steps(raw: dict[str, Any], keep: frozenset[str] | None,
                verify: bool = False) -> tuple[list[str], dict[str, int]]:
    """The statements (indented as a function's body) reading a record of ``raw`` from ``d`` at
    ``p`` field by field into ``f<i>`` (those in ``keep``; every field if None), and the index
    ``i`` of each field read, by name; they use ``READ_HELPERS`` and leave ``p`` after the
    record, possibly past the end of ``d`` (the caller checks). The others are stepped over;
    with ``verify`` they are decoded too (strings checked to be UTF-8, longs to be at most
    10 bytes), into ``_``."""
    body, index = [], {}
    for i, (name, kind, null_index) in enumerate(fields_of(raw)):
        wanted = keep is None or name in keep
        if wanted:
            index[name] = i
        if wanted or verify:
            step = _inline_get(kind, f"f{i}" if wanted else "_", "")
        else:
            step = _inline_skip(kind)
        if null_index is None:
            body += ["    " + line for line in step]
        else:
            body += ["    u = d[p]",
                     f"    if u == {2 * (1 - null_index)}:",
                     "        p += 1",
                     *("        " + line for line in step),
                     f"    elif u == {2 * null_index}:",
                     *([f"        f{i} = None"] if wanted else []),
                     "        p += 1",
                     "    else:",
                     f"        raise ValueError(f'union index {{u}} of field {name}')"]
    return body, index


def _reader_source(body: list[str], result: str) -> str:
    return "\n".join(["def read(d, p):", *body,
                      "    if p > len(d):",
                      "        raise ValueError(f'the record ends {p - len(d)} bytes after the data')",
                      f"    return {result}, p"])


def _inline_skip(kind: str) -> list[str]:
    """Statements stepping ``p`` over one value without decoding it (see ``compile_reader``)."""
    if kind in ("long", "int"):
        return ["while d[p] > 127:", "    p += 1", "p += 1"]
    if kind == "string":
        return ["b = d[p]", "if b < 128 and not b & 1:", "    p += 1 + (b >> 1)", "else:",
                "    size, p = get_long(d, p)", "    if size < 0:",
                "        raise ValueError(f'a string of {size} bytes')", "    p += size"]
    if kind in ("double", "float"):
        return [f"p += {8 if kind == 'double' else 4}"]
    if kind == "boolean":
        return ["_, p = get_boolean(d, p)"]
    return ["if d[p] == 0:", "    p += 1", "else:", "    p = skip_string_map(d, p)"]


def skip_string_map(data: bytes, pos: int) -> int:
    """The position after the Avro map of strings at ``pos``, its entries stepped over."""
    while True:
        count, pos = get_long(data, pos)
        if count == 0:
            return pos
        if count < 0:
            count = -count
            _, pos = get_long(data, pos)
        for _ in range(2 * count):
            size, pos = get_long(data, pos)
            if size < 0:
                raise ValueError(f"a string of {size} bytes")
            pos += size


# What the statements of ``read_steps`` call: the namespace of every generated reader.
READ_HELPERS: dict[str, Any] = {f"get_{k}": f for k, f in _GET.items()} | {
    "get_string_map": get_string_map, "skip_string_map": skip_string_map}


def _inline_get(kind: str, target: str, indent: str) -> list[str]:
    """Statements decoding one value into ``target``, one-byte lengths and longs inline. An inlined
    string may run past the end of ``d`` (a slice does not complain); the reader checks ``p``
    against ``len(d)`` at the end, and ``p`` only grows."""
    if kind in ("long", "int"):
        # get_long written out: times in milliseconds and money in micro-units take 3-6 bytes.
        lines = ["b = d[p]", "if b < 128:", f"    {target} = (b >> 1) ^ -(b & 1)", "    p += 1",
                 "elif (c := d[p + 1]) < 128:", "    z = (b & 127) | (c << 7)", f"    {target} = (z >> 1) ^ -(z & 1)",
                 "    p += 2",
                 "else:", "    z, s = (b & 127) | ((c & 127) << 7), 14", "    p += 2", "    while (b := d[p]) > 127:",
                 "        z |= (b & 127) << s", "        s += 7", "        p += 1", "        if s > 63:",
                 "            raise ValueError('an Avro long of more than 10 bytes')",
                 "    z |= b << s", f"    {target} = (z >> 1) ^ -(z & 1)", "    p += 1"]
    elif kind == "string":
        lines = ["b = d[p]", "if b < 128 and not b & 1:", "    e = p + 1 + (b >> 1)",
                 f"    {target} = d[p + 1:e].decode()", "    p = e",
                 "else:", f"    {target}, p = get_string(d, p)"]
    elif kind == "map":
        lines = ["if d[p] == 0:", f"    {target} = {{}}", "    p += 1", "else:", f"    {target}, p = get_string_map(d, p)"]
    else:
        lines = [f"{target}, p = get_{kind}(d, p)"]
    return [indent + line for line in lines]


# ---------------------------------------------------------------- the schema subset

def fields_of(raw: dict[str, Any]) -> list[tuple[str, str, int | None]]:
    """(name, scalar type or "map", index of the null branch or None) per field, in order."""
    if raw.get("type") != "record" or not isinstance(raw.get("fields"), list):
        raise UnsupportedSchema("expected a record schema")
    out = []
    for f in raw["fields"]:
        name, t = f["name"], f["type"]
        if not name.isidentifier():
            raise UnsupportedSchema(f"field name {name!r}")
        null_index = None
        if isinstance(t, list):
            if len(t) != 2 or "null" not in t:
                raise UnsupportedSchema(f"field {name}: only unions of null and one type are supported")
            null_index = t.index("null")
            t = t[1 - null_index]
        if t == {"type": "map", "values": "string"} and null_index is None:
            out.append((name, "map", None))
        elif isinstance(t, str) and t in SCALARS:
            out.append((name, t, null_index))
        else:
            raise UnsupportedSchema(f"field {name}: type {t!r} is outside eventd's Avro subset")
    return out
