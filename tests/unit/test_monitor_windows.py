"""Sliding window sums equal a brute-force recount whatever the order of events and steps; late
events are counted while their bucket is kept and refused after; the watermark waits for lagging
partitions, follows the clock when nothing lags, and never moves backwards."""

from __future__ import annotations

import random
from collections import Counter

from eventd.roles.monitor.timebase import Watermark
from eventd.roles.monitor.windows import OTHER, BucketCounts

RANGES = {"now": (-3, 0), "base": (-10, -3)}


def brute(events: list[tuple[int, str]], step: int, boundary_bucket: int, lo: int, hi: int) -> Counter[str]:
    return Counter(k for t, k in events if boundary_bucket + lo <= t // step < boundary_bucket + hi)


def test_running_sums_match_a_recount() -> None:
    rng = random.Random(4)
    counts = BucketCounts(1000, RANGES, max_keys=1000)
    kept: list[tuple[int, str]] = []
    boundary = 20
    for _ in range(60):
        for _ in range(rng.randrange(30)):
            t = (boundary + rng.randrange(-12, 4)) * 1000 + rng.randrange(1000)   # late, current and early
            key = rng.choice("abcdef")
            if counts.add(t, key) is None:
                kept.append((t, key))
        boundary += rng.choice((0, 1, 1, 2, 15))                                # steps and jumps
        counts.advance(boundary * 1000)
        for name, (lo, hi) in RANGES.items():
            expected = brute(kept, 1000, boundary, lo, hi)
            assert counts.sum(name) == expected
            assert counts.total(name) == sum(expected.values())


def test_late_events_are_refused_once_their_bucket_left_every_range() -> None:
    counts = BucketCounts(1000, RANGES, max_keys=10)
    counts.advance(20_000)
    assert counts.add(10_500, "a") is None          # bucket 10 = the oldest baseline bucket
    assert counts.sum("base")["a"] == 1
    assert counts.add(9_999, "a") == "late"
    assert counts.add(19_000, "b") is None and counts.sum("now")["b"] == 1


def test_keys_past_max_keys_are_counted_together() -> None:
    counts = BucketCounts(1000, {"now": (-1, 0)}, max_keys=2)
    assert [counts.add(500, k) for k in ("a", "b", "c", "d")] == [None, None, "max_keys", "max_keys"]
    counts.advance(1000)
    assert counts.sum("now") == Counter({"a": 1, "b": 1, OTHER: 2})


def test_watermark_waits_for_the_slowest_busy_partition() -> None:
    w = Watermark(settle_ms=5_000, idle_after_ms=60_000, start_wall_ms=1_000_000)
    w.assigned(["p0", "p1"], 1_000_000)
    assert w.time(1_001_000) is None                   # nothing delivered yet
    w.observe("p0", 990_000, 1_002_000)
    assert w.time(1_002_000) is None                   # p1 has not delivered anything
    w.observe("p1", 900_000, 1_002_000)                # p1 is far behind (a backlog)
    assert w.time(1_003_000) == 895_000
    assert w.time(1_003_000, caught_up=["p1"]) == 985_000    # p1 at its end: p0 alone holds
    assert w.time(1_003_000, caught_up=["p0", "p1"]) == 998_000   # nothing lags: the clock
    assert w.time(1_004_000) == 998_000                # never backwards


def test_watermark_stops_waiting_for_an_idle_partition_and_follows_the_clock() -> None:
    w = Watermark(settle_ms=5_000, idle_after_ms=60_000, start_wall_ms=0)
    w.assigned(["p0"], 0)
    w.observe("p0", 10_000, 10_000)
    assert w.time(30_000) == 5_000
    assert w.time(80_000) == 75_000                    # p0 silent for 70 s: the stream stopped


def test_watermark_without_any_partition_waits_idle_after_from_the_start() -> None:
    w = Watermark(settle_ms=5_000, idle_after_ms=60_000, start_wall_ms=0)
    assert w.time(30_000) is None
    assert w.time(61_000) == 56_000
