"""Where a partition resumes, from Kafka's committed offset and the flush recorded with it.

Placing a flush ``first..last`` is two-phase:

1. commit offset ``first`` with metadata ``eventd-hdfs:flush-end=<last>`` (the flush is
   recorded before any of its files is uploaded);
2. upload and rename each file into place;
3. commit ``last + 1`` (plain metadata): the flush is done.

On assignment (restart, rebalance) a committed offset with that metadata means a flush may be
partly in HDFS: the partition resumes at ``first`` and its first flush is cut exactly at
``last``, so it regenerates the same files under the same names; files already in place are
skipped, the partition's stale temporary files deleted. Without the metadata the partition
resumes at the committed offset (or the earliest one) and nothing of it is in HDFS beyond.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from eventd.kafka.types import OffsetAndMetadata


log = logging.getLogger(__name__)
PREFIX = "eventd-hdfs:flush-end="


@dataclass(frozen=True)
class Resume:
    offset: int | None        # None: no committed offset, start from the earliest
    flush_end: int | None     # the recorded end of the flush to regenerate first


def record(first: int, last: int) -> OffsetAndMetadata:
    """The commit that records flush ``first..last`` before its files are placed."""
    return OffsetAndMetadata(first, f"{PREFIX}{last}", -1)


def resume(committed: OffsetAndMetadata | None) -> Resume:
    """Where to resume from the committed offset and its metadata (see the module docs)."""
    if committed is None or committed.offset is None or committed.offset < 0:
        return Resume(None, None)
    meta = committed.metadata or ""
    if not meta.startswith(PREFIX):
        return Resume(committed.offset, None)
    try:
        end = int(meta[len(PREFIX):])
    except ValueError:
        end = -1
    if end < committed.offset:
        log.warning("ignoring malformed flush record %r at offset %d", meta, committed.offset)
        return Resume(committed.offset, None)
    return Resume(committed.offset, end)
