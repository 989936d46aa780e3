"""Splitting a byte stream into lines without ever holding more than one line's limit.

A line longer than the limit is not buffered: its bytes are counted and dropped until its end,
and it is reported as :class:`TooLong` in its place, so line numbers stay right.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TooLong:
    """A line that was over the limit; ``size`` is its length in bytes."""

    size: int


Line = bytes | TooLong


class LineSplitter:
    """Feed chunks, get complete lines (without the ``\\n``) in order."""

    def __init__(self, max_line: int) -> None:
        self._max = max_line
        self._buf = b""          # the start of an incomplete line
        self._discarding = 0     # > 0: bytes seen of an over-long line, until its newline

    def feed(self, data: bytes) -> list[Line]:
        parts: list[Line] = data.split(b"\n")  # type: ignore[assignment]
        tail = parts.pop()
        if parts:
            if self._discarding:
                parts[0] = TooLong(self._discarding + len(parts[0]))  # type: ignore[arg-type]
            elif self._buf:
                parts[0] = self._buf + parts[0]  # type: ignore[operator]
            self._discarding, self._buf = 0, b""
        self._keep(tail)  # type: ignore[arg-type]
        return parts

    def _keep(self, tail: bytes) -> None:
        if self._discarding:
            self._discarding += len(tail)
            return
        buf = self._buf + tail if self._buf else tail
        if len(buf) > self._max:
            self._discarding, self._buf = len(buf), b""
        else:
            self._buf = buf

    def finish(self) -> list[Line]:
        """At the end of the stream: the last line if it had no newline."""
        if self._discarding:
            out: list[Line] = [TooLong(self._discarding)]
        elif self._buf:
            out = [self._buf]
        else:
            out = []
        self._discarding, self._buf = 0, b""
        return out

    @property
    def pending(self) -> int:
        """Bytes held of an incomplete line."""
        return len(self._buf)
