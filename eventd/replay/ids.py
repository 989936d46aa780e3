"""Deterministic ids for replayed events that carry none.

The rule (also in docs/roles/replay.md)::

    id = "r-" + hex(BLAKE2b-128(person="eventd-replay-id", data = LINE + b"\\n" + ORDINAL))

``LINE`` is the line's bytes without its terminator (``\\n`` or ``\\r\\n``); ``ORDINAL`` is the
decimal count of earlier byte-identical lines *of the same input* that also needed an id
(0 for the first). The id depends only on the file's content, not on its path, its
compression, the time, or the other files of the command line, so:

- re-running a file (whole, resumed, renamed, gzipped) gives every event the same id;
- two identical lines in one file are two events (ordinals 0 and 1);
- removing or fixing a *different* line (the usual answer to a reject) changes no other id,
  which an id built from the line number would not survive.

Memory: one entry (~100 bytes) per distinct id-less line of the current input. The counter is
keyed by 8 bytes of a separate hash; a collision there only changes an ordinal, which is still
deterministic, and the id itself hashes the whole line.
"""

from __future__ import annotations

import hashlib

PREFIX = "r-"
_PERSON = b"eventd-replay-id"


class IdMaker:
    """Ids for one input; create a new one per file (ordinals are per input)."""

    def __init__(self) -> None:
        self._seen: dict[bytes, int] = {}

    def make(self, line: bytes) -> str:
        """The id of the next id-less occurrence of ``line`` in this input."""
        slot = hashlib.blake2b(line, digest_size=8).digest()
        ordinal = self._seen.get(slot, 0)
        self._seen[slot] = ordinal + 1
        return event_id(line, ordinal)

    @property
    def distinct(self) -> int:
        return len(self._seen)


def event_id(line: bytes, ordinal: int) -> str:
    """The id of occurrence ``ordinal`` (0-based) of ``line``: see the module docstring."""
    h = hashlib.blake2b(line, digest_size=16, person=_PERSON)
    h.update(b"\n%d" % ordinal)
    return PREFIX + h.hexdigest()
