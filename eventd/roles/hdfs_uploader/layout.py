"""Where files go in HDFS, what they are called, and how a name is read back.

Final files::

    <base>/type=<event type>/date=YYYY-MM-DD/hour=HH/<topic>+<partition>+<first>+<last>.avro

``first``..``last`` is the offset range of the *flush* the file belongs to: every file of one
flush of a partition (one per event type and event hour) carries the same range, and the
ranges of a partition's flushes tile its offsets without overlap. Offsets are zero-padded to
10 digits (as Kafka Connect does) so names sort by offset; longer offsets simply get longer.

Temporary files, uploaded first and renamed into place, live in one directory per base so
recovery can find a partition's leftovers with one listing::

    <base>/_tmp/<topic>+<partition>+<first>+<last>+<type>+<YYYY-MM-DD-HH>.avro.tmp

Names starting with ``_`` are ignored by Hive, Spark and Hadoop's input formats.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import NamedTuple

TMP_DIR = "_tmp"
PAD = 10
HOUR_MS = 3_600_000
# Event hours outside years 1..9999 cannot be written as a date; the lowest and highest hour index.
MIN_HOUR = (datetime(1, 1, 1, tzinfo=timezone.utc).timestamp() * 1000) // HOUR_MS
MAX_HOUR = (datetime(9999, 12, 31, 23, tzinfo=timezone.utc).timestamp() * 1000) // HOUR_MS
TYPE_RE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_FINAL_RE = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d+)\+(?P<last>\d+)\.avro$")
_TMP_RE = re.compile(r"^(?P<topic>[A-Za-z0-9._-]+)\+(?P<partition>\d+)\+(?P<first>\d+)\+(?P<last>\d+)"
                     r"\+(?P<type>[a-z][a-z0-9_]*)\+(?P<hour>\d{4}-\d\d-\d\d-\d\d)\.avro\.tmp$")


class GroupKey(NamedTuple):
    """The records of one flush that go into one file: same event type and event hour (a tuple:
    one is built per message, and a frozen dataclass costs a Python ``__init__``)."""

    type: str
    hour: int          # hours since the Unix epoch, UTC

    def date_hour(self) -> tuple[str, str]:
        """``("YYYY-MM-DD", "HH")`` of the hour, UTC."""
        t = datetime.fromtimestamp(self.hour * 3600, tz=timezone.utc)
        return t.strftime("%Y-%m-%d"), t.strftime("%H")


@dataclass(frozen=True)
class FileName:
    """A parsed final file name."""

    topic: str
    partition: int
    first: int
    last: int


def hour_of(time_ms: int) -> int:
    """The UTC hour index of an event time in milliseconds; ValueError if it has no date."""
    hour = time_ms // HOUR_MS
    if not MIN_HOUR <= hour <= MAX_HOUR:
        raise ValueError(f"event time {time_ms} ms is outside years 1..9999")
    return hour


def partition_dir(base: str, key: GroupKey) -> str:
    date, hour = key.date_hour()
    return f"{base}/type={key.type}/date={date}/hour={hour}"


def final_name(topic: str, partition: int, first: int, last: int) -> str:
    return f"{topic}+{partition}+{first:0{PAD}d}+{last:0{PAD}d}.avro"


def final_path(base: str, topic: str, partition: int, first: int, last: int, key: GroupKey) -> str:
    return f"{partition_dir(base, key)}/{final_name(topic, partition, first, last)}"


def tmp_dir(base: str) -> str:
    return f"{base}/{TMP_DIR}"


def tmp_prefix(topic: str, partition: int) -> str:
    """Every temporary file of one partition starts with this."""
    return f"{topic}+{partition}+"


def tmp_path(base: str, topic: str, partition: int, first: int, last: int, key: GroupKey) -> str:
    date, hour = key.date_hour()
    return (f"{tmp_dir(base)}/{topic}+{partition}+{first:0{PAD}d}+{last:0{PAD}d}"
            f"+{key.type}+{date}-{hour}.avro.tmp")


def parse_final(name: str) -> FileName | None:
    """The parts of a final file name; None for anything else (temporary files included)."""
    m = _FINAL_RE.match(name)
    if not m:
        return None
    return FileName(m["topic"], int(m["partition"]), int(m["first"]), int(m["last"]))


def is_tmp_of(name: str, topic: str, partition: int) -> bool:
    """True for a temporary file of exactly this partition."""
    m = _TMP_RE.match(name)
    return m is not None and m["topic"] == topic and int(m["partition"]) == partition
