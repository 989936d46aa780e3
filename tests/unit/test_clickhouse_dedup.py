"""The duplicate-id window: the id read straight from the message bytes, a window defined by
offsets only, and a rebuilt window (warm-up) that filters exactly like the live one."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from eventd.config import load_config
from eventd.errors import DecodeError
from eventd.event.codec import encode, envelope_id
from eventd.event.dedup import RecentIds
from eventd.event.envelope import EventParser
from eventd.event.schemas import SchemaStore

REPO = Path(__file__).resolve().parents[2]
CFG = load_config(str(REPO / "conf" / "eventd.yaml"))
STORE = SchemaStore.load(str(REPO / "conf" / "schemas"))
PARSER = EventParser(STORE, CFG.events, "events.", 6, "h")


def message(event_id: str, event_type: str = "impression") -> bytes:
    line = json.dumps({"type": event_type, "id": event_id, "time": 1_710_064_800, "campaign_id": 1})
    event = PARSER.parse(line.encode(), "t", 0, lambda: "x")
    return encode(event.schema, event.record)


@pytest.mark.parametrize("event_id", ["a", "x" * 64, "é-ü-" * 10])
def test_envelope_id_is_the_decoded_id(event_id: str) -> None:
    for event_type in ("impression", "bid", "video_view"):
        assert envelope_id(message(event_id, event_type)) == event_id.encode()


@pytest.mark.parametrize("data", [b"", b"{json}", b"\xc3\x01" + b"\x00" * 8, b"\xc3\x01" + b"\x00" * 8 + b"\x40ab",
                                  b"\xc3\x01" + b"\x00" * 8 + b"\xff\xff"])
def test_envelope_id_of_a_broken_message_is_a_decode_error(data: bytes) -> None:
    with pytest.raises(DecodeError):
        envelope_id(data)


def test_window_covers_exactly_the_previous_size_offsets() -> None:
    w = RecentIds(3)
    assert not w.seen(10, b"a")
    assert not w.seen(11, b"b")
    assert w.seen(13, b"a")            # 10 is in [10, 13)
    assert not w.seen(17, b"b")        # 11 is not in [14, 17)
    assert w.seen(18, b"b")            # 17 is
    assert not w.seen(22, b"a")        # 13 fell out
    assert len(w) <= 3


def test_window_of_size_zero_is_off() -> None:
    w = RecentIds(0)
    assert not w.seen(1, b"a") and not w.seen(2, b"a") and len(w) == 0


def test_a_window_rebuilt_from_the_messages_before_a_start_filters_like_the_live_one() -> None:
    rng = random.Random(3)
    ids = [f"id{rng.randrange(60)}".encode() for _ in range(400)]     # many repeats
    offsets = sorted(rng.sample(range(1000), 400))                     # with gaps
    size = 50
    live = RecentIds(size)
    verdicts = [live.seen(o, i) for o, i in zip(offsets, ids)]
    for start in (0, 120, 201, 399):
        rebuilt = RecentIds(size)
        for o, i in zip(offsets[:start], ids[:start]):
            if o >= offsets[start] - size:              # the warm-up reads only the last `size` offsets
                rebuilt.seen(o, i)
        assert [rebuilt.seen(o, i) for o, i in zip(offsets[start:], ids[start:])] == verdicts[start:]
