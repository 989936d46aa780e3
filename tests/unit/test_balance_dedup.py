"""The dedup window: what counts as a resend, and that a window rebuilt from the messages
before the stored offset answers exactly as one that ran all along."""

from __future__ import annotations

import random
from typing import NamedTuple

import pytest

from eventd.roles.balance_aggregator.dedup import RecentIds


class Item(NamedTuple):
    offset: int
    event_id: str


def test_an_id_seen_within_the_window_is_a_duplicate_and_beyond_it_is_not() -> None:
    ids = RecentIds(3, 0)
    ids.add(0, "a")
    assert ids.seen("a", 1) and ids.seen("a", 3)
    assert not ids.seen("a", 4)                 # offsets 1..3 are the window of offset 4
    for offset, event_id in ((1, "b"), (2, "c"), (3, "d")):
        ids.add(offset, event_id)
    assert not ids.seen("a", 4) and len(ids) == 3     # "a" left the window and memory


def test_fresh_checks_the_batch_against_itself_without_changing_the_window() -> None:
    ids = RecentIds(100, 10)
    ids.add(10, "x")
    batch = [Item(11, "x"), Item(12, "y"), Item(13, "y"), Item(14, "z")]
    assert ids.fresh(batch) == [Item(12, "y"), Item(14, "z")]
    assert ids.next == 11 and not ids.seen("y", 15)   # fresh() recorded nothing
    ids.extend(batch, 20)
    assert ids.next == 20 and ids.seen("y", 20) and ids.seen("x", 20)


def test_zero_size_window_sees_nothing() -> None:
    ids = RecentIds(0, 0)
    ids.extend([Item(0, "a"), Item(1, "a")], 2)
    assert ids.fresh([Item(2, "a")]) == [Item(2, "a")] and ids.next == 2


def test_a_long_gap_empties_the_window() -> None:
    ids = RecentIds(5, 0)
    ids.add(0, "a")
    ids.advance(100)
    assert not ids.seen("a", 100) and len(ids) == 0 and ids.next == 100


@pytest.mark.parametrize("seed", range(20))
def test_a_window_rebuilt_from_the_last_messages_answers_like_one_that_ran_all_along(seed: int) -> None:
    rng = random.Random(seed)
    size = rng.choice((1, 3, 10, 50))
    # A partition with resends (ids repeated at random distances) and gaps (undecodable messages).
    log: list[Item | None] = []
    for offset in range(400):
        if rng.random() < 0.1:
            log.append(None)
        elif log and rng.random() < 0.3:
            back = min(len(log), rng.choice((1, 2, size, size + 1, 3 * size)))
            earlier = log[-back]
            log.append(Item(offset, earlier.event_id if earlier else f"id{offset}"))
        else:
            log.append(Item(offset, f"id{offset}"))

    def batches(start: int, ids: RecentIds) -> list[Item]:
        """Consume from ``start`` in random batches as the sink does; the charged items."""
        charged, offset = [], start
        while offset < len(log):
            end = min(len(log), offset + rng.randint(1, 40))
            items = [i for i in log[offset:end] if i is not None]
            charged += ids.fresh(items)
            ids.extend(items, end)
            offset = end
        return charged

    continuous = RecentIds(size, 0)
    all_along = batches(0, continuous)
    restart = rng.randrange(1, len(log))
    before = [i for i in all_along if i.offset < restart]
    rebuilt = RecentIds(size, max(0, restart - size))
    for item in log[max(0, restart - size):restart]:     # Start(warm=size): the messages before
        if item is not None:
            rebuilt.add(item.offset, item.event_id)
    assert rebuilt.next == restart or log[restart - 1] is None
    rebuilt.advance(restart)
    assert before + batches(restart, rebuilt) == all_along


@pytest.mark.parametrize("seed", range(10))
def test_extend_and_fresh_give_what_add_and_seen_give_one_by_one(seed: int) -> None:
    """``extend`` and ``fresh`` are written out for speed; they must equal the one-item rules."""
    rng = random.Random(seed)
    size = rng.choice((0, 1, 3, 10))
    fast, slow, offset = RecentIds(size, 0), RecentIds(size, 0), 0
    for _ in range(60):
        items = []
        for _ in range(rng.randint(0, 12)):
            offset += rng.choice((1, 1, 1, 2, size + 1))        # gaps: undecodable messages
            items.append(Item(offset, f"id{rng.randint(0, 15)}"))
        end = offset + rng.choice((1, 1, 5))
        pending: dict[str, int] = {}
        one_by_one = []
        for i in items:
            if not slow.seen(i.event_id, i.offset) and not (i.event_id in pending and
                                                             pending[i.event_id] >= i.offset - size):
                one_by_one.append(i)
            pending[i.event_id] = i.offset
        assert fast.fresh(items) == one_by_one
        fast.extend(items, end)
        for i in items:
            slow.add(i.offset, i.event_id)
        slow.advance(end)
        offset = end
        assert (fast.next, fast._ring, fast._latest) == (slow.next, slow._ring, slow._latest)
