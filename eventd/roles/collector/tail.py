"""The file-tail input: follows JSON log files (globs) like ``tail -F``, for logs the web app
already writes.

- Files are known by (device, inode), not by name: a file renamed by rotation is read to its end
  while the new file under the old name is read from its start. A file whose size drops below the
  read position, or whose first bytes changed (copytruncate, a replaced file), is read again from
  its start (a new *generation*).
- Read positions survive restarts in ``tail.positions``. A position is saved only once the events
  before it are in the queue and on disk (per the fsync policy), so a crash re-reads at most the
  lines after the last saved position.
- Events without an ``id`` get one derived from (host, device, inode, generation, byte offset, line):
  a line read again after a crash gets the same id, so downstream recognises the duplicate.
- A file seen for the first time at the very first start is read from ``tail.start_at``
  (beginning, or its end); files appearing later are read from their beginning.
- Only the collector process of slot 0 tails (two processes would read every line twice).
"""

from __future__ import annotations

import asyncio
import glob
import hashlib
import json
import logging
import os
import stat
import time
from dataclasses import dataclass, field

from crc32c import crc32c

from eventd.config.collector import TailInput
from eventd.roles.collector.intake import Intake, Outcome
from eventd.roles.collector.lines import Line, TooLong
from eventd.roles.collector.syncer import Syncer

log = logging.getLogger(__name__)

CHUNK = 256 << 10          # bytes read (and ingested as one batch) at a time
HEAD_BYTES = 256           # first bytes remembered to recognise a truncated or replaced file
GONE_POLLS = 3             # polls at the end of a file no longer matched before it is let go
LOG_EVERY = 10.0


Position = tuple[int, int, int, int]     # offset, generation, head length, head checksum


@dataclass
class TailedFile:
    """A followed file. ``offset`` is just after the last line taken into the queue."""

    dev: int
    ino: int
    path: str
    offset: int = 0
    gen: int = 0
    head_len: int = 0
    head_crc: int = 0
    fd: int = -1
    discarding: int = 0        # > 0: bytes of an over-long line skipped so far
    gone_polls: int = 0
    pending: list[tuple[int, "Position"]] = field(default_factory=list)   # (queue end seq, position) to save
    saved: "Position" = (0, 0, 0, 0)                                      # what the positions file says

    @property
    def key(self) -> str:
        return f"{self.dev}:{self.ino}"

    @property
    def position(self) -> "Position":
        return self.offset, self.gen, self.head_len, self.head_crc


class Tailer:
    """Runs as a task on the input loop; :meth:`run` polls until cancelled."""

    def __init__(self, cfg: TailInput, intake: Intake, syncer: Syncer, host: str, max_line: int) -> None:
        self.cfg, self.intake, self.syncer, self.host, self.max_line = cfg, intake, syncer, host, max_line
        self.files: dict[str, TailedFile] = {}
        self._saved_state = self._load()
        self._first_start = self._saved_state is None
        self._rejected = 0
        self._example = ""
        self._logged_at = time.monotonic()

    # ------------------------------------------------------------------ positions file

    def _load(self) -> dict[str, dict] | None:
        try:
            with open(self.cfg.positions, encoding="utf-8") as fh:
                return {e["key"]: e for e in json.load(fh)["files"]}
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as exc:
            log.error("tail: unreadable positions file %s (%s): files are read from their beginning; "
                      "events already sent come again with the same ids", self.cfg.positions, exc)
            return {}

    def save(self) -> None:
        """Write the positions whose events are on disk in the queue."""
        synced = self.syncer.synced
        for f in self.files.values():
            while f.pending and f.pending[0][0] <= synced:
                f.saved = f.pending.pop(0)[1]
        doc = {"files": [{"key": f.key, "path": f.path, "offset": f.saved[0], "gen": f.saved[1],
                          "head_len": f.saved[2], "head_crc": f.saved[3]} for f in self.files.values()]}
        tmp = self.cfg.positions + ".tmp"
        try:
            os.makedirs(os.path.dirname(self.cfg.positions) or ".", exist_ok=True)
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(doc, fh)
            os.replace(tmp, self.cfg.positions)
        except OSError as exc:
            log.warning("tail: cannot save positions to %s: %s", self.cfg.positions, exc.strerror)

    # ------------------------------------------------------------------ polling

    async def run(self) -> None:
        while True:
            await self.poll()
            self.save()
            await asyncio.sleep(self.cfg.poll_interval)

    async def poll(self) -> None:
        """One round: discover files, read what is new in each, let go of files rotated away."""
        matched = self._discover()
        for key, f in list(self.files.items()):
            progressed = await self._read(f)
            if key in matched:
                f.path, f.gone_polls = matched[key], 0
            elif not progressed:
                f.gone_polls += 1
                if f.gone_polls >= GONE_POLLS:
                    self._let_go(f)
        self._first_start = False
        self._log_rejects()

    def _discover(self) -> dict[str, str]:
        """key → path of every regular file the globs match now; opens the new ones."""
        matched: dict[str, str] = {}
        for pattern in self.cfg.paths:
            for path in sorted(glob.glob(pattern)):
                try:
                    st = os.stat(path)
                except OSError:
                    continue
                if not stat.S_ISREG(st.st_mode):
                    continue
                key = f"{st.st_dev}:{st.st_ino}"
                matched.setdefault(key, path)
                if key not in self.files:
                    self._open(path, st, key)
        return matched

    def _open(self, path: str, st: os.stat_result, key: str) -> None:
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as exc:
            log.warning("tail: cannot open %s: %s", path, exc.strerror)
            return
        f = TailedFile(st.st_dev, st.st_ino, path, fd=fd)
        saved = (self._saved_state or {}).get(key)
        if saved is not None and self._same_head(f, saved["head_len"], saved["head_crc"]):
            f.offset, f.gen = int(saved["offset"]), int(saved["gen"])
            f.head_len, f.head_crc = saved["head_len"], saved["head_crc"]
        elif self._first_start and self.cfg.start_at == "end":
            f.offset = self._end_of_last_line(f, st.st_size)
        f.saved = f.position
        self.files[key] = f
        log.info("tail: following %s from offset %d", path, f.offset)

    @staticmethod
    def _same_head(f: TailedFile, head_len: int, head_crc: int) -> bool:
        data = os.pread(f.fd, head_len, 0)
        return len(data) == head_len and crc32c(data) == head_crc

    @staticmethod
    def _end_of_last_line(f: TailedFile, size: int) -> int:
        start = max(0, size - CHUNK)
        data = os.pread(f.fd, size - start, start)
        nl = data.rfind(b"\n")
        return start + nl + 1 if nl >= 0 else start

    def _let_go(self, f: TailedFile) -> None:
        size = os.fstat(f.fd).st_size
        if f.offset < size:     # a last line without its newline: the file is finished, take it as it is
            data = os.pread(f.fd, min(size - f.offset, self.max_line + 1), f.offset)
            start = f.offset - f.discarding
            line: Line = TooLong(f.discarding + size - f.offset) if f.discarding or len(data) > self.max_line else data
            if self._ingest(f, [line], [start], size - f.offset) is None:
                return          # the queue is full: try again at the next poll
            f.discarding = 0
        log.info("tail: %s (rotated away or deleted) read to its end at offset %d", f.path, f.offset)
        if f.fd >= 0:
            os.close(f.fd)
        self.files.pop(f.key, None)

    # ------------------------------------------------------------------ reading one file

    async def _read(self, f: TailedFile) -> bool:
        """Take every complete new line of ``f`` into the queue; True if anything was read."""
        size = os.fstat(f.fd).st_size
        if size < f.offset or (f.head_len and not self._same_head(f, f.head_len, f.head_crc)):
            self._restart(f, size)
        progressed, want = False, CHUNK
        while f.offset < size:
            data = os.pread(f.fd, min(want, size - f.offset), f.offset)
            taken = self._take(f, data)
            if taken is None:
                break           # refused by a full queue: retry at the next poll
            if taken == 0:
                if len(data) < size - f.offset and want <= self.max_line:
                    want = self.max_line + 1    # a long line: read up to the limit to see its end
                    continue
                break           # only an incomplete last line: wait for the rest
            progressed, want = True, CHUNK
            await asyncio.sleep(0)      # let the other inputs run between chunks
        return progressed

    def _restart(self, f: TailedFile, size: int) -> None:
        log.warning("tail: %s was truncated or replaced (size %d, read position %d): reading it again from "
                    "the start", f.path, size, f.offset)
        f.offset, f.gen, f.discarding, f.head_len, f.head_crc = 0, f.gen + 1, 0, 0, 0
        f.pending.append((0, f.position))

    def _take(self, f: TailedFile, data: bytes) -> int | None:
        """Ingest the complete lines at the start of ``data`` (read at ``f.offset``); returns the bytes
        consumed, or None when the queue refused them."""
        lines: list[Line] = []
        starts: list[int] = []
        pos = 0
        while True:
            nl = data.find(b"\n", pos)
            if nl < 0:
                break
            self._add_line(f, data, pos, nl, lines, starts)
            pos = nl + 1
        if pos == 0 and (f.discarding or len(data) > self.max_line):
            f.discarding += len(data)       # a line longer than the limit: skip it, remember its size
            pos = len(data)
        return self._ingest(f, lines, starts, pos)

    def _ingest(self, f: TailedFile, lines: list[Line], starts: list[int], consumed: int) -> int | None:
        if not lines:
            self._advance(f, consumed, 0)
            return consumed
        outcome = self.intake.ingest(lines, "tail", 0, lambda n: self._event_id(f, starts[n], lines[n]))
        if outcome.refused:
            return None
        self._note(outcome)
        self._advance(f, consumed, outcome.end)
        return consumed

    def _add_line(self, f: TailedFile, data: bytes, start: int, end: int, lines: list[Line],
                  starts: list[int]) -> None:
        starts.append(f.offset + start - f.discarding)
        if f.discarding:
            lines.append(TooLong(f.discarding + end - start))
            f.discarding = 0
        else:
            lines.append(data[start:end])

    def _advance(self, f: TailedFile, consumed: int, end_seq: int) -> None:
        f.offset += consumed
        if f.head_len < HEAD_BYTES and f.offset > f.head_len:
            head = os.pread(f.fd, min(HEAD_BYTES, f.offset), 0)
            f.head_len, f.head_crc = len(head), crc32c(head)
        if end_seq:
            f.pending.append((end_seq, f.position))
        elif not f.pending:
            f.saved = f.position

    def _event_id(self, f: TailedFile, start: int, line: Line) -> str:
        h = hashlib.blake2b(digest_size=16)
        h.update(f"{self.host}\0{f.dev}\0{f.ino}\0{f.gen}\0{start}\0".encode())
        h.update(line if isinstance(line, bytes) else b"")
        return h.hexdigest()

    def _note(self, outcome: Outcome) -> None:
        if outcome.rejected:
            self._rejected += outcome.rejected
            if not self._example and outcome.errors:
                self._example = outcome.errors[0]["error"]

    def _log_rejects(self) -> None:
        now = time.monotonic()
        if self._rejected and now - self._logged_at >= LOG_EVERY:
            log.warning("tail: %d lines rejected in the last %.0fs, e.g.: %s", self._rejected,
                        now - self._logged_at, self._example)
            self._rejected, self._example, self._logged_at = 0, "", now

    def close(self) -> None:
        for f in self.files.values():
            if f.fd >= 0:
                os.close(f.fd)
                f.fd = -1
