"""Resume points: which prefix of an input a destination has already durably taken.

One append-only file per (destination, input) under ``<node.state_dir>/replay/<target key>/``,
named after the input's *content* (:func:`stream_key`: a hash of its first 64 KiB,
decompressed), so a file is recognised whatever its path or compression, and stdin too.
Each line is a checkpoint ``v1 OFFSET LINE DIGEST``: the decompressed bytes ``[0, OFFSET)``
(``LINE`` lines), whose BLAKE2b digest is ``DIGEST``, are all delivered or rejected.
A checkpoint is written only after the destination has acknowledged every event before it.
The first line, ``v1 received MS``, is the time the input was first replayed to the
destination: every run gives its events that ``received`` time, so a block rebuilt after a
crash is byte-identical to the one that may already be in the sink (ClickHouse drops it).

A re-run reads the input again and holds the lines it parses (at most one checkpoint
interval) until it reaches a recorded offset: if the digest of everything read so far
matches, the held events were delivered by an earlier run and are dropped; at the first
mismatch, or past the last recorded offset, the held events and the rest are delivered.
Different files that share their first 64 KiB share a ledger file: checkpoints of both
live side by side (a set per offset), and each run only trusts a matching digest.

The file is locked (``flock``) while a replay uses it: the same input replayed twice at the
same time to the same destination fails fast instead of racing.
"""

from __future__ import annotations

import bisect
import fcntl
import hashlib
import os
import threading
import time
from dataclasses import dataclass
from enum import Enum
from typing import Callable

from eventd.errors import EventdError

_FSYNC_INTERVAL = 1.0   # seconds; kill -9 keeps written data, fsync only guards against power loss


class LedgerError(EventdError):
    """The ledger cannot be used (directory not writable, input already being replayed)."""


def stream_key(head: bytes) -> str:
    """Names an input by content: BLAKE2b-128 of its first bytes (reader.HEAD_SIZE)."""
    return hashlib.blake2b(head, digest_size=16, person=b"eventd-replay-in").hexdigest()


@dataclass(frozen=True)
class Checkpoint:
    """Everything before ``offset`` (``line`` lines, digest ``digest``) of ``ledger``'s input.
    ``after`` is the line of the previous checkpoint: this one closes the block of lines
    ``after + 1 .. line``."""

    ledger: "Ledger"
    offset: int
    line: int
    digest: str
    after: int = 0


class Ledger:
    """The recorded checkpoints of one input for one destination; holds its lock until closed."""

    def __init__(self, path: str, now_ms: int) -> None:
        self.path = path
        self.received_ms: int | None = None
        self._lock = threading.Lock()     # records come from the Kafka producer's thread too
        self._fh = open(path, "a+", encoding="ascii")
        try:
            fcntl.flock(self._fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._fh.close()
            raise LedgerError(f"{path} is locked: this input is being replayed to the same destination "
                              "by another eventd replay") from None
        self._known: dict[int, set[str]] = {}
        self._load()
        self._offsets = sorted(self._known)
        self._last_sync = time.monotonic()
        if self.received_ms is None:
            self.received_ms = now_ms
            self._write(f"v1 received {now_ms}\n")

    @classmethod
    def open(cls, directory: str, key: str, now_ms: int) -> "Ledger":
        try:
            os.makedirs(directory, exist_ok=True)
            return cls(os.path.join(directory, key + ".ckpt"), now_ms)
        except OSError as exc:
            raise LedgerError(f"cannot keep resume points in {directory}: {exc.strerror}") from None

    def _load(self) -> None:
        self._fh.seek(0)
        for text in self._fh:
            parts = text.split()
            # A torn last line (power loss mid-write) is ignored: it only costs a resend.
            if len(parts) == 4 and parts[0] == "v1" and parts[1].isdigit() and len(parts[3]) == 32:
                self._known.setdefault(int(parts[1]), set()).add(parts[3])
            elif len(parts) == 3 and parts[:2] == ["v1", "received"] and parts[2].isdigit() and text.endswith("\n"):
                self.received_ms = self.received_ms or int(parts[2])

    @property
    def empty(self) -> bool:
        return not self._offsets

    def next_after(self, offset: int) -> int | None:
        """The smallest recorded offset greater than ``offset``."""
        i = bisect.bisect_right(self._offsets, offset)
        return self._offsets[i] if i < len(self._offsets) else None

    def matches(self, offset: int, digest: str) -> bool:
        return digest in self._known.get(offset, ())

    def record(self, checkpoints: list[Checkpoint]) -> None:
        """Append checkpoints (already durably taken by the destination). Thread-safe."""
        with self._lock:
            self._write("".join(f"v1 {c.offset} {c.line} {c.digest}\n" for c in checkpoints))
            for c in checkpoints:
                if c.offset not in self._known:
                    bisect.insort(self._offsets, c.offset)
                self._known.setdefault(c.offset, set()).add(c.digest)

    def _write(self, text: str) -> None:
        self._fh.write(text)
        self._fh.flush()
        if time.monotonic() - self._last_sync >= _FSYNC_INTERVAL:
            self._sync()

    def _sync(self) -> None:
        os.fsync(self._fh.fileno())
        self._last_sync = time.monotonic()

    def close(self) -> None:
        with self._lock:
            if not self._fh.closed:
                self._sync()
                self._fh.close()   # releases the lock


class Step(Enum):
    HOLD = "hold"            # still possibly a delivered prefix: keep the line's event
    DELIVERED = "delivered"  # everything held so far was delivered by an earlier run: drop it
    NEW = "new"              # past everything delivered before: deliver what is held, and the rest
    CHANGED = "changed"      # differs from content delivered before (an edited file): see pipeline


class Resumer:
    """Walks an input against its ledger, line by line (see the module docstring)."""

    def __init__(self, ledger: Ledger) -> None:
        self._ledger = ledger
        self._next = ledger.next_after(0)
        self.active = self._next is not None

    def step(self, offset: int, digest: Callable[[], str]) -> Step:
        """Called after each line with the reader's offset and prefix digest."""
        if self._next is None:
            self.active = False
            return Step.NEW
        if offset < self._next:
            return Step.HOLD
        if offset == self._next and self._ledger.matches(offset, digest()):
            self._next = self._ledger.next_after(offset)
            return Step.DELIVERED
        self.active = False
        return Step.CHANGED
