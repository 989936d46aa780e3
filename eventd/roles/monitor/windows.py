"""Sliding windows: event counts per key in fixed time buckets, with running sums over ranges.

Time is data time in milliseconds (an event's ``received`` stamp, see engine.py). Bucket ``i``
covers ``[i*step, (i+1)*step)``. A rule names the ranges it reads relative to the boundary it is
judging, e.g. the current window ``(-5, 0)`` and the baseline before it ``(-65, -5)`` in buckets;
:meth:`BucketCounts.advance` slides every range one bucket at a time, adding the bucket that enters
and subtracting the one that leaves, so a step costs the keys of two buckets, not the whole window.
An event arriving late for a bucket already inside a range updates that range's sum as well.
"""

from __future__ import annotations

from collections import Counter

Key = str      # rules turn every field value into text, so incident keys and JSON agree
OTHER = "(other)"     # counts of keys that arrived once a bucket already held max_keys keys


class BucketCounts:
    """Per-key counts in buckets of ``step_ms``, and running sums over named bucket ranges.

    ``ranges`` maps a name to ``(lo, hi)``: the buckets ``[b + lo, b + hi)`` for boundary bucket
    ``b`` (``lo < hi <= 0``). Buckets older than every range are dropped on each advance; an event
    for a dropped bucket is refused (:meth:`add` returns ``"late"``).
    """

    def __init__(self, step_ms: int, ranges: dict[str, tuple[int, int]], max_keys: int) -> None:
        self.step_ms, self.ranges, self.max_keys = step_ms, ranges, max_keys
        self._buckets: dict[int, Counter[Key]] = {}
        self._sums: dict[str, Counter[Key]] = {name: Counter() for name in ranges}
        self._totals: dict[str, int] = {name: 0 for name in ranges}
        self._oldest = min(lo for lo, _ in ranges.values())
        self.boundary: int | None = None     # the boundary bucket the sums are positioned at

    def bucket_of(self, t_ms: int) -> int:
        return t_ms // self.step_ms

    def add(self, t_ms: int, key: Key, n: int = 1) -> str | None:
        """Count ``n`` events of ``key`` at ``t_ms``. Returns None, or why they were not counted
        as themselves: ``"late"`` (dropped) or ``"max_keys"`` (counted under :data:`OTHER`)."""
        i = self.bucket_of(t_ms)
        if self.boundary is not None and i < self.boundary + self._oldest:
            return "late"
        bucket = self._buckets.get(i)
        if bucket is None:
            bucket = self._buckets[i] = Counter()
        why = None
        if key not in bucket and len(bucket) >= self.max_keys:
            key, why = OTHER, "max_keys"
        bucket[key] += n
        if self.boundary is not None:
            for name, (lo, hi) in self.ranges.items():
                if self.boundary + lo <= i < self.boundary + hi:
                    self._sums[name][key] += n
                    self._totals[name] += n
        return why

    def advance(self, boundary_ms: int) -> None:
        """Position every range for the boundary at ``boundary_ms`` (a multiple of step; never backwards)."""
        b = boundary_ms // self.step_ms
        if self.boundary is not None and b < self.boundary:
            raise ValueError(f"windows cannot move backwards (bucket {b} < {self.boundary})")
        if self.boundary is None or b - self.boundary > -self._oldest:
            self._recompute(b)
        else:
            while self.boundary < b:
                self._slide()
        self._prune()

    def _recompute(self, b: int) -> None:
        self.boundary = b
        for name, (lo, hi) in self.ranges.items():
            total: Counter[Key] = Counter()
            for i in range(b + lo, b + hi):
                total.update(self._buckets.get(i, {}))
            self._sums[name], self._totals[name] = total, sum(total.values())

    def _slide(self) -> None:
        assert self.boundary is not None
        b = self.boundary
        for name, (lo, hi) in self.ranges.items():
            self._move(name, self._buckets.get(b + hi), +1)   # enters at the top
            self._move(name, self._buckets.get(b + lo), -1)   # leaves at the bottom
        self.boundary = b + 1

    def _move(self, name: str, bucket: Counter[Key] | None, sign: int) -> None:
        if not bucket:
            return
        sums = self._sums[name]
        for key, n in bucket.items():
            left = sums[key] + sign * n
            if left:
                sums[key] = left
            else:
                del sums[key]
            self._totals[name] += sign * n

    def _prune(self) -> None:
        assert self.boundary is not None
        floor = self.boundary + self._oldest
        for i in [i for i in self._buckets if i < floor]:
            del self._buckets[i]

    def sum(self, name: str) -> Counter[Key]:
        """Counts per key over the range ``name`` (do not modify)."""
        return self._sums[name]

    def total(self, name: str) -> int:
        """All counts over the range ``name``."""
        return self._totals[name]

    def keys(self) -> int:
        """Distinct keys over all buckets kept (an upper bound: a key in two buckets counts twice)."""
        return sum(len(b) for b in self._buckets.values())

    def buckets(self, name: str) -> list[Counter[Key]]:
        """The buckets of range ``name``, oldest first (for per-bucket detail of a few keys)."""
        assert self.boundary is not None
        lo, hi = self.ranges[name]
        return [self._buckets.get(i, Counter()) for i in range(self.boundary + lo, self.boundary + hi)]
