"""Avro Object Container Files written from record bodies that are already Avro binary.

The format (Avro 1.x specification, "Object Container Files"): ``Obj\\x01``, a metadata map
with ``avro.schema`` (the writer schema's JSON) and ``avro.codec``, a 16-byte sync marker;
then blocks, each: record count (long), byte size of the (compressed) data (long), the
concatenated record bodies compressed with the codec, and the sync marker again.
Codecs as the specification defines them: ``null``; ``deflate`` (raw RFC 1951, no zlib
header); ``snappy`` (each block snappy-compressed, followed by the big-endian CRC-32 of the
uncompressed data); ``zstandard`` (a zstd frame per block).

The bodies are never decoded here: the caller guarantees each one is a valid record of the
schema (see records.py).
"""

from __future__ import annotations

import json
import os
import struct
import zlib
from typing import Any, Callable

from eventd.event.binary import put_long

MAGIC = b"Obj\x01"
SYNC_SIZE = 16
Compressor = Callable[[bytes], bytes]


def _string(b: bytes) -> bytes:
    return put_long(len(b)) + b


def header(schema: dict[str, Any], codec: str, sync: bytes) -> bytes:
    """The file header for ``schema`` (the JSON as written in the .avsc file) and ``codec``."""
    meta = {b"avro.schema": json.dumps(schema, separators=(",", ":")).encode(), b"avro.codec": codec.encode()}
    body = put_long(len(meta)) + b"".join(_string(k) + _string(v) for k, v in meta.items()) + put_long(0)
    return MAGIC + body + sync


def block(count: int, data: bytes, sync: bytes) -> bytes:
    """One data block of ``count`` records whose (already compressed) bytes are ``data``."""
    return put_long(count) + put_long(len(data)) + data + sync


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _snappy(data: bytes) -> bytes:
    import snappy   # python-snappy: only needed when this codec is configured
    return snappy.compress(data) + struct.pack(">I", zlib.crc32(data) & 0xFFFFFFFF)


def _zstandard(data: bytes) -> bytes:
    import zstandard
    return zstandard.ZstdCompressor().compress(data)


COMPRESSORS: dict[str, Compressor] = {"null": bytes, "deflate": _deflate, "snappy": _snappy,
                                      "zstandard": _zstandard}


class ContainerWriter:
    """Appends records to one local container file, a block at a time.

    Records are buffered until ``block_size`` bytes, then compressed and appended; the file is
    opened per block, so thousands of writers hold no file descriptors. ``size`` is what the
    file will hold (written bytes plus the uncompressed buffer, an upper bound).
    """

    def __init__(self, path: str, schema: dict[str, Any], codec: str, block_size: int) -> None:
        self.path, self.codec, self.block_size = path, codec, block_size
        self.sync = os.urandom(SYNC_SIZE)
        self._compress = COMPRESSORS[codec]
        self._buffer: list[bytes] = []
        self.buffered = 0
        self.records = 0
        with open(path, "wb") as fh:
            self.written = fh.write(header(schema, codec, self.sync))

    @property
    def size(self) -> int:
        return self.written + self.buffered

    def append(self, body: bytes) -> int:
        """Add one record body; returns by how many bytes ``size`` grew (for staging totals)."""
        before = self.size
        self._buffer.append(body)
        self.buffered += len(body)
        self.records += 1
        if self.buffered >= self.block_size:
            self.flush()
        return self.size - before

    def flush(self) -> int:
        """Write the buffered records as one block; returns how much ``size`` changed (<= 0 when
        the codec shrank the block)."""
        if not self._buffer:
            return 0
        before = self.size
        data = block(len(self._buffer), self._compress(b"".join(self._buffer)), self.sync)
        with open(self.path, "ab") as fh:
            fh.write(data)
        self.written += len(data)
        self._buffer.clear()
        self.buffered = 0
        return self.size - before
