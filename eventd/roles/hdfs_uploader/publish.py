"""Placing a sealed flush in HDFS: each file uploaded under a temporary name, then renamed.

A final name only ever appears through a rename of a temporary file whose upload HDFS
acknowledged (201), so a final name always holds a complete file. A rename answered
``false`` is checked: if the final file exists, an earlier attempt (whose answer was lost) or
another owner of the partition placed it — same flush range, same records — and the
temporary copy is deleted; otherwise the rename failed and the flush is retried.
"""

from __future__ import annotations

import collections
import logging
import os
import posixpath
import threading
from dataclasses import dataclass
from typing import Iterator

from eventd.failpoints import failpoint
from eventd.kafka.types import TopicPartition
from eventd.roles.hdfs_uploader.layout import final_path, is_tmp_of, tmp_dir, tmp_path
from eventd.roles.hdfs_uploader.staging import Flush, StagedFile
from eventd.roles.hdfs_uploader.webhdfs import HdfsError, HdfsUnavailable, WebHdfs

log = logging.getLogger(__name__)
CHUNK = 1 << 20
KNOWN_DIRS = 4096


@dataclass
class Placed:
    """What one call of :meth:`Publisher.place` newly moved into place."""

    files: int = 0
    bytes: int = 0
    records: int = 0


class Publisher:
    """Moves flushes into ``base``. Remembers which directories exist to skip MKDIRS.
    Thread-safe for flushes of different partitions."""

    def __init__(self, client: WebHdfs, base: str) -> None:
        self.client, self.base = client, base
        self._dirs: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def clean_tmp(self, tp: TopicPartition) -> int:
        """Delete the partition's temporary files left by a crashed or replaced owner."""
        removed = 0
        for status in self.client.list(tmp_dir(self.base)):
            name = str(status.get("pathSuffix", ""))
            if is_tmp_of(name, tp.topic, tp.partition):
                self.client.delete(f"{tmp_dir(self.base)}/{name}")
                log.info("deleted stale temporary file %s/%s", tmp_dir(self.base), name)
                removed += 1
        return removed

    def place(self, flush: Flush) -> Placed:
        """Put every file of ``flush`` in its final place; returns what was newly placed.
        Raises :class:`HdfsError`; files already placed are skipped on the next attempt."""
        assert flush.last is not None
        placed = Placed()
        for staged in sorted(flush.files.values(), key=lambda f: f.key):
            if staged.placed:
                continue
            final = final_path(self.base, flush.tp.topic, flush.tp.partition, flush.first, flush.last, staged.key)
            if flush.uncertain and self.client.status(final) is not None:
                log.info("%s is already in place (placed before a restart or a failed attempt)", final)
            else:
                try:
                    size = self._upload(staged, tmp_path(self.base, flush.tp.topic, flush.tp.partition,
                                                         flush.first, flush.last, staged.key), final)
                except HdfsError:
                    flush.uncertain = True   # it may have been renamed although the answer was lost
                    raise
                if size:
                    placed.files, placed.bytes = placed.files + 1, placed.bytes + size
                    placed.records += staged.writer.records
            staged.placed = True
        return placed

    def _upload(self, staged: StagedFile, tmp: str, final: str) -> int:
        length = os.path.getsize(staged.path)
        self.client.create(tmp, _chunks(staged.path, length), length, overwrite=True)
        failpoint("hdfs-before-rename")
        directory = posixpath.dirname(final)
        self._ensure_dir(directory)
        if self.client.rename(tmp, final):
            failpoint("hdfs-after-rename")
            return length
        if self.client.status(final) is not None:
            log.info("%s was placed by an earlier attempt; dropping the new copy", final)
            self.client.delete(tmp)
            return 0
        with self._lock:
            self._dirs.pop(directory, None)   # maybe deleted behind our back: MKDIRS again next time
        raise HdfsUnavailable(f"RENAME {tmp} -> {final} returned false and {final} does not exist")

    def _ensure_dir(self, directory: str) -> None:
        with self._lock:
            if directory in self._dirs:
                self._dirs.move_to_end(directory)
                return
        self.client.mkdirs(directory)
        with self._lock:
            self._dirs[directory] = None
            if len(self._dirs) > KNOWN_DIRS:
                self._dirs.popitem(last=False)


def _chunks(path: str, length: int) -> Iterator[bytes]:
    """The file in chunks; small files in two halves, so "half-way through an upload" exists."""
    size = min(CHUNK, max(1, (length + 1) // 2))
    sent = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(size):
            yield chunk
            sent += len(chunk)
            if sent < length:
                failpoint("hdfs-upload-midway")
