"""Reading NDJSON inputs — a plain file, a ``.gz`` file, or ``-`` for stdin — line by line.

:class:`LineReader` yields :class:`Line` (1-based number, bytes without the line terminator)
and keeps, for the resume ledger, the byte offset in the *decompressed* stream and a running
BLAKE2b digest of every byte read so far. Lines longer than ``max_line_size`` are never held
in memory whole: they are read in pieces and handed on with ``data=None`` and their length.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import sys
from dataclasses import dataclass
from typing import BinaryIO, Callable, Iterator

HEAD_SIZE = 64 * 1024          # bytes naming a stream in the ledger (see ledger.stream_key)
_BUFFER = 1 << 20
_DIGEST_SIZE = 16


@dataclass(frozen=True, slots=True)
class Line:
    """One input line. ``data`` is None for a line over the size limit (``size`` says how long)."""

    number: int
    data: bytes | None
    size: int                  # bytes without the line terminator


class _Prefixed(io.RawIOBase):
    """``head`` (already read to name the stream) followed by the rest of ``rest``."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head, self._rest = memoryview(head), rest

    def readable(self) -> bool:
        return True

    def readinto(self, buf: bytearray) -> int:  # type: ignore[override]
        if self._head:
            n = min(len(buf), len(self._head))
            buf[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buf))
        buf[:len(data)] = data
        return len(data)


@dataclass
class Input:
    """An opened input: its display name, the decompressed stream, and progress in file bytes."""

    name: str
    stream: BinaryIO
    size: int | None                       # bytes on disk (compressed for .gz); None for stdin
    position: Callable[[], int]            # bytes on disk consumed so far
    closer: Callable[[], None]

    def close(self) -> None:
        self.closer()


def open_input(path: str) -> Input:
    """Open ``path`` (``-`` = stdin; a name ending in ``.gz`` is gunzipped). Raises OSError."""
    if path == "-":
        return Input("<stdin>", sys.stdin.buffer, None, lambda: 0, lambda: None)
    raw = open(path, "rb", buffering=_BUFFER)
    size = os.fstat(raw.fileno()).st_size
    if path.endswith(".gz"):
        stream: BinaryIO = gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[assignment]

        def close() -> None:
            stream.close()
            raw.close()
        return Input(path, stream, size, raw.tell, close)
    return Input(path, raw, size, raw.tell, raw.close)


class LineReader:
    """Iterates the lines of an :class:`Input`; ``head`` is its first :data:`HEAD_SIZE` bytes."""

    def __init__(self, source: BinaryIO, max_line_size: int) -> None:
        self.head = _read_exactly(source, HEAD_SIZE)
        self._stream = io.BufferedReader(_Prefixed(self.head, source), buffer_size=_BUFFER)  # type: ignore[type-var]
        self._max = max_line_size
        self._digest = hashlib.blake2b(digest_size=_DIGEST_SIZE)
        self.offset = 0        # decompressed bytes consumed: always at a line boundary between lines
        self.lines = 0

    def prefix_digest(self) -> str:
        """Hex digest of the stream's bytes ``[0, offset)``."""
        return self._digest.copy().hexdigest()

    def __iter__(self) -> Iterator[Line]:
        readline, limit = self._stream.readline, self._max + 2   # room for "\r\n"
        while True:
            raw = readline(limit)
            if not raw:
                return
            self._digest.update(raw)
            self.offset += len(raw)
            self.lines += 1
            if raw[-1:] != b"\n" and len(raw) == limit:
                yield Line(self.lines, None, len(raw) + self._skip_rest())
                continue
            data = raw[:-1] if raw[-1:] == b"\n" else raw
            if data[-1:] == b"\r":
                data = data[:-1]
            if len(data) > self._max:
                yield Line(self.lines, None, len(data))
            else:
                yield Line(self.lines, data, len(data))

    def _skip_rest(self) -> int:
        """Consume the rest of an over-long line; returns its length without the terminator."""
        skipped = 0
        while True:
            piece = self._stream.readline(_BUFFER)
            if not piece:
                return skipped
            self._digest.update(piece)
            self.offset += len(piece)
            if piece[-1:] == b"\n":
                return skipped + len(piece.rstrip(b"\r\n"))
            skipped += len(piece)


def _read_exactly(source: BinaryIO, n: int) -> bytes:
    """Up to ``n`` bytes: short only at end of stream (pipes return what they have)."""
    parts, got = [], 0
    while got < n:
        piece = source.read(n - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)
