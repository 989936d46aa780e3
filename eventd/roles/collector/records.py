"""The queue's record format: one ready Kafka message per record, length-prefixed and checksummed.

    record  = length:u32le  crc:u32le  body            (length = len(body))
    body    = seq:u64le  payload                       (crc = CRC32C of body)
    payload = topic_len:u16le  topic  key_len:u32le  key  value

``seq`` numbers records 0, 1, 2, … for the life of a queue directory; it lets a reader see a
gap (a skipped corrupt region) and lets the acknowledged position be a single number. A
record is valid only if its length is plausible and its checksum matches: a torn write or
garbage after a power loss is detected, never replayed.
"""

from __future__ import annotations

import struct
from functools import lru_cache
from typing import NamedTuple

from crc32c import crc32c

HEADER = struct.Struct("<II")        # length, crc
SEQ = struct.Struct("<Q")
HEADER_SIZE = HEADER.size            # 8
MIN_BODY = SEQ.size + 2 + 4          # a record with empty topic, key and value
MAX_BODY = 64 << 20                  # far above any event (lines are capped at events.max_line_size)
_TOPIC_LEN = struct.Struct("<H")
_KEY_LEN = struct.Struct("<I")


class Record(NamedTuple):
    """One message read back from the queue (a tuple: the cheapest object to build per record)."""

    seq: int
    topic: str
    key: bytes
    value: bytes


def payload(topic: str, key: bytes, value: bytes) -> bytes:
    """The record payload of one Kafka message (built by the intake, before a seq is known)."""
    return b"".join((_topic_part(topic), _KEY_LEN.pack(len(key)), key, value))


@lru_cache(maxsize=1024)
def _topic_part(topic: str) -> bytes:
    t = topic.encode()
    return _TOPIC_LEN.pack(len(t)) + t


def frame(seq: int, data: bytes) -> tuple[bytes, bytes]:
    """The header and seq bytes that, followed by ``data``, make record ``seq``."""
    s = SEQ.pack(seq)
    return HEADER.pack(len(data) + SEQ.size, crc32c(data, crc32c(s))), s


def encode(seq: int, data: bytes) -> bytes:
    """Record ``seq`` with payload ``data`` as bytes (tests and single writes)."""
    head, s = frame(seq, data)
    return head + s + data


class Parser:
    """Turns buffers of record bytes into :class:`Record` objects; keeps topic strings interned."""

    def __init__(self) -> None:
        self._topics: dict[bytes, str] = {}

    def parse(self, buf: bytes, start: int, expected_seq: int,
              limit: int = 1 << 62) -> tuple[list[Record], int, str | None]:
        """Records lying whole in ``buf[start:]`` (at most ``limit``), numbered from ``expected_seq``.

        Returns ``(records, end, problem)``: ``end`` is the offset after the last record returned;
        ``problem`` is None when parsing stopped at the end of the buffer, an incomplete record
        (the caller reads more or, at a segment's final end, has a truncated tail) or ``limit``,
        and otherwise says why the bytes at ``end`` are not the next record (implausible length,
        checksum mismatch, a seq out of order).
        """
        out: list[Record] = []
        pos, end = start, len(buf)
        unpack_head, unpack_seq, topics = HEADER.unpack_from, SEQ.unpack_from, self._topics
        while pos + HEADER_SIZE <= end and len(out) < limit:
            length, crc = unpack_head(buf, pos)
            if length < MIN_BODY or length > MAX_BODY:
                return out, pos, f"implausible record length {length}"
            body_end = pos + HEADER_SIZE + length
            if body_end > end:
                break
            body = buf[pos + HEADER_SIZE:body_end]
            if crc32c(body) != crc:
                return out, pos, "checksum mismatch"
            (seq,) = unpack_seq(body, 0)
            if seq != expected_seq:
                return out, pos, f"record seq {seq} where {expected_seq} was expected"
            out.append(self._record(seq, body, topics))
            expected_seq += 1
            pos = body_end
        return out, pos, None

    @staticmethod
    def next_length(buf: bytes, pos: int) -> int | None:
        """The whole size of the record starting at ``pos`` if its header is in ``buf``."""
        if pos + HEADER_SIZE > len(buf):
            return None
        return HEADER_SIZE + HEADER.unpack_from(buf, pos)[0]

    @staticmethod
    def _record(seq: int, body: bytes, topics: dict[bytes, str]) -> Record:
        t_end = 10 + (body[8] | body[9] << 8)
        raw_topic = body[10:t_end]
        topic = topics.get(raw_topic)
        if topic is None:
            topic = topics[raw_topic] = raw_topic.decode()
        (klen,) = _KEY_LEN.unpack_from(body, t_end)
        k_end = t_end + 4 + klen
        return Record(seq, topic, body[t_end + 4:k_end], body[k_end:])
