"""The dedup window: the event ids seen at the last ``size`` offsets of one partition.

A collector that crashes after Kafka took an event but before it noted so sends the event
again, with the same id, and — the message key being a field of the event — to the same
partition. An event is a duplicate when its id appeared at one of the ``size`` offsets
before its own in that partition.

The rule depends on the partition's content only, never on what this process happened to
read: after a restart or a rebalance the window is rebuilt by reading the ``size`` messages
before the stored offset (``Start(warm=size)``), and gives exactly the answers an instance
that had run all along would give. So a window re-applied after a crash skips the same events.

Memory: a ring of ``size`` slots plus a dict of the ids in it (about 170 bytes per id for
36-character ids on CPython 3.11; see docs/roles/balance-aggregator.md).
"""

from __future__ import annotations

from typing import Iterable, Protocol, Sequence, TypeVar


class Identified(Protocol):
    @property
    def offset(self) -> int: ...

    @property
    def event_id(self) -> str: ...


T = TypeVar("T", bound=Identified)


class RecentIds:
    """Ids at offsets ``[next - size, next)`` of one partition. ``add`` must be called in
    offset order; gaps (offsets with no decodable event) are allowed."""

    def __init__(self, size: int, next_offset: int) -> None:
        self.size = size
        self.next = next_offset
        self._ring: list[str | None] = [None] * size
        self._latest: dict[str, int] = {}

    def __len__(self) -> int:
        return len(self._latest)

    def seen(self, event_id: str, offset: int) -> bool:
        """Whether ``event_id`` appeared at an offset in ``[offset - size, offset)``;
        ``offset`` must be at least ``next``."""
        last = self._latest.get(event_id)
        return last is not None and last >= offset - self.size

    def add(self, offset: int, event_id: str) -> None:
        """Record ``event_id`` at ``offset`` (>= ``next``), forgetting what left the window."""
        if self.size == 0:
            self.next = offset + 1
            return
        self.advance(offset + 1)     # also frees this offset's slot (it held offset - size)
        self._ring[offset % self.size] = event_id
        self._latest[event_id] = offset
        self.next = offset + 1

    def advance(self, next_offset: int) -> None:
        """Move to ``next_offset`` without an id (the rest of a batch had no decodable event)."""
        if next_offset <= self.next or self.size == 0:
            self.next = max(self.next, next_offset)
            return
        if next_offset - self.next >= self.size:    # the whole window left: start empty
            self._ring = [None] * self.size
            self._latest.clear()
        else:
            for offset in range(self.next, next_offset):
                self._evict(offset % self.size, offset - self.size)
        self.next = next_offset

    def _evict(self, slot: int, old_offset: int) -> None:
        old = self._ring[slot]
        if old is not None:
            self._ring[slot] = None
            if self._latest.get(old) == old_offset:
                del self._latest[old]

    def fresh(self, items: Sequence[T]) -> list[T]:
        """The items that are not duplicates, without changing the window: ``items`` (in offset
        order, all at or after ``next``) are checked against the window and against each other.
        (``seen`` is written out here: this runs for every event.)"""
        batch: dict[str, int] = {}
        latest, size, out = self._latest, self.size, []
        for item in items:
            offset, event_id = item.offset, item.event_id
            last = latest.get(event_id)
            earlier = batch.get(event_id)
            if (last is None or last < offset - size) and (earlier is None or earlier < offset - size):
                out.append(item)
            batch[event_id] = offset
        return out

    def extend(self, items: Iterable[Identified], next_offset: int) -> None:
        """Record a written batch: every item, duplicates too, then move to ``next_offset``.
        The same as ``add`` for each item, then ``advance``; written out, as it runs for every
        event: each item's slot held the id of ``offset - size``, which leaves the window."""
        size = self.size
        if size:
            ring, latest = self._ring, self._latest
            for item in items:
                offset, event_id = item.offset, item.event_id
                if offset != self.next:
                    self.advance(offset)            # a gap: free the slots of the offsets skipped
                    ring = self._ring               # (a long one starts a new, empty ring)
                slot = offset % size
                old = ring[slot]
                if old is not None and latest.get(old) == offset - size:
                    del latest[old]
                ring[slot] = event_id
                latest[event_id] = offset
                self.next = offset + 1
        self.advance(next_offset)
