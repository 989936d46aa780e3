"""The acknowledged position: Kafka's acks arrive out of order (partitions complete independently);
the position is the lowest seq not yet acknowledged, so a restart from it resends only records
Kafka may not have."""

from __future__ import annotations


class AckTracker:
    """Not thread-safe: owned by the sender thread (acks are handed over through a deque)."""

    def __init__(self, start: int) -> None:
        self.watermark = start          # every seq below it is settled
        self._above: set[int] = set()   # settled seqs at or above the watermark

    def settle(self, seq: int) -> None:
        """``seq`` is acknowledged (or can never be sent); advances the watermark when contiguous."""
        if seq == self.watermark:
            wm = seq + 1
            above = self._above
            while wm in above:
                above.remove(wm)
                wm += 1
            self.watermark = wm
        elif seq > self.watermark:
            self._above.add(seq)

    def settle_range(self, start: int, end: int) -> None:
        for seq in range(max(start, self.watermark), end):
            self.settle(seq)

    def settled(self, seq: int) -> bool:
        return seq < self.watermark or seq in self._above

    @property
    def pending_above(self) -> int:
        """Settled seqs held above the watermark (bounded by the records in flight)."""
        return len(self._above)
