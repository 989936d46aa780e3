"""Deterministic ids: the documented rule, ordinals among identical lines, per input."""

from __future__ import annotations

import hashlib

from eventd.event.envelope import ID_MAX
from eventd.replay.ids import IdMaker, event_id


def test_rule_is_the_documented_one() -> None:
    line = b'{"type":"click","time":1}'
    h = hashlib.blake2b(line + b"\n3", digest_size=16, person=b"eventd-replay-id")
    assert event_id(line, 3) == "r-" + h.hexdigest()


def test_identical_lines_get_successive_ordinals() -> None:
    ids = IdMaker()
    a, b = b'{"type":"click"}', b'{"type":"impression"}'
    got = [ids.make(a), ids.make(b), ids.make(a), ids.make(a)]
    assert got == [event_id(a, 0), event_id(b, 0), event_id(a, 1), event_id(a, 2)]
    assert len(set(got)) == 4


def test_a_new_input_starts_ordinals_again_and_gives_the_same_ids() -> None:
    line = b'{"type":"click"}'
    first, second = IdMaker(), IdMaker()
    assert [first.make(line) for _ in range(3)] == [second.make(line) for _ in range(3)]


def test_ids_fit_the_envelope_limit() -> None:
    assert len(event_id(b"x" * 10_000, 10**9)) <= ID_MAX
