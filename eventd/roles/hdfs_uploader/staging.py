"""Local staging: the container files of each partition's flushes until they are in HDFS.

A *flush* is one contiguous offset range ``first..last`` of one partition, staged as one
container file per (event type, event hour) of its records. Staging is only a buffer: nothing
in it is committed to Kafka, so after a crash it is wiped and rebuilt from Kafka. Each
process stages in its own directory, wiped when the process starts.

:class:`Staging` keeps the byte total (``bytes``, compared with ``staging_max_size``) and
bounds the memory of unwritten blocks: past ``buffer_limit`` every buffer is written out.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field

from eventd.event.schemas import SchemaEntry
from eventd.kafka.types import TopicPartition
from eventd.metrics import QUEUE_BYTES
from eventd.roles.hdfs_uploader.container import ContainerWriter
from eventd.roles.hdfs_uploader.layout import GroupKey


@dataclass
class StagedFile:
    """One container file of a flush."""

    key: GroupKey
    schema: SchemaEntry
    writer: ContainerWriter
    placed: bool = False      # moved into its final place in HDFS (by this or an earlier attempt)

    @property
    def path(self) -> str:
        return self.writer.path


@dataclass
class Flush:
    """One offset range of one partition and its files. ``last`` is None while it is open.

    ``uncertain`` means some of its final files may already be in HDFS: it is the regeneration
    of a flush recorded before a crash, or an earlier attempt to place it failed half-way."""

    tp: TopicPartition
    first: int
    last: int | None = None
    files: dict[GroupKey, StagedFile] = field(default_factory=dict)
    opened: float = field(default_factory=time.monotonic)
    sealed_at: float | None = None
    uncertain: bool = False
    size: int = 0

    @property
    def records(self) -> int:
        return sum(f.writer.records for f in self.files.values())


class Staging:
    """The process's staging directory and its byte total."""

    def __init__(self, root: str, codec: str, block_size: int, role: str, buffer_limit: int = 64 << 20) -> None:
        self.root, self.codec, self.block_size, self.role = root, codec, block_size, role
        self.buffer_limit = max(buffer_limit, block_size)
        self.bytes = 0
        self._buffered = 0
        self._open: list[Flush] = []
        self._counter = 0
        self._bytes_gauge = QUEUE_BYTES.labels(role)     # looked up once: _grow runs per record
        _wipe(root)

    def append(self, flush: Flush, key: GroupKey, schema: SchemaEntry, body: bytes) -> None:
        """Add one record body to ``flush``'s file for ``key`` (created on first use)."""
        staged = flush.files.get(key)
        if staged is None:
            staged = flush.files[key] = StagedFile(key, schema, self._new_writer(flush, key, schema))
            if flush not in self._open:
                self._open.append(flush)
            self._grow(flush, staged.writer.size)
        elif staged.schema is not schema:
            raise ValueError(f"{key.type} records of two schema families ({staged.schema.type}, "
                             f"{schema.type}) on one topic: check events.types routing")
        before = staged.writer.buffered
        self._grow(flush, staged.writer.append(body))
        self._buffered += staged.writer.buffered - before
        if self._buffered > self.buffer_limit:
            self._write_buffers()

    def seal(self, flush: Flush, last: int) -> None:
        """Close ``flush`` at offset ``last``: write out its buffers; no record is added after."""
        for staged in flush.files.values():
            self._buffered -= staged.writer.buffered
            self._grow(flush, staged.writer.flush())
        flush.last, flush.sealed_at = last, time.monotonic()
        if flush in self._open:
            self._open.remove(flush)

    def discard(self, flush: Flush) -> None:
        """Delete ``flush``'s local files (placed in HDFS, or abandoned: redone from Kafka)."""
        for staged in flush.files.values():
            self._buffered -= staged.writer.buffered
            staged.writer.buffered = 0
            try:
                os.unlink(staged.path)
            except FileNotFoundError:
                pass
        self._grow(flush, -flush.size)
        flush.files.clear()
        if flush in self._open:
            self._open.remove(flush)

    def _new_writer(self, flush: Flush, key: GroupKey, schema: SchemaEntry) -> ContainerWriter:
        self._counter += 1
        name = f"{flush.tp.topic}+{flush.tp.partition}+{flush.first}+{key.type}+{key.hour}+{self._counter}.avro"
        return ContainerWriter(os.path.join(self.root, name), schema.raw, self.codec, self.block_size)

    def _grow(self, flush: Flush, delta: int) -> None:
        flush.size += delta
        self.bytes += delta
        self._bytes_gauge.set(self.bytes)

    def _write_buffers(self) -> None:
        for flush in self._open:
            for staged in flush.files.values():
                self._buffered -= staged.writer.buffered
                self._grow(flush, staged.writer.flush())


def _wipe(root: str) -> None:
    """Start empty: what a previous process staged was never committed and is read again."""
    if os.path.isdir(root):
        shutil.rmtree(root)
    os.makedirs(root, exist_ok=True)
