"""The monitor's notion of "now": the data time up to which its windows are complete.

Windows count events by their ``received`` stamp (the collector's clock when it accepted them), so
a monitor catching up on a backlog judges each past minute with that minute's events, and a
restart does not look like a spike. Kafka partitions are read at different speeds, so a window is
complete only when every partition that still has data to deliver has delivered past it:

- a partition that is *caught up* (its read position is at its end) or *idle* (nothing arrived
  from it for ``idle_after`` of wall time) does not hold evaluation back;
- otherwise the evaluation time is the lowest "newest ``received`` seen" over those partitions;
- with no partition holding back, it follows the wall clock: a host, a site or the whole stream
  that stopped sending is then seen as a drop, which is the point;

minus ``settle`` for events that arrive a little out of order (collector batching, the consumer
loop's batch age). It never moves backwards, and never ahead of the wall clock.
"""

from __future__ import annotations

from typing import Hashable, Iterable

Partition = Hashable


class Watermark:
    """Tracks per-partition progress; :meth:`time` is the evaluation time in ms."""

    def __init__(self, settle_ms: int, idle_after_ms: int, start_wall_ms: int) -> None:
        self.settle_ms, self.idle_after_ms = settle_ms, idle_after_ms
        self._newest: dict[Partition, int] = {}      # newest data time seen per partition
        self._arrival: dict[Partition, int] = {}     # wall time anything last arrived from it
        self._started = start_wall_ms
        self._seen_any = False
        self.current: int | None = None

    def assigned(self, partitions: Iterable[Partition], wall_ms: int) -> None:
        """Partitions just assigned: they hold evaluation back until they deliver, catch up or go idle."""
        for p in partitions:
            self._arrival[p] = wall_ms
            self._newest.pop(p, None)

    def observe(self, partition: Partition, t_ms: int, wall_ms: int) -> None:
        self._seen_any = True
        if t_ms > self._newest.get(partition, -1):
            self._newest[partition] = t_ms
        self._arrival[partition] = wall_ms

    def time(self, wall_ms: int, caught_up: Iterable[Partition] = ()) -> int | None:
        """The evaluation time (ms), or None while it is not known yet (just started, nothing read)."""
        done = set(caught_up)
        holding = [p for p, arrived in self._arrival.items()
                   if p not in done and wall_ms - arrived < self.idle_after_ms]
        if any(p not in self._newest for p in holding):
            candidate = None                       # a partition has not delivered anything yet
        elif holding:
            candidate = min(self._newest[p] for p in holding)
        elif self._seen_any or wall_ms - self._started >= self.idle_after_ms or done:
            candidate = wall_ms
        else:
            candidate = None                       # starting: give the partitions time to be assigned
        if candidate is not None:
            t = min(candidate, wall_ms) - self.settle_ms
            self.current = t if self.current is None else max(self.current, t)
        return self.current
