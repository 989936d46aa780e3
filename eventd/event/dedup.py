"""Keeping collector resends out of the sinks: a window of recent event ids per partition.

A collector that crashed after Kafka took an event but before it marked the event sent
sends it again with the same id. The message key is derived from the event, so the resend
lands in the same partition, a little later. The ClickHouse loader and the HDFS uploader skip
a message whose id appeared in the previous ``size`` messages (by offset) of its partition
(the balance aggregator keeps its own window, checked before a transaction and recorded
after it: ``eventd/roles/balance_aggregator/dedup.py``).

The window is defined by offsets alone — "the ids at offsets [o - size, o)" for the message at
offset o — so after a restart or a rebalance it is rebuilt exactly by reading the ``size``
messages before the start offset (``Start.warm``): a recovered batch filters the same
duplicates and stays the identical block.
"""

from __future__ import annotations

from collections import deque


class RecentIds:
    """The event ids seen at the last ``size`` offsets of one partition.

    Memory: about 170 bytes per message remembered with a 36-character id (the id, its offset,
    a dict entry; measured).
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._offsets: deque[int] = deque()
        self._ids: deque[bytes] = deque()
        self._latest: dict[bytes, int] = {}   # id -> its latest offset in the window

    def seen(self, offset: int, event_id: bytes) -> bool:
        """Whether ``event_id`` occurs at an offset in [offset - size, offset); then remembers it.

        Every message is remembered, duplicates and invalid events included, the same way
        whether it comes through a warm-up or live: both paths must build the same window.
        """
        if self.size <= 0:
            return False
        low = offset - self.size
        while self._offsets and self._offsets[0] < low:
            old_offset, old_id = self._offsets.popleft(), self._ids.popleft()
            if self._latest.get(old_id) == old_offset:
                del self._latest[old_id]
        found = event_id in self._latest
        self._offsets.append(offset)
        self._ids.append(event_id)
        self._latest[event_id] = offset
        return found

    def __len__(self) -> int:
        return len(self._offsets)
